package deptest_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/wgmesh/coder/internal/deptest"
)

// mod is this module's path.
const mod = "github.com/wgmesh/coder"

// ptySSHServerSFTP are the packages that make a process a terminal or SSH
// server.
var ptySSHServerSFTP = []string{"github.com/creack/pty/...", "github.com/gliderlabs/ssh/...", "github.com/pkg/sftp/..."}

// rules are the module's dependency rules (docs/architecture.md,
// "Dependency rules").
var rules = []deptest.Rule{
	{
		Name:     "codersdk",
		Packages: []string{mod + "/codersdk/..."},
		Forbid: append([]string{
			mod + "/agent/...", mod + "/coderd/...", mod + "/database/...",
		}, ptySSHServerSFTP...),
		Why: "codersdk is the contract between processes; clients that import it must not link the agent's PTY, SSH server or SFTP code, nor server code",
	},
	{
		Name:     "agentproto",
		Packages: []string{mod + "/codersdk/agentproto"},
		Forbid:   []string{"..."},
		Allow:    []string{"std", "github.com/google/uuid"},
		Why:      "the agent's wire contract is a leaf: the standard library and uuid only",
	},
	{
		Name:     "cron",
		Packages: []string{mod + "/internal/cron"},
		Forbid:   []string{"..."},
		Allow:    []string{"std", "github.com/robfig/cron/v3"},
		Why:      "the cron wrapper is shared by the agent (coder_script) and coderd (autostart): a leaf, the standard library and robfig/cron only",
	},
	{
		Name:     "coderd",
		Packages: []string{mod + "/coderd/..."},
		Forbid:   append([]string{mod + "/agent/..."}, ptySSHServerSFTP...),
		Why:      "coderd reaches agents over the mesh through codersdk/agentproto; the terminal and apps proxy are clients, not PTY or SSH servers",
	},
	{
		Name:     "agent",
		Packages: []string{mod + "/agent/..."},
		Forbid:   []string{mod + "/database/...", mod + "/coderd/..."},
		Why:      "the agent runs in the workspace and talks to coderd over the API only",
	},
	{
		Name:     "provisioner",
		Packages: []string{mod + "/provisioner/..."},
		Forbid:   []string{mod + "/database/...", mod + "/coderd/..."},
		Why:      "provisioner daemons hold cloud credentials but no database access; they talk to coderd over the API only",
	},
	{
		Name:     "workspaceapps",
		Packages: []string{mod + "/coderd/workspaceapps/..."},
		Forbid:   []string{mod + "/database/...", "github.com/jackc/pgx/v5"},
		Why:      "the workspace apps proxy must run without the database (a regional proxy has none); it depends on small interfaces coderd implements",
	},
	{
		Name:     "coordinator",
		Packages: []string{mod + "/coordinator"},
		Forbid:   []string{mod + "/database/...", "github.com/jackc/pgx/v5/..."},
		Why:      "the coordination protocol and the in-memory coordinator stand alone; only the HA variant (coordinator/pgcoord) uses the database",
	},
	{
		Name:     "cli",
		Packages: []string{mod + "/..."},
		Except:   []string{mod + "/cmd/coder"},
		Forbid:   []string{mod + "/cli"},
		Why:      "cli is the command tree; only main (cmd/coder) wires it",
	},
	{
		Name:     "tunnel",
		Packages: []string{mod + "/tunnel/..."},
		Forbid:   []string{mod + "/..."},
		Allow:    []string{mod + "/tunnel/..."},
		Why:      "tunnel wraps upstream tailscale.com and must not depend on the rest of the module",
	},
	{
		Name:     "no-internet-services",
		Packages: []string{mod + "/..."},
		Forbid: []string{
			"tailscale.com/tsnet",
			"tailscale.com/feature/portmapper",
			"tailscale.com/net/portmapper",
			"tailscale.com/feature/captiveportal",
			"tailscale.com/net/captivedetection",
			"tailscale.com/feature/condregister",
			"tailscale.com/feature/relayserver",
			"tailscale.com/feature/taildrop",
			"tailscale.com/ipn/ipnserver",
		},
		Why: "these upload logs, map ports, probe captive portals or talk to Tailscale's control plane simply by being linked in; nothing may contact the public internet",
	},
	{
		Name:     "no-tailscale-backend",
		Packages: []string{mod + "/..."},
		Forbid: []string{
			"tailscale.com/ipn/ipnlocal",
			"tailscale.com/logpolicy",
			"tailscale.com/logtail",
			"tailscale.com/control/controlclient",
			"tailscale.com/tsnet",
		},
		Direct: true,
		Why:    "upstream wgengine/netstack links these for its LocalBackend type switch, but we never construct them: the coordinator replaces the control plane, and no logs are uploaded",
	},
}

// TestDependencyRules checks every rule against the module's import graph
// (one `go list -deps`, in the environment of the test, so build tags from
// GOFLAGS apply).
func TestDependencyRules(t *testing.T) {
	t.Parallel()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go tool not found: %v", err)
	}
	g, err := deptest.Load(goBin, ".")
	if err != nil {
		t.Fatal(err)
	}
	if g.Module != mod {
		t.Fatalf("module %s, rules are written for %s", g.Module, mod)
	}
	unknown, err := g.Unknown(goBin, ".", rules)
	if err != nil {
		t.Fatal(err)
	}
	for _, pat := range unknown {
		t.Errorf("rule pattern %q names no package (renamed?); update the rule", pat)
	}
	for _, r := range rules {
		t.Run(r.Name, func(t *testing.T) {
			t.Parallel()
			vs, err := g.Check(r)
			if err != nil {
				t.Fatal(err)
			}
			if r.Pending != "" {
				if len(vs) == 0 {
					t.Fatalf("rule %q holds now; delete its Pending (%s) to enforce it", r.Name, r.Pending)
				}
				var b strings.Builder
				for _, v := range vs {
					b.WriteString("\n" + v.String())
				}
				t.Logf("pending (%s), not enforced yet: %d violations:%s", r.Pending, len(vs), b.String())
				return
			}
			for _, v := range vs {
				t.Errorf("%s\nrule %q: %s", v, r.Name, r.Why)
			}
		})
	}
}
