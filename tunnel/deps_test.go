package tunnel_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoInternetDependencies checks the build graph: nothing that uploads
// logs, maps ports, probes captive portals or talks to Tailscale's control
// plane may be wired into the tunnel package.
func TestNoInternetDependencies(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go tool not found: %v", err)
	}
	list := func(format string) []string {
		out, err := exec.Command(goBin, "list", "-f", format, ".").Output()
		if err != nil {
			t.Fatalf("go list: %v", err)
		}
		return strings.Fields(string(out))
	}
	// Transitively forbidden: these register hooks or open connections
	// simply by being linked in.
	deps := list(`{{join .Deps " "}}`)
	forbiddenDeps := []string{
		"tailscale.com/tsnet",
		"tailscale.com/feature/portmapper",
		"tailscale.com/net/portmapper",
		"tailscale.com/feature/captiveportal",
		"tailscale.com/net/captivedetection",
		"tailscale.com/feature/condregister",
		"tailscale.com/feature/relayserver",
		"tailscale.com/feature/taildrop",
		"tailscale.com/ipn/ipnserver",
	}
	for _, d := range deps {
		for _, f := range forbiddenDeps {
			if d == f {
				t.Errorf("tunnel depends on %s", d)
			}
		}
	}
	// Directly forbidden: upstream wgengine/netstack links ipnlocal (and
	// through it logpolicy/controlclient) for its LocalBackend type switch,
	// but we must never construct any of them ourselves.
	imports := list(`{{join .Imports " "}}`)
	forbiddenImports := []string{"tailscale.com/ipn/ipnlocal", "tailscale.com/logpolicy", "tailscale.com/logtail", "tailscale.com/control/controlclient", "tailscale.com/tsnet"}
	for _, imp := range imports {
		for _, f := range forbiddenImports {
			if imp == f {
				t.Errorf("tunnel imports %s", imp)
			}
		}
	}
}
