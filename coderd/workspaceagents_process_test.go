package coderd_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/wgmesh/coder/coderd/coderdtest"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/codersdk/agentsdk"
)

// coderBinary builds ./cmd/coder once per test binary; TestMain removes it.
var coderBinary struct {
	once sync.Once
	dir  string
	path string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if coderBinary.dir != "" {
		_ = os.RemoveAll(coderBinary.dir)
	}
	os.Exit(code)
}

// buildCoder returns the path of a freshly built coder binary.
func buildCoder(t *testing.T) string {
	t.Helper()
	coderBinary.once.Do(func() {
		dir, err := os.MkdirTemp("", "coder-bin-")
		if err != nil {
			coderBinary.err = err
			return
		}
		coderBinary.dir = dir
		path := filepath.Join(dir, "coder")
		cmd := exec.Command("go", "build", "-o", path, "github.com/wgmesh/coder/cmd/coder")
		cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local")
		if out, err := cmd.CombinedOutput(); err != nil {
			coderBinary.err = fmt.Errorf("go build ./cmd/coder: %w\n%s", err, out)
			return
		}
		coderBinary.path = path
	})
	if coderBinary.err != nil {
		t.Fatal(coderBinary.err)
	}
	return coderBinary.path
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
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

// agentProcess is `coder agent` running as a subprocess.
type agentProcess struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan struct{}
	err    error
}

// startAgentProcess starts `coder agent` with env (plus a private data
// dir). The process is killed at the end of the test if still running.
func startAgentProcess(t *testing.T, env ...string) *agentProcess {
	t.Helper()
	return startAgentProcessIn(t, t.TempDir(), env...)
}

// startAgentProcessIn is startAgentProcess with the given data dir.
func startAgentProcessIn(t *testing.T, dataDir string, env ...string) *agentProcess {
	t.Helper()
	bin := buildCoder(t)
	p := &agentProcess{stderr: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, "agent")
	base := []string{"HOME=" + t.TempDir(), "PATH=" + os.Getenv("PATH"), "USER=" + os.Getenv("USER"),
		"CODER_AGENT_DATA_DIR=" + dataDir}
	p.cmd.Env = append(base, env...)
	p.cmd.Stdout = p.stderr
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start coder agent: %v", err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("coder agent output:\n%s", p.stderr.String())
		}
	})
	return p
}

// terminate sends SIGTERM and returns the exit code.
func (p *agentProcess) terminate(t *testing.T) int {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	select {
	case <-p.done:
	case <-time.After(2 * time.Minute):
		t.Fatal("coder agent did not exit after SIGTERM")
	}
	var exitErr *exec.ExitError
	if errors.As(p.err, &exitErr) {
		return exitErr.ExitCode()
	}
	if p.err != nil {
		t.Fatalf("wait: %v", p.err)
	}
	return 0
}

