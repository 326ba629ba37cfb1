package agent

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wgmesh/coder/codersdk/agentsdk"
)

// TestRefusalTracker walks the tracker through answer sequences on an
// injected clock: only unbroken 401s that are not the temporary
// build-pending refusal, at least attempts of them over at least the
// period, make the agent give up.
func TestRefusalTracker(t *testing.T) {
	t.Parallel()
	type answer struct {
		status  int
		pending bool
		after   time.Duration // clock advance before the answer
	}
	unauthorized := func(after time.Duration) answer { return answer{http.StatusUnauthorized, false, after} }
	for _, tc := range []struct {
		name    string
		answers []answer
		fires   bool
	}{
		{"refused for the period", []answer{unauthorized(0), unauthorized(time.Minute), unauthorized(time.Minute), unauthorized(time.Second), unauthorized(time.Second)}, true},
		{"too few attempts", []answer{unauthorized(0), unauthorized(3 * time.Minute)}, false},
		{"too short", []answer{unauthorized(0), unauthorized(time.Second), unauthorized(time.Second), unauthorized(time.Second), unauthorized(time.Second), unauthorized(time.Second)}, false},
		{"a success resets", []answer{unauthorized(0), unauthorized(time.Minute), {http.StatusOK, false, time.Second}, unauthorized(time.Minute), unauthorized(time.Second), unauthorized(time.Second), unauthorized(time.Second)}, false},
		{"5xx ignored", []answer{unauthorized(0), {http.StatusBadGateway, false, time.Minute}, unauthorized(time.Minute), unauthorized(time.Second), unauthorized(time.Second), unauthorized(time.Second)}, true},
		{"build pending never counts", []answer{
			{http.StatusUnauthorized, true, 0}, {http.StatusUnauthorized, true, time.Minute}, {http.StatusUnauthorized, true, time.Minute},
			{http.StatusUnauthorized, true, time.Minute}, {http.StatusUnauthorized, true, time.Minute}, {http.StatusUnauthorized, true, time.Minute},
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			now := time.Unix(0, 0)
			fired := 0
			tr := &refusalTracker{attempts: 5, period: 2 * time.Minute, now: func() time.Time { return now }, onRefuse: func() { fired++ }}
			for _, a := range tc.answers {
				now = now.Add(a.after)
				tr.observe(a.status, a.pending)
			}
			if (fired == 1) != tc.fires || fired > 1 {
				t.Fatalf("fired %d times, want fires=%v", fired, tc.fires)
			}
		})
	}
}

// TestBuildPendingKeepsBody classifies 401 bodies and leaves them readable.
func TestBuildPendingKeepsBody(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		body    string
		pending bool
	}{
		{`{"message":"` + agentsdk.TokenBuildPendingMessage + `"}`, true},
		{`{"message":"` + agentsdk.TokenRevokedMessage + `"}`, false},
		{`{"message":"` + agentsdk.TokenInvalidMessage + `"}`, false},
		{`not json`, false},
		{``, false},
	} {
		res := &http.Response{StatusCode: http.StatusUnauthorized, Body: io.NopCloser(strings.NewReader(tc.body))}
		if got := buildPending(res); got != tc.pending {
			t.Errorf("%q: pending %v, want %v", tc.body, got, tc.pending)
		}
		rest, err := io.ReadAll(res.Body)
		if err != nil || string(rest) != tc.body {
			t.Errorf("%q: body after classification %q, %v", tc.body, rest, err)
		}
	}
}
