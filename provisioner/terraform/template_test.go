package terraform

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/codersdk/provisionersdk"
	"github.com/wgmesh/coder/provisioner/templatearchive"
)

// TestLocalTemplate applies examples/templates/local for real: start runs the agent
// init script (which downloads a stand-in agent binary from a local HTTP server),
// stop kills the agent and keeps the home directory, delete removes everything.
func TestLocalTemplate(t *testing.T) {
	t.Parallel()
	r := testRunner(t, "terraform")
	ctx := testContext(t)

	marker := filepath.Join(t.TempDir(), "agent-ran")
	fakeAgent := fmt.Sprintf(`#!/bin/sh
echo "pid=$$ args=$* auth=$CODER_AGENT_AUTH url=$CODER_AGENT_URL token=$CODER_AGENT_TOKEN" >> '%s'
exec sleep 600
`, marker)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /bin/coder-linux-amd64", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(fakeAgent))
	})
	// The init script asks for the binary's hash first (its cache key).
	mux.HandleFunc("GET /bin/coder-linux-amd64.sha256", func(w http.ResponseWriter, _ *http.Request) {
		sum := sha256.Sum256([]byte(fakeAgent))
		_, _ = fmt.Fprintln(w, hex.EncodeToString(sum[:]))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	coderURL := srv.URL + "/"

	archive, err := templatearchive.Create(filepath.Join("..", "..", "examples", "templates", "local"))
	if err != nil {
		t.Fatal(err)
	}
	params := []codersdk.WorkspaceBuildParameter{{Name: "greeting", Value: "bonjour"}}

	imp, err := r.Import(ctx, archive, provisionersdk.Metadata{}, nil, nil)
	if err != nil {
		t.Fatalf("import: %v", err)
	}
	if len(imp.Parameters) != 1 || imp.Parameters[0].Name != "greeting" || imp.Parameters[0].DefaultValue != "hello" || !imp.Parameters[0].Mutable {
		t.Fatalf("parameters = %+v", imp.Parameters)
	}

	var logs logSink
	start, err := r.Build(ctx, archive, nil, testMetadata(codersdk.WorkspaceTransitionStart, coderURL), params, logs.add)
	if err != nil {
		t.Fatalf("start: %v\n%s", err, logs.text())
	}
	agentRes := findResource(t, start.Resources, "terraform_data", "agent")
	if len(agentRes.Agents) != 1 {
		t.Fatalf("agent resource = %+v", agentRes)
	}
	agent := agentRes.Agents[0]
	home := filepath.Join(r.Env["HOME"], ".coder-workspaces", "alice-dev")
	if agent.Directory != home || agent.Env["GREETING"] != "bonjour" {
		t.Errorf("agent = %+v, want dir %s and GREETING=bonjour", agent, home)
	}
	if len(agent.Apps) != 2 || len(agent.Metadata) != 1 || len(agent.Scripts) != 1 {
		t.Errorf("agent apps/metadata/scripts = %+v / %+v / %+v", agent.Apps, agent.Metadata, agent.Scripts)
	}
	homeRes := findResource(t, start.Resources, "terraform_data", "home")
	if len(homeRes.Metadata) != 2 || homeRes.Metadata[0].Value != home {
		t.Errorf("home metadata = %+v", homeRes.Metadata)
	}

	// The init script downloaded the "agent" and ran it with the token from state.
	waitFor(t, time.Minute, "the agent to run", func() bool {
		data, _ := os.ReadFile(marker)
		return strings.Contains(string(data), "\n")
	})
	data, err := os.ReadFile(marker)
	if err != nil {
		t.Fatal(err)
	}
	line := strings.TrimSpace(string(data))
	for _, want := range []string{"args=agent", "auth=token", "url=" + coderURL, "token=" + agent.Token} {
		if !strings.Contains(line, want) {
			t.Errorf("agent ran with %q, want %q", line, want)
		}
	}
	var pid int
	if _, err := fmt.Sscanf(line, "pid=%d", &pid); err != nil {
		t.Fatalf("parse %q: %v", line, err)
	}
	if !processAlive(pid) {
		t.Fatalf("agent process %d is not running after start", pid)
	}

	// Stop kills the agent, keeps the home.
	stop, err := r.Build(ctx, archive, start.State, testMetadata(codersdk.WorkspaceTransitionStop, coderURL), params, nil)
	if err != nil {
		t.Fatalf("stop: %v", err)
	}
	waitFor(t, 30*time.Second, "the agent to be killed", func() bool { return !processAlive(pid) })
	if len(stop.Resources) != 1 || stop.Resources[0].Name != "home" {
		t.Errorf("stop resources = %+v, want only home", stop.Resources)
	}
	if st, err := os.Stat(home); err != nil || !st.IsDir() {
		t.Fatalf("home %s missing after stop: %v", home, err)
	}

	// A rename (the next builds carry the new name) keeps the home: the
	// agent runs in it, a file in it survives, and no second home appears.
	keep := filepath.Join(home, "notes.txt")
	if err := os.WriteFile(keep, []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	renamed := func(tr codersdk.WorkspaceTransition) provisionersdk.Metadata {
		md := testMetadata(tr, coderURL)
		md.WorkspaceName = "renamed"
		return md
	}
	renamedHome := filepath.Join(r.Env["HOME"], ".coder-workspaces", "alice-renamed")
	restart, err := r.Build(ctx, archive, stop.State, renamed(codersdk.WorkspaceTransitionStart), params, nil)
	if err != nil {
		t.Fatalf("start after rename: %v", err)
	}
	if a := findResource(t, restart.Resources, "terraform_data", "agent").Agents; len(a) != 1 || a[0].Directory != home {
		t.Errorf("agent after rename = %+v, want dir %s", a, home)
	}
	if b, err := os.ReadFile(keep); err != nil || string(b) != "mine" {
		t.Errorf("file in the home after rename: %q, %v", b, err)
	}
	stop, err = r.Build(ctx, archive, restart.State, renamed(codersdk.WorkspaceTransitionStop), params, nil)
	if err != nil {
		t.Fatalf("stop after rename: %v", err)
	}

	// Delete removes the home (the one it has, whatever the name now).
	del, err := r.Build(ctx, archive, stop.State, renamed(codersdk.WorkspaceTransitionDelete), params, nil)
	if err != nil {
		t.Fatalf("delete: %v", err)
	}
	if len(del.State) != 0 {
		t.Errorf("delete left %d bytes of state", len(del.State))
	}
	for _, dir := range []string{home, renamedHome} {
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("home %s exists after delete (err %v)", dir, err)
		}
	}
}
