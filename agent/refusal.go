package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/codersdk/agentsdk"
)

// Defaults of Options.TokenRefused*. The period is long because coderd
// learns a first build's agent tokens only when the build completes, so it
// answers 401 (TokenInvalidMessage) to an agent started early in a long
// build: that agent must not give up before its build ends. (The new agent
// of a later build gets TokenBuildPendingMessage, which never counts.)
const (
	DefaultTokenRefusedAttempts = 5
	DefaultTokenRefusedPeriod   = 10 * time.Minute
)

// ErrTokenRefused is returned by Run when coderd kept refusing the agent
// token (401 on its agent endpoints, with no success in between) for
// Options.TokenRefusedPeriod and at least Options.TokenRefusedAttempts
// requests: the workspace was deleted or rebuilt with a new token, and the
// agent exits instead of retrying forever.
var ErrTokenRefused = errors.New("coderd keeps refusing the agent token (401): the workspace was deleted or its agent replaced")

// refusalTracker watches every response coderd gives the agent. A 401 that
// follows only 401s since the first one counts; any other answer resets
// the count. Network errors, 5xx (coderd or its database down) and the
// temporary refusal of an agent whose build is still running
// (agentsdk.TokenBuildPendingMessage: a restart's new agent starts during
// the apply) say nothing final about the token and are ignored.
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

func (r *refusalTracker) observe(status int, pending bool) {
	r.mu.Lock()
	switch {
	case status == http.StatusUnauthorized && pending:
		r.mu.Unlock()
		return
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
		pending := false
		if res.StatusCode == http.StatusUnauthorized {
			pending = buildPending(res)
		}
		t.tracker.observe(res.StatusCode, pending)
	}
	return res, err
}

// maxRefusalBody bounds how much of a 401's body is read to classify it.
const maxRefusalBody = 64 << 10

// buildPending reports whether the 401 is coderd's temporary refusal of an
// agent whose workspace build is still running. It reads the (small) body
// and puts it back for the caller.
func buildPending(res *http.Response) bool {
	if res.Body == nil {
		return false
	}
	body, err := io.ReadAll(io.LimitReader(res.Body, maxRefusalBody))
	rest := res.Body
	res.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(body), rest), rest}
	if err != nil {
		return false
	}
	var msg codersdk.Response
	if json.Unmarshal(body, &msg) != nil {
		return false
	}
	return msg.Message == agentsdk.TokenBuildPendingMessage
}
