package natlab

import (
	"context"
	"log/slog"
	"os"
	"testing"
)

// New builds a lab for a test and removes it in t.Cleanup, even when the test
// fails. Stale labs of dead test processes are swept first. When this machine
// cannot build labs (not root, tools missing, namespaces refused) the test
// fails under CI (CI set in the environment) and is skipped loudly otherwise.
func New(t testing.TB, opts Options) *Lab {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	if err := Check(); err != nil {
		unavailable(t, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), defaultSetupTimeout)
	defer cancel()
	if err := Sweep(ctx, opts.Logger); err != nil {
		t.Logf("natlab: sweeping stale namespaces: %v", err)
	}
	lab, err := Create(ctx, opts)
	if err != nil {
		unavailable(t, err)
	}
	t.Cleanup(func() {
		if err := lab.Close(); err != nil {
			t.Errorf("natlab: teardown: %v", err)
		}
	})
	return lab
}

func unavailable(t testing.TB, err error) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("natlab: cannot build the NAT lab under CI: %v", err)
	}
	t.Skipf("!!! NATLAB SKIPPED: cannot build network namespaces on this machine: %v — "+
		"run as root with iproute2, iptables and conntrack installed (CI fails instead of skipping)", err)
}

// testWriter sends log lines to t.Log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(trimNewline(p)))
	return len(p), nil
}

func trimNewline(p []byte) []byte {
	for len(p) > 0 && (p[len(p)-1] == '\n' || p[len(p)-1] == '\r') {
		p = p[:len(p)-1]
	}
	return p
}
