package cli_test

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// stdioKillWait bounds each wait of TestStdioProxyAgentKilled; the waits
// are for events (ssh exiting, a process gone), never for time.
const stdioKillWait = 2 * time.Minute

// TestStdioProxyAgentKilled: the agent process is killed (-9) during an
// OpenSSH session through config-ssh's ProxyCommand (`coder ssh --stdio`).
// The ssh session must end with an error naming the agent instead of
// hanging, and no `coder ssh --stdio` process may outlive ssh, also when ssh
// itself is killed (its ProxyCommand's stdin then closes).
func TestStdioProxyAgentKilled(t *testing.T) {
	t.Parallel()
	bin := buildCoder(t)
	t.Cleanup(func() { killStdioProxies(bin) })
	for _, tc := range []struct {
		name    string
		killSSH bool // kill ssh -9 right after the agent
	}{
		{"ssh notices", false},
		{"ssh killed too", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newReachEnv(t)
			agentID, token := e.addWorkspace("victim")
			agentCmd := startAgentProcess(t, bin, e, token)
			e.waitConnected(agentID)

			sshConfig := filepath.Join(t.TempDir(), "ssh_config")
			if res := runCLI(t, e.env, nil, "config-ssh", "-y", "--ssh-config-file", sshConfig, "--coder-binary-path", bin); res.code != 0 {
				t.Fatalf("config-ssh: exit %d stderr %q", res.code, res.stderr)
			}
			ssh := exec.Command("ssh", "-F", sshConfig, "coder.victim", "while :; do echo tick; sleep 0.2; done")
			ssh.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
			stdout, err := ssh.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			var stderr lockedBuffer
			ssh.Stderr = &stderr
			// A leaked ProxyCommand keeps ssh's stderr pipe open; Wait must
			// still return once ssh itself exited.
			ssh.WaitDelay = 5 * time.Second
			if err := ssh.Start(); err != nil {
				t.Fatal(err)
			}
			sshDone := make(chan error, 1)
			ticking := make(chan struct{})
			go func() {
				sc := bufio.NewScanner(stdout)
				for first := true; sc.Scan(); first = false {
					if first {
						close(ticking)
					}
				}
				sshDone <- ssh.Wait()
			}()
			t.Cleanup(func() {
				_ = ssh.Process.Kill()
				killStdioProxies(bin)
				<-sshDone
			})
			// The session streams through the proxy process.
			select {
			case <-ticking:
			case err := <-sshDone:
				t.Fatalf("ssh ended before streaming: %v; stderr %q", err, stderr.String())
			case <-time.After(stdioKillWait):
				t.Fatalf("ssh session printed nothing; stderr %q", stderr.String())
			}
			if len(stdioProxies(bin)) == 0 {
				t.Fatal("no coder ssh --stdio process found for the session")
			}

			if err := agentCmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			_ = agentCmd.Wait()
			if tc.killSSH {
				_ = ssh.Process.Signal(syscall.SIGKILL)
			}
			select {
			case err := <-sshDone:
				sshDone <- err
				var ee *exec.ExitError
				if !errors.As(err, &ee) {
					t.Fatalf("ssh ended with %v, want a non-zero exit", err)
				}
				if !tc.killSSH && !strings.Contains(stderr.String(), `agent "main" is unreachable`) {
					t.Fatalf("ssh stderr does not say the agent is gone: %q", stderr.String())
				}
			case <-time.After(stdioKillWait):
				t.Fatalf("ssh still running after the agent was killed; stderr %q", stderr.String())
			}
			eventuallyStdio(t, "no coder ssh --stdio left", func() bool { return len(stdioProxies(bin)) == 0 })
		})
	}
}

// startAgentProcess runs `coder agent` (the built binary) for token; it is
// killed at cleanup if still running.
func startAgentProcess(t *testing.T, bin string, e *reachEnv, token string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, "agent")
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "SHELL=/bin/sh",
		"CODER_AGENT_URL=" + e.srv.URL.String(), "CODER_AGENT_TOKEN=" + token,
		"CODER_AGENT_DATA_DIR=" + t.TempDir(),
	}
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		if t.Failed() {
			t.Logf("agent output:\n%s", out.String())
		}
	})
	return cmd
}

// killStdioProxies kills what a failed run left behind.
func killStdioProxies(bin string) {
	for _, pid := range stdioProxies(bin) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// stdioProxies lists the pids of `BIN ... ssh --stdio` processes.
func stdioProxies(bin string) []int {
	var pids []int
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if len(args) > 0 && args[0] == bin && bytes.Contains(b, []byte("--stdio")) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// eventuallyStdio polls cond until it holds or stdioKillWait passes.
func eventuallyStdio(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(stdioKillWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
