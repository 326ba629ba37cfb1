package cli_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wgmesh/coder/cli"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/database"
)

// TestSSHWaitYesStreamsStartupLogs: `coder ssh --wait yes` prints the
// startup script's output while it waits, line by line as the script
// writes it, and connects once the script is done; --wait no connects at
// once without printing it. The script prints a line, blocks until a file
// appears, prints another. Real coderd, PostgreSQL and agent.
func TestSSHWaitYesStreamsStartupLogs(t *testing.T) {
	t.Parallel()
	e := newReachEnv(t)
	agentID, token := e.addWorkspace("logs")
	gate := filepath.Join(t.TempDir(), "gate")
	addStartupScript(t, e, agentID, `echo "first-$((20+1))"; while [ ! -e '`+gate+`' ]; do sleep 0.1; done; echo "second-$((40+2))"`)
	e.runAgent(token)
	waitFor(t, time.Minute, "the script to print its first line", func() (bool, error) {
		logs, err := e.client.WorkspaceAgentLogsAfter(context.Background(), agentID, 0)
		return err == nil && strings.Contains(joinLogs(logs), "first-21"), nil
	})

	// --wait no: connects while the script still blocks, prints no logs.
	res := runCLI(t, e.env, nil, "ssh", "logs", "--wait", "no", "--", "echo", "no-wait-ok")
	if res.code != 0 || !strings.Contains(res.stdout, "no-wait-ok") {
		t.Fatalf("ssh --wait no: %+v", res)
	}
	if strings.Contains(res.stderr, "first-21") {
		t.Fatalf("ssh --wait no printed startup logs:\n%s", res.stderr)
	}

	var stdout, stderr syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	go func() {
		done <- cli.Run(ctx, cli.Invocation{Args: []string{"ssh", "logs", "--wait", "yes", "--", "echo", "connected-ok"}, Stdout: &stdout, Stderr: &stderr, Environ: e.env})
	}()
	waitFor(t, time.Minute, "the first startup line on stderr", func() (bool, error) {
		return strings.Contains(stderr.String(), "first-21"), nil
	})
	// The script still blocks, so the command must still be waiting.
	if got := stdout.String(); got != "" {
		t.Fatalf("ssh --wait yes ran the command before the script ended: %q", got)
	}
	if ag, err := e.client.WorkspaceAgent(context.Background(), agentID); err != nil || ag.LifecycleState != codersdk.WorkspaceAgentLifecycleStarting {
		t.Fatalf("agent lifecycle %s (%v), want starting", ag.LifecycleState, err)
	}
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	var code int
	select {
	case code = <-done:
	case <-time.After(2 * time.Minute):
		t.Fatalf("ssh --wait yes did not finish; stderr:\n%s", stderr.String())
	}
	t.Logf("stderr:\n%s", stderr.String())
	if code != 0 || !strings.Contains(stdout.String(), "connected-ok") {
		t.Fatalf("ssh --wait yes: exit %d, stdout %q, stderr:\n%s", code, stdout.String(), stderr.String())
	}
	errOut := stderr.String()
	if n := strings.Count(errOut, "first-21"); n != 1 {
		t.Fatalf("first line printed %d times:\n%s", n, errOut)
	}
	if !strings.Contains(errOut, "second-42") || strings.Index(errOut, "second-42") < strings.Index(errOut, "first-21") {
		t.Fatalf("second line missing or out of order:\n%s", errOut)
	}
}

func joinLogs(logs []codersdk.WorkspaceAgentLog) string {
	var b strings.Builder
	for _, l := range logs {
		b.WriteString(l.Output + "\n")
	}
	return b.String()
}

// TestShowPrintsAgentMetadata: `coder show` prints the metadata values the
// agent collected (and a failing item's error) under the resources.
func TestShowPrintsAgentMetadata(t *testing.T) {
	t.Parallel()
	e := newReachEnv(t)
	agentID, token := e.addWorkspace("meta")
	ctx := context.Background()
	for i, md := range []database.InsertWorkspaceAgentMetadataParams{
		{Key: "answer", DisplayName: "The answer", Script: `echo "value-$((6*7))"`, Interval: 1, Timeout: 5},
		{Key: "broken", DisplayName: "Broken", Script: `echo oops; exit 3`, Interval: 1, Timeout: 5},
	} {
		md.WorkspaceAgentID, md.DisplayOrder = agentID, int32(i)
		if err := e.srv.DB.InsertWorkspaceAgentMetadata(ctx, md); err != nil {
			t.Fatal(err)
		}
	}
	before := mustRun(t, e.env, "show", "meta")
	if !strings.Contains(before, "The answer") || !strings.Contains(before, "not yet") {
		t.Fatalf("show before collection lacks the uncollected item:\n%s", before)
	}
	e.runAgent(token)
	var out string
	waitFor(t, time.Minute, "show to print the collected values", func() (bool, error) {
		out = mustRun(t, e.env, "show", "meta")
		return strings.Contains(out, "value-42") && strings.Contains(out, "exit status 3"), nil
	})
	t.Logf("show:\n%s", out)
	for _, want := range []string{"Metadata of agent main:", "KEY", "answer", "The answer", "broken", "error: exit status 3"} {
		if !strings.Contains(out, want) {
			t.Fatalf("show lacks %q:\n%s", want, out)
		}
	}
}

// TestSSHWaitAutoStreamsBlockingStartupLogs: with the default --wait auto,
// a start script that blocks login makes `coder ssh` wait for it and print
// its output meanwhile.
func TestSSHWaitAutoStreamsBlockingStartupLogs(t *testing.T) {
	t.Parallel()
	e := newReachEnv(t)
	agentID, token := e.addWorkspace("blocking")
	gate := filepath.Join(t.TempDir(), "gate")
	addStartupScript(t, e, agentID, `echo "auto-first-$((1+2))"; while [ ! -e '`+gate+`' ]; do sleep 0.1; done; echo "auto-second-$((3+4))"`)
	if _, err := e.srv.DB.Pool().Exec(context.Background(), `UPDATE workspace_agent_scripts SET start_blocks_login = true WHERE workspace_agent_id = $1`, agentID); err != nil {
		t.Fatal(err)
	}
	e.runAgent(token)

	var stdout, stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- cli.Run(context.Background(), cli.Invocation{Args: []string{"ssh", "blocking", "--", "echo", "auto-connected"}, Stdout: &stdout, Stderr: &stderr, Environ: e.env})
	}()
	waitFor(t, time.Minute, "the blocking script's first line on stderr", func() (bool, error) {
		return strings.Contains(stderr.String(), "auto-first-3"), nil
	})
	if got := stdout.String(); got != "" {
		t.Fatalf("ssh connected while a login-blocking script runs: %q", got)
	}
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-done:
		if code != 0 || !strings.Contains(stdout.String(), "auto-connected") || !strings.Contains(stderr.String(), "auto-second-7") {
			t.Fatalf("ssh --wait auto: exit %d, stdout %q, stderr:\n%s", code, stdout.String(), stderr.String())
		}
	case <-time.After(2 * time.Minute):
		t.Fatalf("ssh --wait auto did not finish; stderr:\n%s", stderr.String())
	}
}
