package cli_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wgmesh/coder/cli"
	"github.com/wgmesh/coder/database/embeddedpg"
)

// TestServerStartupErrorsArePrinted: a server that cannot start prints why,
// whatever error type carries the cause. A broken setting of the embedded
// cluster fails in pg_ctl, whose *exec.ExitError has an ExitCode method: it
// must not be mistaken for a remote command's exit status and swallowed.
func TestServerStartupErrorsArePrinted(t *testing.T) {
	t.Parallel()

	brokenEmbedded := func(t *testing.T) []string {
		env, cfg := testEnv(t)
		for _, d := range []string{filepath.Dir(filepath.Dir(cfg)), filepath.Dir(cfg)} {
			if err := os.Chmod(d, 0o711); err != nil {
				t.Fatal(err)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		dataDir := filepath.Join(cfg, "postgres")
		c, err := embeddedpg.Start(ctx, embeddedpg.Options{DataDir: dataDir, NoSync: true})
		if err != nil {
			t.Fatalf("create embedded cluster: %v", err)
		}
		if err := c.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		conf := filepath.Join(dataDir, "pgdata", "postgresql.conf")
		f, err := os.OpenFile(conf, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		_, err = f.WriteString("\nshared_buffers = 'not-a-size'\n")
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatal(err)
		}
		return env
	}

	for _, tc := range []struct {
		name string
		env  func(t *testing.T) []string
		args []string
		want []string
	}{
		{
			name: "unresolvable postgres host",
			env:  func(t *testing.T) []string { env, _ := testEnv(t); return env },
			args: []string{"--postgres-url", "postgres://bad"},
			want: []string{"error: ", "migrate database", "bad"},
		},
		{
			name: "refused postgres port",
			env:  func(t *testing.T) []string { env, _ := testEnv(t); return env },
			args: []string{"--postgres-url", "postgres://127.0.0.1:1/x?sslmode=disable"},
			want: []string{"error: ", "connection refused"},
		},
		{
			name: "broken embedded cluster setting",
			env:  brokenEmbedded,
			want: []string{"error: ", "pg_ctl start", "exit status 1", "shared_buffers"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := append(tc.env(t), "CODER_HTTP_ADDRESS=127.0.0.1:0", "CODER_DERP_SERVER_STUN_ADDRESSES=127.0.0.1:0")
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			res := runCLIContext(ctx, env, append([]string{"server"}, tc.args...)...)
			if res.code == 0 {
				t.Fatalf("server exited 0; stderr:\n%s", res.stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(res.stderr, w) {
					t.Fatalf("stderr lacks %q:\n%s", w, res.stderr)
				}
			}
		})
	}
}

// runCLIContext runs the CLI in-process under ctx with no standard input.
func runCLIContext(ctx context.Context, env []string, args ...string) result {
	var stdout, stderr strings.Builder
	code := cli.Run(ctx, cli.Invocation{Args: args, Stdout: &stdout, Stderr: &stderr, Environ: env})
	return result{stdout: stdout.String(), stderr: stderr.String(), code: code}
}

// TestNameArgumentsAreValidated: "..", "/", "?", "#", "%" or an empty part
// in a workspace, owner, user or template argument is refused with one
// error line before any API path is built from it.
func TestNameArgumentsAreValidated(t *testing.T) {
	t.Parallel()
	env, _ := loggedIn(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"show", ".."}, `invalid workspace "..": the name must be`},
		{[]string{"show", "../admin"}, `invalid workspace "../admin": the owner must be`},
		{[]string{"show", "admin/.."}, `invalid workspace "admin/..": the name must be`},
		{[]string{"show", "me/"}, `invalid workspace "me/": the name is required`},
		{[]string{"show", ""}, `invalid workspace "": the name is required`},
		{[]string{"show", "x?y"}, `invalid workspace "x?y"`},
		{[]string{"show", "x#y"}, `invalid workspace "x#y"`},
		{[]string{"show", "%2e%2e"}, `invalid workspace "%2e%2e"`},
		{[]string{"start", "a/b/c"}, `invalid workspace "a/b/c"`},
		{[]string{"delete", "..", "-y"}, `invalid workspace ".."`},
		{[]string{"create", "..", "-t", "local", "-y"}, `invalid workspace ".."`},
		{[]string{"create", "ok", "-t", "..", "-y"}, `invalid template name ".."`},
		{[]string{"ssh", ".."}, `(argument "..", expected [owner/]workspace[.agent])`},
		{[]string{"users", "show", ".."}, `invalid user ".."`},
		{[]string{"users", "suspend", "a/b"}, `invalid user "a/b"`},
		{[]string{"templates", "push", "../x", "-d", t.TempDir(), "-y"}, `invalid template name "../x"`},
		{[]string{"templates", "versions", "list", ".."}, `invalid template name ".."`},
	} {
		res := runCLI(t, env, nil, tc.args...)
		if res.code != 1 || !strings.Contains(res.stderr, tc.want) {
			t.Errorf("coder %q: exit %d, stderr:\n%s\nwant %q", tc.args, res.code, res.stderr, tc.want)
			continue
		}
		if n := strings.Count(res.stderr, "error: "); n != 1 || strings.Count(res.stderr, tc.want) != 1 {
			t.Errorf("coder %q: the error is printed %d times:\n%s", tc.args, n, res.stderr)
		}
	}
}
