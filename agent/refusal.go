package agent

import (
	"errors"
	"net/http"
	"sync"
	"time"
)

// Defaults of Options.TokenRefused*.
const (
	DefaultTokenRefusedAttempts = 5
	DefaultTokenRefusedPeriod   = 2 * time.Minute
)

// ErrTokenRefused is returned by Run when coderd kept refusing the agent
// token (401 on its agent endpoints, with no success in between) for
// Options.TokenRefusedPeriod and at least Options.TokenRefusedAttempts
// requests: the workspace was deleted or rebuilt with a new token, and the
// agent exits instead of retrying forever.
var ErrTokenRefused = errors.New("coderd keeps refusing the agent token (401): the workspace was deleted or its agent replaced")

// refusalTracker watches every response coderd gives the agent. A 401 that
// follows only 401s since the first one counts; any other answer resets
// the count. Network errors and 5xx (coderd or its database down) say
// nothing about the token and are ignored.
type refusalTracker struct {
	attempts int
	period   time.Duration
	now      func() time.Time
	onRefuse func()

	mu    sync.Mutex
	count int
	first time.Time
	fired bool
}

func (r *refusalTracker) observe(status int) {
	r.mu.Lock()
	switch {
	case status == http.StatusUnauthorized:
		if r.count == 0 {
			r.first = r.now()
		}
		r.count++
	case status >= 500:
		r.mu.Unlock()
		return
	default:
		r.count = 0
	}
	fire := !r.fired && r.count >= r.attempts && r.now().Sub(r.first) >= r.period
	if fire {
		r.fired = true
	}
	r.mu.Unlock()
	if fire {
		r.onRefuse()
	}
}

// refusalTransport reports the status of every response to the tracker.
type refusalTransport struct {
	base    http.RoundTripper
	tracker *refusalTracker
}

func (t *refusalTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	res, err := t.base.RoundTrip(req)
	if err == nil {
		t.tracker.observe(res.StatusCode)
	}
	return res, err
}
