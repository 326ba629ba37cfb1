package pubsub

import (
	"context"
	"sync"
)

// item is one delivery: a message, or an error such as ErrDroppedMessages.
type item struct {
	msg []byte
	err error
}

// subscriber delivers the items of one subscription, in order, from its own
// goroutine, so a slow listener only delays itself.
type subscriber struct {
	event  string
	fn     ListenerWithErr
	ctx    context.Context
	cancel context.CancelFunc
	limit  int
	signal chan struct{} // capacity 1: "the queue changed"

	mu    sync.Mutex
	queue []item
	// overflowed: messages were dropped since the last queued item; an
	// ErrDroppedMessages goes to the listener at that point of the stream.
	overflowed bool
}

// enqueue adds it to the queue without blocking. When the queue is full the
// item is dropped and the subscriber will receive ErrDroppedMessages instead.
func (s *subscriber) enqueue(it item) {
	s.mu.Lock()
	switch {
	case len(s.queue) >= s.limit:
		s.overflowed = true
	case s.overflowed && len(s.queue)+2 > s.limit:
		// Room for the item but not for the marker before it: keep
		// dropping, the marker covers it.
	default:
		if s.overflowed {
			s.queue = append(s.queue, item{err: ErrDroppedMessages})
			s.overflowed = false
		}
		if it.err == nil || !s.lastIsErr(it.err) {
			s.queue = append(s.queue, it)
		}
	}
	s.mu.Unlock()
	select {
	case s.signal <- struct{}{}:
	default:
	}
}

// lastIsErr avoids queueing the same error twice in a row.
func (s *subscriber) lastIsErr(err error) bool {
	return len(s.queue) > 0 && s.queue[len(s.queue)-1].err == err
}

// next pops the oldest item; ok is false when nothing is pending.
func (s *subscriber) next() (it item, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.queue) > 0 {
		it = s.queue[0]
		s.queue[0] = item{}
		s.queue = s.queue[1:]
		if len(s.queue) == 0 {
			s.queue = nil // let the backing array go
		}
		return it, true
	}
	if s.overflowed {
		s.overflowed = false
		return item{err: ErrDroppedMessages}, true
	}
	return item{}, false
}

func (s *subscriber) run(wg *sync.WaitGroup) {
	defer wg.Done()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.signal:
		}
		for {
			if s.ctx.Err() != nil {
				return
			}
			it, ok := s.next()
			if !ok {
				break
			}
			s.fn(s.ctx, it.msg, it.err)
		}
	}
}