func TestAgentProcess(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// tokenEnv returns the token variables for the agent's token.
		tokenEnv func(t *testing.T, token string) []string
	}{
		{name: "token", tokenEnv: func(_ *testing.T, token string) []string {
			return []string{"CODER_AGENT_TOKEN=" + token}
		}},
		{name: "token file", tokenEnv: func(t *testing.T, token string) []string {
			path := filepath.Join(t.TempDir(), "token")
			if err := os.WriteFile(path, []byte(token+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			return []string{"CODER_AGENT_TOKEN_FILE=" + path}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newAgentEnv(t)
			owner := e.client()
			first := coderdtest.CreateFirstUser(t, owner)
			marker := filepath.Join(t.TempDir(), "stopped")
			stop := agentsdk.Script{LogSourceID: uuid.New(), DisplayName: "Shutdown Script", RunOnStop: true,
				Script: fmt.Sprintf("echo proc-shutdown; touch %q", marker)}
			agentID, token := insertAgent(t, e.store, uuid.MustParse(first.UserID), startScript("echo proc-startup", 0), stop)

			env := append([]string{"CODER_AGENT_URL=" + e.url.String(), "CODER_AGENT_AUTH=token"}, tc.tokenEnv(t, token)...)
			p := startAgentProcess(t, env...)
			got := waitAgent(t, owner, agentID, "connected and ready", func(a codersdk.WorkspaceAgent) bool {
				return a.Status == codersdk.WorkspaceAgentConnected && a.LifecycleState == codersdk.WorkspaceAgentLifecycleReady
			})
			if got.Version == "" || got.ExpandedDirectory == "" {
				t.Errorf("startup not reported: version %q directory %q", got.Version, got.ExpandedDirectory)
			}
			waitLog(t, owner, agentID, "proc-startup")
			sc := dialAgentSSH(t, owner, e.derpMap, agentID)
			if out, _, code := sshRun(t, sc, "echo $CODER $CODER_WORKSPACE_AGENT_NAME"); out != "true main\n" || code != 0 {
				t.Fatalf("ssh into the agent process: %q %d", out, code)
			}
			_ = sc.Close()

			if code := p.terminate(t); code != 0 {
				t.Fatalf("coder agent exited %d", code)
			}
			if _, err := os.Stat(marker); err != nil {
				t.Fatalf("shutdown script did not run: %v", err)
			}
			// Everything was reported before the process exited.
			a, err := owner.WorkspaceAgent(context.Background(), agentID)
			if err != nil {
				t.Fatal(err)
			}
			if a.LifecycleState != codersdk.WorkspaceAgentLifecycleOff {
				t.Fatalf("lifecycle after SIGTERM: %s", a.LifecycleState)
			}
			logs, err := owner.WorkspaceAgentLogsAfter(context.Background(), agentID, 0)
			if err != nil {
				t.Fatal(err)
			}
			var outputs []string
			for _, l := range logs {
				outputs = append(outputs, l.Output)
			}
			if !strings.Contains(strings.Join(outputs, "\n"), "proc-shutdown") {
				t.Fatalf("shutdown script output not in coderd: %q", outputs)
			}
			waitAgent(t, owner, agentID, "disconnected", func(a codersdk.WorkspaceAgent) bool {
				return a.Status == codersdk.WorkspaceAgentDisconnected
			})
		})
	}
}

func TestAgentProcessWrongToken(t *testing.T) {
	t.Parallel()
	e := newAgentEnv(t)
	owner := e.client()
	first := coderdtest.CreateFirstUser(t, owner)
	agentID, _ := insertAgent(t, e.store, uuid.MustParse(first.UserID))
	path := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(path, []byte(uuid.NewString()), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startAgentProcess(t, "CODER_AGENT_URL="+e.url.String(), "CODER_AGENT_AUTH=token", "CODER_AGENT_TOKEN_FILE="+path)
	// It says why, retries with backoff, and stays up.
	const refused = "coderd rejected the agent token (401)"
	eventually(t, 60*time.Second, "three refused attempts", func() bool {
		return strings.Count(p.stderr.String(), refused) >= 3
	})
	select {
	case <-p.done:
		t.Fatalf("coder agent exited: %v", p.err)
	default:
	}
	a, err := owner.WorkspaceAgent(context.Background(), agentID)
	if err != nil {
		t.Fatal(err)
	}
	// Never connected: "connecting", or "timeout" once the agent's connection
	// timeout has passed (on a slow machine it can, before this check).
	neverConnected := a.Status == codersdk.WorkspaceAgentConnecting || a.Status == codersdk.WorkspaceAgentTimeout
	if !neverConnected || a.FirstConnectedAt != nil || a.LifecycleState != codersdk.WorkspaceAgentLifecycleCreated {
		t.Fatalf("agent with a wrong token: %s %s (first connected %v)", a.Status, a.LifecycleState, a.FirstConnectedAt)
	}
	if code := p.terminate(t); code != 0 {
		t.Fatalf("coder agent exited %d", code)
	}
}

// TestAgentProcessKilledDuringOutageKeepsLogs: logs written while coderd is
// down survive the agent process being killed (SIGKILL, no shutdown) and
// arrive once, from the next agent process on the same data dir.
func TestAgentProcessKilledDuringOutageKeepsLogs(t *testing.T) {
	t.Parallel()
	e := newAgentEnv(t)
	owner := e.client()
	first := coderdtest.CreateFirstUser(t, owner)
	dir := t.TempDir()
	gate, done := filepath.Join(dir, "go"), filepath.Join(dir, "done")
	// The script does its work once: the restarted agent runs it again.
	script := fmt.Sprintf(`[ -f %[2]q ] && exit 0
echo before-outage
while [ ! -f %[1]q ]; do sleep 0.05; done
touch %[2]q
echo during-outage-1
echo during-outage-2`, gate, done)
	agentID, token := insertAgent(t, e.store, uuid.MustParse(first.UserID), startScript(script, 0))
	dataDir := t.TempDir()
	env := []string{"CODER_AGENT_URL=" + e.url.String(), "CODER_AGENT_AUTH=token", "CODER_AGENT_TOKEN=" + token}
	p1 := startAgentProcessIn(t, dataDir, env...)
	waitLog(t, owner, agentID, "before-outage")

	e.stop()
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	spool := filepath.Join(dataDir, "logs-spool.json")
	eventually(t, 60*time.Second, "lines spooled to disk", func() bool {
		data, err := os.ReadFile(spool)
		return err == nil && strings.Contains(string(data), "during-outage-2")
	})
	if err := p1.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-p1.done

	e.start()
	owner = e.client()
	owner.SetSessionToken(loginOwner(t, owner))
	startAgentProcessIn(t, dataDir, env...)
	waitLog(t, owner, agentID, "during-outage-2")
	waitAgent(t, owner, agentID, "connected and ready", func(a codersdk.WorkspaceAgent) bool {
		return a.Status == codersdk.WorkspaceAgentConnected && a.LifecycleState == codersdk.WorkspaceAgentLifecycleReady
	})
	logs, err := owner.WorkspaceAgentLogsAfter(context.Background(), agentID, 0)
	if err != nil {
		t.Fatal(err)
	}
	var outputs []string
	for _, l := range logs {
		outputs = append(outputs, l.Output)
	}
	if got := strings.Join(outputs, "|"); got != "before-outage|during-outage-1|during-outage-2" {
		t.Fatalf("logs in coderd: %q", got)
	}
	eventually(t, 60*time.Second, "spool removed once delivered", func() bool {
		_, err := os.Stat(spool)
		return errors.Is(err, os.ErrNotExist)
	})
}
