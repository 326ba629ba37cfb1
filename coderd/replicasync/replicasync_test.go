package replicasync_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/wgmesh/coder/coderd/replicasync"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/database"
	"github.com/wgmesh/coder/database/dbtestutil"
	"github.com/wgmesh/coder/database/pubsub"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func ids(rs []codersdk.Replica) []uuid.UUID {
	out := make([]uuid.UUID, 0, len(rs))
	for _, r := range rs {
		out = append(out, r.ID)
	}
	return out
}

func TestHeartbeatStaleAndExpiry(t *testing.T) {
	ctx := context.Background()
	pool := dbtestutil.NewPool(t)
	store := database.NewStore(pool)
	clk := &clock{t: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	opts := func(version, relay string) replicasync.Options {
		return replicasync.Options{
			Hostname: "host-" + version, RegionID: 999, RelayAddress: relay, Version: version,
			UpdateInterval: 2 * time.Second, ExpireAfter: time.Minute, Now: clk.Now, DisableLoop: true,
		}
	}
	var changes [][]codersdk.Replica
	var changesMu sync.Mutex
	aOpts := opts("v1.0.0", "http://a:3000")
	aOpts.OnChange = func(peers []codersdk.Replica) {
		changesMu.Lock()
		defer changesMu.Unlock()
		changes = append(changes, peers)
	}
	a, err := replicasync.New(ctx, logger, store, nil, aOpts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	clk.Add(time.Second)
	b, err := replicasync.New(ctx, logger, store, nil, opts("v1.0.1", "http://b:3000"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })

	// B saw A when it registered, and warned about the version.
	if got := ids(b.All()); len(got) != 2 || got[0] != a.Self().ID || got[1] != b.Self().ID {
		t.Fatalf("B lists %v, want [A B]", got)
	}
	if !strings.Contains(logs.String(), "replica runs another version") || !strings.Contains(logs.String(), "other_version=v1.0.0") {
		t.Fatalf("no version mismatch warning in logs:\n%s", logs.String())
	}
	// A learns B at its next heartbeat, with B's relay address.
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	peers := a.Peers()
	if len(peers) != 1 || peers[0].ID != b.Self().ID || peers[0].RelayAddress != "http://b:3000" || peers[0].Version != "v1.0.1" {
		t.Fatalf("A's peers %+v, want B", peers)
	}

	// B stops heartbeating: after 3 × interval it is dead for A, but its
	// row stays until it expires.
	clk.Add(6 * time.Second)
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if len(a.Peers()) != 1 {
		t.Fatal("B dead after exactly 3 intervals; want it still alive at the boundary")
	}
	clk.Add(time.Second)
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if got := a.Peers(); len(got) != 0 {
		t.Fatalf("A still lists %v after B's heartbeat lapsed", ids(got))
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM replicas WHERE id = $1`, b.Self().ID).Scan(&n); err != nil || n != 1 {
		t.Fatalf("B's row: %d rows, %v; want kept until it expires", n, err)
	}
	clk.Add(time.Minute)
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM replicas WHERE id = $1`, b.Self().ID).Scan(&n); err != nil || n != 0 {
		t.Fatalf("B's row: %d rows, %v; want expired", n, err)
	}

	// B comes back (its process was only paused): its heartbeat re-creates the row.
	if err := b.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if got := a.Peers(); len(got) != 1 || got[0].ID != b.Self().ID {
		t.Fatalf("A lists %v after B came back", ids(got))
	}
	changesMu.Lock()
	defer changesMu.Unlock()
	if len(changes) != 3 || len(changes[0]) != 1 || len(changes[1]) != 0 || len(changes[2]) != 1 {
		t.Fatalf("OnChange calls %v, want [B] [] [B]", changes)
	}
}

func TestCloseAnnouncesStop(t *testing.T) {
	ctx := context.Background()
	url := dbtestutil.NewDB(t)
	pool := dbtestutil.NewPoolFor(t, url)
	newPS := func() *pubsub.Pubsub {
		ps, err := pubsub.New(ctx, nil, pool, pubsub.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = ps.Close() })
		return ps
	}
	changed := make(chan []codersdk.Replica, 16)
	// The heartbeat is long: only the pubsub announcements can make A
	// notice B within the test.
	a, err := replicasync.New(ctx, nil, database.NewStore(pool), newPS(), replicasync.Options{
		Version: "v1", UpdateInterval: time.Hour,
		OnChange: func(p []codersdk.Replica) { changed <- p },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	b, err := replicasync.New(ctx, nil, database.NewStore(pool), newPS(), replicasync.Options{Version: "v1", UpdateInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	await := func(want int) {
		t.Helper()
		select {
		case p := <-changed:
			if len(p) != want {
				t.Fatalf("A's peers %v, want %d", ids(p), want)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("A never saw %d peers", want)
		}
	}
	await(1)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	await(0)
	var stopped bool
	if err := pool.QueryRow(ctx, `SELECT stopped_at IS NOT NULL FROM replicas WHERE id = $1`, b.Self().ID).Scan(&stopped); err != nil || !stopped {
		t.Fatalf("B's stop not recorded: %v %v", stopped, err)
	}
}
