package cli_test

import (
	"bytes"
	"context"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/creack/pty"

	"github.com/wgmesh/coder/cli"
	"github.com/wgmesh/coder/coderd/coderdtest"
)

// syncBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestLoginInteractive drives the prompts through a real pseudo-terminal:
// first-user creation (username, email, password twice), then a password
// login of that user from a fresh config.
func TestLoginInteractive(t *testing.T) {
	t.Parallel()
	client, _ := coderdtest.New(t, nil)

	runOnPTY := func(t *testing.T, env []string, answers string, args ...string) (int, string) {
		t.Helper()
		ptmx, tty, err := pty.Open()
		if err != nil {
			t.Fatalf("open pty: %v", err)
		}
		defer ptmx.Close()
		defer tty.Close()
		// Drain the terminal's echo so writes never block.
		drained := make(chan struct{})
		go func() {
			defer close(drained)
			_, _ = io.Copy(io.Discard, ptmx)
		}()
		if _, err := ptmx.Write([]byte(answers)); err != nil {
			t.Fatal(err)
		}
		var stdout, stderr syncBuffer
		code := cli.Run(context.Background(), cli.Invocation{
			Args: args, Stdin: tty, Stdout: &stdout, Stderr: &stderr, Environ: env,
		})
		_ = tty.Close()
		_ = ptmx.Close()
		<-drained
		return code, stdout.String() + stderr.String()
	}

	env, _ := testEnv(t)
	pw := coderdtest.FirstUserPassword
	code, out := runOnPTY(t, env, "admin\nadmin@coder.test\n"+pw+"\n"+pw+"\n", "login", client.URL.String())
	if code != 0 {
		t.Fatalf("interactive first-user login exited %d:\n%s", code, out)
	}
	if !strings.Contains(out, "Welcome to Coder, admin!") {
		t.Fatalf("output:\n%s", out)
	}

	env2, _ := testEnv(t)
	code, out = runOnPTY(t, env2, "admin@coder.test\n"+pw+"\n", "login", client.URL.String())
	if code != 0 {
		t.Fatalf("interactive password login exited %d:\n%s", code, out)
	}
	if strings.Contains(out, pw) {
		t.Fatalf("password echoed in the output:\n%s", out)
	}
	if me := mustRun(t, env2, "users", "show", "me"); !strings.Contains(me, "admin@coder.test") {
		t.Fatalf("users show me after interactive login:\n%s", me)
	}

	env3, _ := testEnv(t)
	code, out = runOnPTY(t, env3, "admin@coder.test\nwrong-password\n", "login", client.URL.String())
	if code != 1 || !strings.Contains(out, "error: Incorrect email or password.") {
		t.Fatalf("wrong password login exited %d:\n%s", code, out)
	}
}
