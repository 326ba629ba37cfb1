package coordinator_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"
	"tailscale.com/tailcfg"

	"github.com/wgmesh/coder/coordinator"
	"github.com/wgmesh/coder/tunnel"
)

// derpMapSignal is a real tunnel.Conn that also tells the test each time
// the Controller applied a DERP map (the coordinator's first frame).
type derpMapSignal struct {
	*tunnel.Conn
	applied chan struct{}
}

func (d *derpMapSignal) SetDERPMap(m *tailcfg.DERPMap) error {
	err := d.Conn.SetDERPMap(m)
	select {
	case d.applied <- struct{}{}:
	default:
	}
	return err
}

// gatedSleep replaces the Controller's waits: each wait is handed to the
// test, which releases it; nothing sleeps for real.
type gatedSleep struct {
	waits   chan time.Duration
	release chan struct{}
}

func newGatedSleep() *gatedSleep {
	return &gatedSleep{waits: make(chan time.Duration), release: make(chan struct{})}
}

func (g *gatedSleep) sleep(ctx context.Context, d time.Duration) bool {
	select {
	case g.waits <- d:
	case <-ctx.Done():
		return false
	}
	select {
	case <-g.release:
		return true
	case <-ctx.Done():
		return false
	}
}

// next returns the wait the Controller asks for next.
func (g *gatedSleep) next(t *testing.T) time.Duration {
	t.Helper()
	select {
	case d := <-g.waits:
		return d
	case <-time.After(waitFor):
		t.Fatal("the controller never waited to redial")
		return 0
	}
}

func (g *gatedSleep) releaseOne() { g.release <- struct{}{} }

// checkStep fails unless d is the jittered step BackoffMin·2^(k-1) of the
// k-th failed dial in a row.
func checkStep(t *testing.T, outage, k int, d, backoffMin, backoffMax time.Duration) {
	t.Helper()
	step := min(backoffMin<<(k-1), backoffMax)
	if d < step/2 || d > step {
		t.Fatalf("outage %d, failed dial %d: wait %v, want within [%v, %v]", outage, k, d, step/2, step)
	}
}

// TestControllerReconnectAfterRepeatedShortOutages restarts a real
// coordinator HTTP server again and again, each outage a few failed dials
// long: the first redial after every drop is immediate (at most
// BackoffMin of jitter) and the backoff during the Nth outage is the one of
// the first. It used to carry over from outage to outage (reset only after
// a session of 2×BackoffMax), so every restart made the next reconnect
// slower, up to BackoffMax.
func TestControllerReconnectAfterRepeatedShortOutages(t *testing.T) {
	derpMap := runDERP(t)
	id := uuid.New()
	rc := &restartableCoordinator{t: t, maps: coordinator.NewDERPMapPublisher(derpMap),
		auth: func(uuid.UUID) coordinator.TunnelAuth { return nil }}
	rc.start()
	t.Cleanup(rc.stop)

	conn := &derpMapSignal{Conn: newConn(t, derpMap, tunnel.AgentPrefix(id)), applied: make(chan struct{}, 1)}
	// Large bounds: the waits are released by the test, never slept.
	const backoffMin, backoffMax = 10 * time.Second, 10 * time.Minute
	gate := newGatedSleep()
	ctl, err := coordinator.NewControllerWithSleep(coordinator.ControllerOptions{
		Conn: conn, Dial: rc.dialer(id), BackoffMin: backoffMin, BackoffMax: backoffMax,
	}, gate.sleep)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ctl.Close() })

	awaitAnswered := func(n uint64) {
		t.Helper()
		awaitConnections(t, ctl, n)
		select {
		case <-conn.applied:
		case <-time.After(waitFor):
			t.Fatalf("connection %d: the coordinator's DERP map never arrived", n)
		}
	}
	awaitAnswered(1)

	const outages, failedDials = 7, 4
	for i := 1; i <= outages; i++ {
		rc.stop()
		if d := gate.next(t); d > backoffMin {
			t.Fatalf("outage %d: first redial after the drop waits %v, want at most %v", i, d, backoffMin)
		}
		gate.releaseOne()
		for k := 1; k <= failedDials; k++ {
			checkStep(t, i, k, gate.next(t), backoffMin, backoffMax)
			if k == failedDials {
				rc.start() // coderd is back: the next dial succeeds
			}
			gate.releaseOne()
		}
		awaitAnswered(uint64(i + 1))
	}
}

// TestControllerBacksOffFromAFlappingCoordinator: a coordinator that
// accepts the websocket and drops it before saying anything is not
// redialled in a tight loop; each such connection counts as a failure.
func TestControllerBacksOffFromAFlappingCoordinator(t *testing.T) {
	derpMap := runDERP(t)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		_ = ws.Close(websocket.StatusTryAgainLater, "go away")
	}))
	t.Cleanup(hs.Close)
	wsURL := "ws" + strings.TrimPrefix(hs.URL, "http")

	const backoffMin, backoffMax = 10 * time.Second, 10 * time.Minute
	gate := newGatedSleep()
	ctl, err := coordinator.NewControllerWithSleep(coordinator.ControllerOptions{
		Conn: newConn(t, derpMap, tunnel.RandomPrefix()),
		Dial: func(ctx context.Context) (*websocket.Conn, error) {
			ws, _, err := websocket.Dial(ctx, wsURL, nil)
			return ws, err
		},
		BackoffMin: backoffMin, BackoffMax: backoffMax,
	}, gate.sleep)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ctl.Close() })
	for k := 1; k <= 8; k++ {
		checkStep(t, 1, k, gate.next(t), backoffMin, backoffMax)
		gate.releaseOne()
	}
	if n := ctl.Connections(); n < 8 {
		t.Fatalf("%d connections, want every dial to have connected", n)
	}
}
