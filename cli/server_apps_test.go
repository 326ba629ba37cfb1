package cli_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wgmesh/coder/cli"
	"github.com/wgmesh/coder/database/dbtestutil"
)

// lockedBuffer is a log sink safe for the server's goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestServerWarnsDangerousAppFlags: each flag that weakens the path-app
// boundary is logged as a warning at start; without them nothing is.
func TestServerWarnsDangerousAppFlags(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name             string
		siteOwner, share bool
		want             []string
	}{
		{name: "off"},
		{name: "both on", siteOwner: true, share: true, want: []string{"--dangerous-allow-path-app-site-owner-access is on", "--dangerous-allow-path-app-sharing is on"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var logs lockedBuffer
			srv, err := cli.StartServer(context.Background(), cli.ServerConfig{
				HTTPAddress:                          "127.0.0.1:0",
				PostgresURL:                          dbtestutil.NewDB(t),
				Logger:                               slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn})),
				DangerousAllowPathAppSiteOwnerAccess: tc.siteOwner,
				DangerousAllowPathAppSharing:         tc.share,
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				_ = srv.Close(ctx)
			})
			out := logs.String()
			for _, w := range tc.want {
				if !strings.Contains(out, "level=WARN") || !strings.Contains(out, w) {
					t.Errorf("no warning %q in:\n%s", w, out)
				}
			}
			if len(tc.want) == 0 && strings.Contains(out, "dangerous") {
				t.Errorf("warned with the flags off:\n%s", out)
			}
		})
	}
}
