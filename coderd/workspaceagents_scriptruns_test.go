package coderd_test

import (
	"context"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/wgmesh/coder/coderd/coderdtest"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/codersdk/agentsdk"
)

// TestAgentScriptRuns: the agent reports each script's run (running while
// it runs, then ok / exit_failure / timed_out with the exit code), read
// with GET /workspaceagents/{id}/script-runs. An agent cannot report a
// script of another agent (404), bad reports are 400, and another member
// cannot read the runs (404).
func TestAgentScriptRuns(t *testing.T) {
	t.Parallel()
	e := newAgentEnv(t)
	owner := e.client()
	first := coderdtest.CreateFirstUser(t, owner)
	member, _ := coderdtest.CreateAnotherUser(t, owner)
	gate := t.TempDir() + "/gate"
	scripts := []agentsdk.Script{
		{LogSourceID: uuid.New(), DisplayName: "ok", Script: "echo fine", RunOnStart: true},
		{LogSourceID: uuid.New(), DisplayName: "fails", Script: "exit 7", RunOnStart: true},
		{LogSourceID: uuid.New(), DisplayName: "slow", Script: "sleep 600", RunOnStart: true, TimeoutSeconds: 1},
		{LogSourceID: uuid.New(), DisplayName: "gated", Script: "while [ ! -e '" + gate + "' ]; do sleep 0.1; done", RunOnStart: true},
	}
	agentID, token := insertAgent(t, e.store, uuid.MustParse(first.UserID), scripts...)
	_, otherToken := insertAgent(t, e.store, uuid.MustParse(first.UserID), startScript("true", 0))
	ctx := context.Background()
	ag, err := owner.WorkspaceAgent(ctx, agentID)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]uuid.UUID{}
	for _, s := range ag.Scripts {
		byName[s.DisplayName] = s.ID
	}
	runAgent(t, e.url, token)

	runs := func() map[uuid.UUID]codersdk.WorkspaceAgentScriptRun {
		list, err := owner.WorkspaceAgentScriptRuns(ctx, agentID)
		if err != nil {
			t.Fatal(err)
		}
		out := map[uuid.UUID]codersdk.WorkspaceAgentScriptRun{}
		for _, r := range list {
			out[r.ScriptID] = r
		}
		return out
	}
	eventually(t, time.Minute, "the gated script to be reported running and the others ended", func() bool {
		r := runs()
		return r[byName["gated"]].Status == codersdk.ScriptRunRunning && r[byName["ok"]].EndedAt != nil &&
			r[byName["fails"]].EndedAt != nil && r[byName["slow"]].EndedAt != nil
	})
	r := runs()
	if g := r[byName["gated"]]; g.EndedAt != nil || g.ExitCode != nil || g.StartedAt.IsZero() {
		t.Fatalf("running script: %+v", g)
	}
	for name, want := range map[string]struct {
		status codersdk.WorkspaceAgentScriptRunStatus
		code   int32
	}{"ok": {codersdk.ScriptRunOK, 0}, "fails": {codersdk.ScriptRunExitFailure, 7}, "slow": {codersdk.ScriptRunTimedOut, -1}} {
		got := r[byName[name]]
		if got.Status != want.status || got.ExitCode == nil || *got.ExitCode != want.code || got.EndedAt.Before(got.StartedAt) {
			t.Fatalf("script %s: %+v (exit %v), want %s exit %d", name, got, got.ExitCode, want.status, want.code)
		}
	}
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "the gated script to end ok", func() bool {
		g := runs()[byName["gated"]]
		return g.Status == codersdk.ScriptRunOK && g.ExitCode != nil && *g.ExitCode == 0
	})

	// The other agent may not report this agent's scripts.
	other := agentsdk.New(e.url, otherToken)
	now := time.Now()
	code := int32(0)
	err = other.PostScriptRun(ctx, agentsdk.PostScriptRunRequest{ScriptID: byName["fails"], Status: codersdk.ScriptRunOK, StartedAt: now, EndedAt: &now, ExitCode: &code})
	if apiErr, ok := codersdk.AsError(err); !ok || apiErr.StatusCode() != http.StatusNotFound {
		t.Fatalf("foreign script report: %v", err)
	}
	if got := runs()[byName["fails"]]; got.Status != codersdk.ScriptRunExitFailure {
		t.Fatalf("a foreign report changed the run: %+v", got)
	}
	// Bad reports.
	self := agentsdk.New(e.url, token)
	for _, bad := range []agentsdk.PostScriptRunRequest{
		{ScriptID: byName["ok"], Status: "exploded", StartedAt: now},
		{ScriptID: byName["ok"], Status: codersdk.ScriptRunOK, StartedAt: now},
		{ScriptID: byName["ok"], Status: codersdk.ScriptRunRunning},
	} {
		err := self.PostScriptRun(ctx, bad)
		if apiErr, ok := codersdk.AsError(err); !ok || apiErr.StatusCode() != http.StatusBadRequest {
			t.Fatalf("bad report %+v: %v", bad, err)
		}
	}
	// Another member cannot read them.
	if _, err := member.WorkspaceAgentScriptRuns(ctx, agentID); err == nil {
		t.Fatal("member read another user's script runs")
	} else if apiErr, ok := codersdk.AsError(err); !ok || apiErr.StatusCode() != http.StatusNotFound {
		t.Fatalf("member read: %v", err)
	}
}
