package agent_test

import (
	"os"
	"slices"
	"testing"

	"github.com/wgmesh/coder/agent"
)

func TestScrubEnv(t *testing.T) {
	t.Parallel()
	in := []string{
		"CODER_AGENT_TOKEN=secret", "CODER_AGENT_TOKEN_FILE=/run/token", "CODER_AGENT_AUTH=token",
		"CODER_AGENT_URL=http://coder", "CODER_WORKSPACE_NAME=ws", "HOME=/home/u", "NOEQUALS",
	}
	got := agent.ScrubEnv(in)
	want := []string{"CODER_AGENT_URL=http://coder", "CODER_WORKSPACE_NAME=ws", "HOME=/home/u", "NOEQUALS"}
	if !slices.Equal(got, want) {
		t.Fatalf("ScrubEnv = %q, want %q", got, want)
	}
	if len(in) != 7 || in[0] != "CODER_AGENT_TOKEN=secret" {
		t.Fatal("ScrubEnv modified its input")
	}
}

// TestUnsetSecretEnv is not parallel: it changes the process environment.
func TestUnsetSecretEnv(t *testing.T) {
	t.Setenv("CODER_AGENT_TOKEN", "secret")
	t.Setenv("CODER_AGENT_TOKEN_FILE", "/run/token")
	t.Setenv("CODER_AGENT_URL", "http://coder")
	if err := agent.UnsetSecretEnv(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"CODER_AGENT_TOKEN", "CODER_AGENT_TOKEN_FILE"} {
		if v, ok := os.LookupEnv(name); ok {
			t.Fatalf("%s still set to %q", name, v)
		}
	}
	if os.Getenv("CODER_AGENT_URL") != "http://coder" {
		t.Fatal("CODER_AGENT_URL was removed")
	}
}
