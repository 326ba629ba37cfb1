package cli_test

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/term"
)

// TestSSHInteractivePTY runs the built `coder ssh` on a real pseudo-terminal:
// the remote shell sees the local window size and its changes, the exit
// code propagates, and the local terminal mode is restored on exit.
func TestSSHInteractivePTY(t *testing.T) {
	t.Parallel()
	bin := buildCoder(t)
	e := newReachEnv(t)
	agentID, token := e.addWorkspace("ws1")
	e.runAgent(token)
	e.waitConnected(agentID)

	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatalf("open pty: %v", err)
	}
	defer ptmx.Close()
	defer tty.Close()
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 40, Cols: 132}); err != nil {
		t.Fatal(err)
	}
	before, err := term.GetState(int(tty.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	var out syncBuffer
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		_, _ = io.Copy(&out, ptmx)
	}()
	cmd := exec.Command(bin, "--global-config", e.cfgDir, "ssh", "ws1")
	cmd.Env = append(e.env, "PATH="+os.Getenv("PATH"), "TERM=xterm")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitOut := func(substr string) {
		t.Helper()
		waitFor(t, time.Minute, "terminal output "+substr, func() (bool, error) {
			return strings.Contains(out.String(), substr), nil
		})
	}
	if _, err := ptmx.Write([]byte("echo size-$(stty size | tr ' ' x)\n")); err != nil {
		t.Fatal(err)
	}
	waitOut("size-40x132")
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 50, Cols: 100}); err != nil {
		t.Fatal(err)
	}
	// The resize reaches the remote PTY asynchronously: ask until it shows.
	waitFor(t, time.Minute, "resize forwarded", func() (bool, error) {
		if strings.Contains(out.String(), "size-50x100") {
			return true, nil
		}
		_, err := ptmx.Write([]byte("echo size-$(stty size | tr ' ' x)\n"))
		return false, err
	})
	if _, err := ptmx.Write([]byte("exit 3\n")); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("coder ssh exit: %v\n%s", err, out.String())
	}
	after, err := term.GetState(int(tty.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	if *after != *before {
		t.Fatalf("terminal mode not restored: before %+v after %+v", before, after)
	}
	_ = tty.Close()
	_ = ptmx.Close()
	<-drained
}
