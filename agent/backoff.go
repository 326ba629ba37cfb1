package agent

import (
	"context"
	"math/rand/v2"
	"time"
)

// backoff is a bounded, jittered exponential backoff. It is used by one
// goroutine at a time.
type backoff struct {
	min, max time.Duration
	cur      time.Duration
}

func newBackoff(minWait, maxWait time.Duration) *backoff {
	return &backoff{min: minWait, max: maxWait}
}

// next returns the next wait: the current step with ±50% jitter, doubling
// the step up to max.
func (b *backoff) next() time.Duration {
	if b.cur < b.min {
		b.cur = b.min
	}
	d := b.cur/2 + rand.N(b.cur+1)
	if d > b.max {
		d = b.max
	}
	b.cur *= 2
	if b.cur > b.max {
		b.cur = b.max
	}
	return d
}

// wait sleeps for the next wait, returning false when ctx ends first.
func (b *backoff) wait(ctx context.Context) bool {
	t := time.NewTimer(b.next())
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// reset starts over at min.
func (b *backoff) reset() { b.cur = 0 }
