package coordinator

import (
	"context"
	"time"
)

// NewControllerWithSleep starts a Controller whose waits between dials go
// through sleep (which returns false to stop).
func NewControllerWithSleep(opts ControllerOptions, sleep func(ctx context.Context, d time.Duration) bool) (*Controller, error) {
	return newController(opts, sleep)
}

// WithClock makes ServeWebsocket's rate limiter read time from now.
func WithClock(opts ServeOptions, now func() time.Time) ServeOptions {
	opts.now = now
	return opts
}
