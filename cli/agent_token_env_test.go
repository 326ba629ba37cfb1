package cli_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"

	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/database"
)

// syncBuf is a bytes.Buffer safe for a process's stdout and stderr.
type syncBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuf) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestAgentTokenHiddenFromSessions runs the built `coder agent` as a
// process with its token in CODER_AGENT_TOKEN (and a token file in
// CODER_AGENT_TOKEN_FILE), then looks at the environment of everything
// the agent starts: a startup script, `coder ssh ws -- env`, OpenSSH
// through `coder config-ssh`, and the web terminal. None may see the token
// or any CODER_AGENT_ secret; the workspace variables are still there.
func TestAgentTokenHiddenFromSessions(t *testing.T) {
	t.Parallel()
	bin := buildCoder(t)
	e := newReachEnv(t)
	agentID, token := e.addWorkspace("tok")
	out := t.TempDir()
	scriptEnv := filepath.Join(out, "script-env")
	addStartupScript(t, e, agentID, fmt.Sprintf("env > %q", scriptEnv))

	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs syncBuf
	agentCmd := exec.Command(bin, "agent")
	agentCmd.Env = []string{
		"HOME=" + t.TempDir(), "PATH=" + os.Getenv("PATH"), "USER=" + os.Getenv("USER"),
		"CODER_AGENT_URL=" + e.srv.URL.String(), "CODER_AGENT_TOKEN=" + token, "CODER_AGENT_TOKEN_FILE=" + tokenFile,
		"CODER_AGENT_AUTH=token", "CODER_AGENT_DATA_DIR=" + t.TempDir(),
	}
	agentCmd.Stdout, agentCmd.Stderr = &logs, &logs
	if err := agentCmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = agentCmd.Process.Kill()
		_ = agentCmd.Wait()
		if t.Failed() {
			t.Logf("coder agent output:\n%s", logs.String())
		}
	})
	e.waitConnected(agentID)

	check := func(t *testing.T, where, env string) {
		t.Helper()
		if !strings.Contains(env, "CODER_WORKSPACE_AGENT_NAME=main") {
			t.Fatalf("%s: not the workspace environment:\n%s", where, env)
		}
		for _, secret := range []string{token, "CODER_AGENT_TOKEN", "CODER_AGENT_AUTH", tokenFile} {
			if strings.Contains(env, secret) {
				t.Errorf("%s: the environment contains %q:\n%s", where, secret, env)
			}
		}
	}

	t.Run("StartupScript", func(t *testing.T) {
		var env []byte
		waitFor(t, time.Minute, "startup script output", func() (bool, error) {
			var err error
			env, err = os.ReadFile(scriptEnv)
			return err == nil && bytes.Contains(env, []byte("CODER_WORKSPACE_AGENT_NAME")), nil
		})
		check(t, "startup script", string(env))
	})
	t.Run("CoderSSH", func(t *testing.T) {
		res := runCLI(t, e.env, nil, "ssh", "tok", "--", "env")
		if res.code != 0 {
			t.Fatalf("coder ssh: exit %d stderr %q", res.code, res.stderr)
		}
		check(t, "coder ssh", res.stdout)
	})
	t.Run("OpenSSH", func(t *testing.T) {
		sshConfig := filepath.Join(t.TempDir(), "ssh_config")
		if res := runCLI(t, e.env, nil, "config-ssh", "-y", "--ssh-config-file", sshConfig, "--coder-binary-path", bin); res.code != 0 {
			t.Fatalf("config-ssh: exit %d stderr %q", res.code, res.stderr)
		}
		cmd := exec.Command("ssh", "-F", sshConfig, "coder.tok", "env")
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
		got, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("ssh: %v\n%s", err, got)
		}
		check(t, "OpenSSH", string(got))
	})
	t.Run("WebTerminal", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		u := fmt.Sprintf("ws://%s/api/v2/workspaceagents/%s/pty?reconnect=%s&height=24&width=200&command=env", e.srv.URL.Host, agentID, uuid.New())
		c, _, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPHeader: http.Header{codersdk.SessionTokenHeader: {e.client.SessionToken()}}})
		if err != nil {
			t.Fatalf("dial web terminal: %v", err)
		}
		defer c.CloseNow()
		var got strings.Builder
		for {
			_, data, err := c.Read(ctx)
			got.Write(data)
			if err != nil {
				break // the command exited and the terminal closed
			}
		}
		check(t, "web terminal", got.String())
	})
}

// addStartupScript gives the agent a blocking-free startup script.
func addStartupScript(t *testing.T, e *reachEnv, agentID uuid.UUID, script string) {
	t.Helper()
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Microsecond)
	src := uuid.New()
	err := e.srv.DB.InTx(ctx, func(q *database.Queries) error {
		if _, err := q.InsertWorkspaceAgentLogSources(ctx, database.InsertWorkspaceAgentLogSourcesParams{
			WorkspaceAgentID: agentID, CreatedAt: now, ID: []uuid.UUID{src}, DisplayName: []string{"Startup Script"}, Icon: []string{""},
		}); err != nil {
			return err
		}
		_, err := q.InsertWorkspaceAgentScripts(ctx, database.InsertWorkspaceAgentScriptsParams{
			WorkspaceAgentID: agentID, CreatedAt: now, ID: []uuid.UUID{uuid.New()}, LogSourceID: []uuid.UUID{src},
			LogPath: []string{""}, Script: []string{script}, Cron: []string{""}, StartBlocksLogin: []bool{false},
			RunOnStart: []bool{true}, RunOnStop: []bool{false}, TimeoutSeconds: []int32{0}, DisplayName: []string{"Startup Script"},
		})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}
