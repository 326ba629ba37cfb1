package docker_test

import (
	"context"
	"math"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

// statResult is `coder stat ... -o json`.
type statResult struct {
	Used   float64 `json:"used"`
	Total  float64 `json:"total"`
	Unit   string  `json:"unit"`
	Scope  string  `json:"scope"`
	Source string  `json:"source"`
}

// TestCoderStatInContainer runs `coder stat` inside a real container with a
// memory limit and a CPU quota, next to readings of the container's own
// cgroup files (v1 or v2, whichever the machine has), and checks that the
// command reports the container's limits and use, and the host's with --host.
func TestCoderStatInContainer(t *testing.T) {
	requireDocker(t)
	bin := coderBinary(t)
	const memLimit = 256 << 20
	name := "coder-stat-test-" + uuid.NewString()[:8]
	// Each section is "== name" then its output; the cgroup files are read
	// before and after each coder stat call.
	script := `
set -e
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
	v=2
	mem() { echo "$(cat /sys/fs/cgroup/memory.current) $(awk '$1=="inactive_file"{print $2}' /sys/fs/cgroup/memory.stat)"; }
	limit() { cat /sys/fs/cgroup/memory.max; }
	quota() { cat /sys/fs/cgroup/cpu.max; }
else
	v=1
	mem() { echo "$(cat /sys/fs/cgroup/memory/memory.usage_in_bytes) $(awk '$1=="total_inactive_file"{print $2}' /sys/fs/cgroup/memory/memory.stat)"; }
	limit() { cat /sys/fs/cgroup/memory/memory.limit_in_bytes; }
	quota() { echo "$(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us) $(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us)"; }
fi
echo "== version"; echo "$v"
echo "== limit"; limit
echo "== quota"; quota
echo "== mem-before"; mem
echo "== mem"; coder stat mem -o json | tr -d '\n'; echo
echo "== mem-after"; mem
echo "== cpu-idle"; coder stat cpu -o json | tr -d '\n'; echo
( while :; do :; done ) &
busy=$!
echo "== cpu-busy"; coder stat cpu -o json | tr -d '\n'; echo
kill $busy
echo "== host-mem"; coder stat mem --host -o json | tr -d '\n'; echo
echo "== meminfo"; awk '$1=="MemTotal:"{printf "%.0f\n", $2*1024}' /proc/meminfo
echo "== host-cpu"; coder stat cpu --host -o json | tr -d '\n'; echo
echo "== nproc"; grep -c '^cpu[0-9]' /proc/stat
echo "== disk"; coder stat disk --path /home/coder -o json | tr -d '\n'; echo
echo "== df"; df -B1 --output=size,used /home/coder | tail -n1
echo "== text"; coder stat mem --prefix Mi
echo "== table"; coder stat
`
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	t.Cleanup(func() { _, _ = docker(context.Background(), "rm", "-f", name) })
	cmd := exec.CommandContext(ctx, "docker", "run", "--rm", "--name", name,
		"--memory", strconv.Itoa(memLimit), "--memory-swap", strconv.Itoa(memLimit), "--cpus", "0.5",
		"-v", bin+":/usr/local/bin/coder:ro", baseImage, "sh", "-c", script)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("coder stat in a container: %v\n%s", err, out)
	}
	sections := map[string]string{}
	var cur string
	for _, line := range strings.Split(string(out), "\n") {
		if n, ok := strings.CutPrefix(line, "== "); ok {
			cur = n
			continue
		}
		if cur != "" {
			sections[cur] += line + "\n"
		}
	}
	get := func(k string) string { return strings.TrimSpace(sections[k]) }
	stat := func(k string) statResult {
		var r statResult
		decodeJSON(t, get(k), &r)
		return r
	}
	nums := func(k string) []float64 {
		var out []float64
		for _, f := range strings.Fields(get(k)) {
			v, err := strconv.ParseFloat(f, 64)
			if err != nil {
				t.Fatalf("section %s: %q: %v", k, get(k), err)
			}
			out = append(out, v)
		}
		return out
	}
	version := get("version")
	t.Logf("cgroup v%s; limit %s; quota %s", version, get("limit"), get("quota"))
	if l := nums("limit"); len(l) != 1 || l[0] != memLimit {
		t.Fatalf("the container's memory limit file says %q, want %d", get("limit"), memLimit)
	}

	// Memory: the container's limit exactly; its use within what the cgroup
	// files said just before and after (coder stat itself is in the cgroup).
	mem := stat("mem")
	wantSource := "cgroup v" + version
	if mem.Scope != "container" || mem.Source != wantSource || mem.Unit != "B" || mem.Total != memLimit {
		t.Fatalf("coder stat mem: %+v, want the container's %d bytes from %s", mem, memLimit, wantSource)
	}
	before, after := nums("mem-before"), nums("mem-after")
	lo := math.Min(before[0]-before[1], after[0]-after[1])
	hi := math.Max(before[0], after[0])
	if mem.Used < lo-(16<<20) || mem.Used > hi+(64<<20) {
		t.Fatalf("coder stat mem used %.0f, cgroup said %v before and %v after", mem.Used, before, after)
	}

	// CPU: the quota (0.5 cores) as the total; idle near zero, a busy loop
	// clearly above it (and never above the quota).
	idle, busy := stat("cpu-idle"), stat("cpu-busy")
	for _, c := range []statResult{idle, busy} {
		if c.Scope != "container" || c.Source != wantSource || c.Total != 0.5 || c.Used < 0 || c.Used > 0.5 {
			t.Fatalf("coder stat cpu: %+v, want 0..0.5 of 0.5 cores from %s", c, wantSource)
		}
	}
	if busy.Used <= idle.Used || busy.Used < 0.05 {
		t.Fatalf("a busy loop shows %.3f cores, idle %.3f", busy.Used, idle.Used)
	}

	// --host: the machine's memory and CPUs, as /proc shows them.
	hostMem := stat("host-mem")
	if hostMem.Scope != "host" || hostMem.Total != nums("meminfo")[0] {
		t.Fatalf("coder stat mem --host: %+v, /proc/meminfo total %s", hostMem, get("meminfo"))
	}
	hostCPU := stat("host-cpu")
	if hostCPU.Scope != "host" || hostCPU.Total != nums("nproc")[0] {
		t.Fatalf("coder stat cpu --host: %+v, /proc/stat has %s CPUs", hostCPU, get("nproc"))
	}

	// Disk: the filesystem's size exactly, its use as df counts it (the
	// machine's disk is shared with other work, so within 256 MiB).
	disk, df := stat("disk"), nums("df")
	if disk.Total != df[0] || math.Abs(disk.Used-df[1]) > 256<<20 {
		t.Fatalf("coder stat disk %+v, df says size %.0f used %.0f", disk, df[0], df[1])
	}

	if text := get("text"); !regexp.MustCompile(`^\d+(\.\d+)?/256 MiB \(\d+%\)$`).MatchString(text) {
		t.Fatalf("coder stat mem --prefix Mi: %q", text)
	}
	table := get("table")
	for _, row := range []string{"host_cpu", "host_memory", "home_disk", "container_cpu", "container_memory"} {
		if !strings.Contains(table, row) {
			t.Fatalf("coder stat table lacks %s:\n%s", row, table)
		}
	}
}
