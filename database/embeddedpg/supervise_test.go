package embeddedpg_test

import (
	"context"
	"log/slog"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/wgmesh/coder/database/embeddedpg"
)

// TestSuperviseRestartsKilledPostmaster kills the postmaster with SIGKILL,
// twice: each time the supervisor starts the cluster again on the same URL,
// a pool opened before the crash serves queries again and committed data
// survived (crash recovery).
func TestSuperviseRestartsKilledPostmaster(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	// Durable, like coder server's cluster: with NoSync (synchronous_commit
	// off) a SIGKILL loses the commits still in the WAL buffers.
	c, err := embeddedpg.Start(ctx, embeddedpg.Options{DataDir: dataDir(t), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop(context.Background()) })

	pool, err := pgxpool.New(ctx, c.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := c.Supervise(embeddedpg.SuperviseOptions{Interval: 50 * time.Millisecond, OnRestart: pool.Reset}); err != nil {
		t.Fatal(err)
	}
	if err := c.Supervise(embeddedpg.SuperviseOptions{}); err == nil {
		t.Fatal("a second Supervise was accepted")
	}
	if _, err := pool.Exec(ctx, "CREATE TABLE kept (n int)"); err != nil {
		t.Fatal(err)
	}

	for round := 1; round <= 2; round++ {
		if _, err := pool.Exec(ctx, "INSERT INTO kept VALUES ($1)", round); err != nil {
			t.Fatalf("round %d: insert before the kill: %v", round, err)
		}
		pid, err := c.PostmasterPID()
		if err != nil {
			t.Fatal(err)
		}
		_, changed := c.Restarts()
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatalf("kill postmaster %d: %v", pid, err)
		}
		select {
		case <-changed:
		case <-ctx.Done():
			t.Fatalf("round %d: the killed postmaster was never restarted", round)
		}
		events, _ := c.Restarts()
		if len(events) != round {
			t.Fatalf("round %d: %d restarts recorded: %+v", round, len(events), events)
		}
		ev := events[round-1]
		if ev.DiedPID != pid || ev.PID == pid || ev.PID <= 0 || ev.Attempts < 1 {
			t.Fatalf("round %d: restart event %+v (killed %d)", round, ev, pid)
		}
		if now, err := c.PostmasterPID(); err != nil || now != ev.PID {
			t.Fatalf("round %d: postmaster.pid holds %d (%v), event says %d", round, now, err, ev.PID)
		}
		var n int
		if err := pool.QueryRow(ctx, "SELECT count(*) FROM kept").Scan(&n); err != nil {
			t.Fatalf("round %d: query through the old pool after the restart: %v", round, err)
		}
		if n != round {
			t.Fatalf("round %d: %d rows survived, want %d", round, n, round)
		}
	}
	// Stop ends supervision: the stopped server stays stopped.
	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PostmasterPID(); err == nil {
		t.Fatal("postmaster.pid still present after Stop")
	}
}

// testLogger logs through t.Log.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
