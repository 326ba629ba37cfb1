package cli_test

import (
	"encoding/json"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestStatCommand covers `coder stat` on this machine (no server needed):
// host measurements in both formats and clear errors for bad flags. The
// container measurements are checked against real cgroup files in
// e2e/docker (TestCoderStatInContainer).
func TestStatCommand(t *testing.T) {
	t.Parallel()
	env, _ := testEnv(t)

	var cpu struct {
		Used, Total float64
		Unit, Scope string
	}
	if err := json.Unmarshal([]byte(mustRun(t, env, "stat", "cpu", "--host", "-o", "json")), &cpu); err != nil {
		t.Fatal(err)
	}
	if cpu.Scope != "host" || cpu.Unit != "cores" || cpu.Total < 1 || cpu.Used < 0 || cpu.Used > cpu.Total {
		t.Fatalf("stat cpu --host: %+v", cpu)
	}
	if out := strings.TrimSpace(mustRun(t, env, "stat", "mem", "--host", "--prefix", "Mi")); !regexp.MustCompile(`^\d+(\.\d+)?/\d+(\.\d+)? MiB \(\d+%\)$`).MatchString(out) {
		t.Fatalf("stat mem --host --prefix Mi: %q", out)
	}
	if out := strings.TrimSpace(mustRun(t, env, "stat", "disk", "--path", t.TempDir())); !regexp.MustCompile(`^\d+(\.\d+)?/\d+(\.\d+)? GiB \(\d+%\)$`).MatchString(out) {
		t.Fatalf("stat disk: %q", out)
	}
	if out := mustRun(t, env, "stat"); !strings.Contains(out, "host_cpu") || !strings.Contains(out, "home_disk") {
		t.Fatalf("stat table: %q", out)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"stat", "mem", "--prefix", "Pi"}, `unknown prefix "Pi"`},
		{[]string{"stat", "cpu", "-o", "yaml"}, `unknown output format "yaml"`},
		{[]string{"stat", "disk", "--path", filepath.Join(t.TempDir(), "missing")}, "statfs"},
		{[]string{"stat", "nope"}, "unknown command"},
	} {
		res := runCLI(t, env, nil, tc.args...)
		if res.code == 0 || !strings.Contains(res.stderr, tc.want) {
			t.Errorf("coder %s: exit %d, stderr %q, want %q", strings.Join(tc.args, " "), res.code, res.stderr, tc.want)
		}
	}
}
