package coordinator

import (
	"context"
	"sync"

	"tailscale.com/tailcfg"
)

// DERPMapSource hands each websocket the DERP maps to push to its peer.
type DERPMapSource interface {
	// Subscribe returns a channel that yields the current map first and
	// then every change (a slow reader only sees the latest), until ctx is
	// done, when the channel is closed.
	Subscribe(ctx context.Context) <-chan *tailcfg.DERPMap
}

// DERPMapPublisher is a DERPMapSource fed by Set.
type DERPMapPublisher struct {
	mu      sync.Mutex
	current *tailcfg.DERPMap
	subs    map[chan *tailcfg.DERPMap]struct{}
}

var _ DERPMapSource = (*DERPMapPublisher)(nil)

// NewDERPMapPublisher returns a publisher whose current map is m (may be nil:
// subscribers then wait for the first Set).
func NewDERPMapPublisher(m *tailcfg.DERPMap) *DERPMapPublisher {
	return &DERPMapPublisher{current: m, subs: map[chan *tailcfg.DERPMap]struct{}{}}
}

// Current returns the latest map.
func (p *DERPMapPublisher) Current() *tailcfg.DERPMap {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.current
}

// Set publishes m to every subscriber. Maps are shared: do not modify m
// afterwards.
func (p *DERPMapPublisher) Set(m *tailcfg.DERPMap) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.current = m
	for ch := range p.subs {
		offerLatest(ch, m)
	}
}

// Subscribe implements DERPMapSource.
func (p *DERPMapPublisher) Subscribe(ctx context.Context) <-chan *tailcfg.DERPMap {
	ch := make(chan *tailcfg.DERPMap, 1)
	p.mu.Lock()
	defer p.mu.Unlock()
	if ctx.Err() != nil {
		close(ch)
		return ch
	}
	if p.current != nil {
		ch <- p.current
	}
	p.subs[ch] = struct{}{}
	context.AfterFunc(ctx, func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		delete(p.subs, ch)
		close(ch)
	})
	return ch
}

// offerLatest replaces whatever is pending in ch (capacity 1) by m. Only the
// publisher sends on ch, under its lock.
func offerLatest(ch chan *tailcfg.DERPMap, m *tailcfg.DERPMap) {
	select {
	case <-ch:
	default:
	}
	ch <- m
}
