package clistat

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// tree writes files (path relative to root → content) and returns root.
func tree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

const meminfo = "MemTotal:        8000000 kB\nMemFree:         1000000 kB\nMemAvailable:    6000000 kB\nBuffers:          100000 kB\nCached:          2000000 kB\n"

// statter returns a Statter over root/{proc,cgroup}, with a fixed clock that
// advances by one second per sample, and 4 CPUs.
func statter(root string) *Statter {
	now := time.Unix(1_700_000_000, 0)
	s := &Statter{
		ProcDir:        filepath.Join(root, "proc"),
		CgroupDir:      filepath.Join(root, "cgroup"),
		RootDir:        root,
		SampleInterval: time.Millisecond,
		NumCPU:         func() int { return 4 },
	}
	s.now = func() time.Time { return now }
	s.sampled = func() { now = now.Add(time.Second) }
	return s
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestContainerCPU(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		files     map[string]string
		usageFile string // rewritten between the two samples
		second    string
		wantUsed  float64
		wantTotal float64
		source    string
	}{
		{
			name: "v2 with quota",
			files: map[string]string{
				"proc/self/cgroup":          "0::/\n",
				"cgroup/cgroup.controllers": "cpu memory\n",
				"cgroup/cpu.stat":           "usage_usec 1000000\nuser_usec 600000\nsystem_usec 400000\n",
				"cgroup/cpu.max":            "150000 100000\n",
			},
			usageFile: "cgroup/cpu.stat",
			second:    "usage_usec 1750000\nuser_usec 1000000\nsystem_usec 750000\n",
			wantUsed:  0.75, wantTotal: 1.5, source: "cgroup v2",
		},
		{
			name: "v2 without quota uses the CPUs available",
			files: map[string]string{
				"proc/self/cgroup":          "0::/\n",
				"cgroup/cgroup.controllers": "cpu memory\n",
				"cgroup/cpu.stat":           "usage_usec 0\n",
				"cgroup/cpu.max":            "max 100000\n",
			},
			usageFile: "cgroup/cpu.stat",
			second:    "usage_usec 2500000\n",
			wantUsed:  2.5, wantTotal: 4, source: "cgroup v2",
		},
		{
			name: "v2 in the host cgroup namespace: the process's own cgroup below the mount",
			files: map[string]string{
				"proc/self/cgroup":                      "0::/docker/abc\n",
				"cgroup/cgroup.controllers":             "cpu memory\n",
				"cgroup/cpu.stat":                       "usage_usec 999999999\n",
				"cgroup/docker/abc/cpu.stat":            "usage_usec 100\n",
				"cgroup/docker/abc/cpu.max":             "50000 100000\n",
				"cgroup/docker/abc/cgroup.controllers":  "cpu\n",
				"cgroup/docker/abc/memory.current":      "1\n",
				"cgroup/docker/abc/memory.max":          "max\n",
				"cgroup/docker/abc/cgroup.subtree_ctrl": "",
			},
			usageFile: "cgroup/docker/abc/cpu.stat",
			second:    "usage_usec 250100\n",
			wantUsed:  0.25, wantTotal: 0.5, source: "cgroup v2",
		},
		{
			name: "v1 with quota",
			files: map[string]string{
				"proc/self/cgroup":                     "12:cpu,cpuacct:/docker/abc\n9:memory:/docker/abc\n",
				"cgroup/cpu,cpuacct/cpuacct.usage":     "5000000000\n",
				"cgroup/cpu,cpuacct/cpu.cfs_quota_us":  "50000\n",
				"cgroup/cpu,cpuacct/cpu.cfs_period_us": "100000\n",
				"cgroup/memory/memory.usage_in_bytes":  "1\n",
			},
			usageFile: "cgroup/cpu,cpuacct/cpuacct.usage",
			second:    "5400000000\n",
			wantUsed:  0.4, wantTotal: 0.5, source: "cgroup v1",
		},
		{
			name: "v1 without quota, separate cpu and cpuacct mounts, use clamped to the total",
			files: map[string]string{
				"proc/self/cgroup":             "3:cpuacct:/\n2:cpu:/\n",
				"cgroup/cpuacct/cpuacct.usage": "0\n",
				"cgroup/cpu/cpu.cfs_quota_us":  "-1\n",
				"cgroup/cpu/cpu.cfs_period_us": "100000\n",
			},
			usageFile: "cgroup/cpuacct/cpuacct.usage",
			second:    "9000000000\n",
			wantUsed:  4, wantTotal: 4, source: "cgroup v1",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			root := tree(t, tt.files)
			s := statter(root)
			advance := s.sampled
			s.sampled = func() {
				advance()
				write(t, filepath.Join(root, tt.usageFile), tt.second)
			}
			res, err := s.ContainerCPU(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if !near(res.Used, tt.wantUsed) || !near(res.Total, tt.wantTotal) || res.Unit != UnitCores || res.Scope != "container" || res.Source != tt.source {
				t.Fatalf("got %+v, want used %v total %v (%s)", res, tt.wantUsed, tt.wantTotal, tt.source)
			}
		})
	}
}

func TestContainerMemory(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		files     map[string]string
		wantUsed  float64
		wantTotal float64
		source    string
	}{
		{
			name: "v2 with limit, inactive page cache not counted",
			files: map[string]string{
				"proc/self/cgroup":          "0::/\n",
				"proc/meminfo":              meminfo,
				"cgroup/cgroup.controllers": "memory\n",
				"cgroup/memory.current":     "300000000\n",
				"cgroup/memory.max":         "536870912\n",
				"cgroup/memory.stat":        "anon 200000000\nfile 100000000\ninactive_file 40000000\nactive_file 60000000\n",
			},
			wantUsed: 260000000, wantTotal: 536870912, source: "cgroup v2",
		},
		{
			name: "v2 without limit: the host's memory",
			files: map[string]string{
				"proc/self/cgroup":          "0::/\n",
				"proc/meminfo":              meminfo,
				"cgroup/cgroup.controllers": "memory\n",
				"cgroup/memory.current":     "1000\n",
				"cgroup/memory.max":         "max\n",
			},
			wantUsed: 1000, wantTotal: 8000000 * 1024, source: "cgroup v2",
		},
		{
			name: "v1 with limit",
			files: map[string]string{
				"proc/self/cgroup":                    "9:memory:/docker/abc\n",
				"proc/meminfo":                        meminfo,
				"cgroup/memory/memory.usage_in_bytes": "268435456\n",
				"cgroup/memory/memory.limit_in_bytes": "1073741824\n",
				"cgroup/memory/memory.stat":           "cache 100\ninactive_file 5\ntotal_inactive_file 67108864\n",
				"cgroup/cpuacct/cpuacct.usage":        "0\n",
			},
			wantUsed: 201326592, wantTotal: 1073741824, source: "cgroup v1",
		},
		{
			name: "v1 unlimited (PAGE_COUNTER_MAX): the host's memory",
			files: map[string]string{
				"proc/self/cgroup":                    "9:memory:/\n",
				"proc/meminfo":                        meminfo,
				"cgroup/memory/memory.usage_in_bytes": "4096\n",
				"cgroup/memory/memory.limit_in_bytes": "9223372036854771712\n",
			},
			wantUsed: 4096, wantTotal: 8000000 * 1024, source: "cgroup v1",
		},
		{
			name: "v1 limit above the host's memory: the host's memory",
			files: map[string]string{
				"proc/meminfo":                        meminfo,
				"cgroup/memory/memory.usage_in_bytes": "4096\n",
				"cgroup/memory/memory.limit_in_bytes": "99999999999999\n",
			},
			wantUsed: 4096, wantTotal: 8000000 * 1024, source: "cgroup v1",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res, err := statter(tree(t, tt.files)).ContainerMemory()
			if err != nil {
				t.Fatal(err)
			}
			if res.Used != tt.wantUsed || res.Total != tt.wantTotal || res.Unit != UnitBytes || res.Source != tt.source {
				t.Fatalf("got %+v, want used %v total %v (%s)", res, tt.wantUsed, tt.wantTotal, tt.source)
			}
		})
	}
}

func TestCgroupErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		files   map[string]string
		wantErr string
		is      error
	}{
		{name: "no cgroup files", files: map[string]string{"proc/meminfo": meminfo}, is: ErrNoCgroup},
		{
			name: "malformed v2 memory.max",
			files: map[string]string{
				"cgroup/cgroup.controllers": "memory\n",
				"cgroup/memory.current":     "1\n",
				"cgroup/memory.max":         "lots\n",
			},
			wantErr: `memory.max "lots"`,
		},
		{
			name: "v1 without a memory controller",
			files: map[string]string{
				"cgroup/cpuacct/cpuacct.usage": "1\n",
			},
			is: ErrNoCgroup,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := statter(tree(t, tt.files)).ContainerMemory()
			if err == nil {
				t.Fatal("no error")
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Fatalf("error %v, want %v", err, tt.is)
			}
			if tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want it to mention %q", err, tt.wantErr)
			}
		})
	}
}

func TestHostCPUAndMemory(t *testing.T) {
	t.Parallel()
	root := tree(t, map[string]string{
		// user nice system idle iowait irq softirq steal
		"proc/stat":    "cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 50 0 50 350 50 0 0 0 0 0\ncpu1 50 0 50 350 50 0 0 0 0 0\nintr 1\n",
		"proc/meminfo": meminfo,
	})
	s := statter(root)
	advance := s.sampled
	s.sampled = func() {
		advance()
		// +400 jiffies in total, 300 of them busy (user+system), 100 idle.
		write(t, filepath.Join(root, "proc/stat"), "cpu  250 0 250 800 100 0 0 0 0 0\ncpu0 1 0 1 1 1 0 0 0 0 0\ncpu1 1 0 1 1 1 0 0 0 0 0\n")
	}
	cpu, err := s.HostCPU(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !near(cpu.Used, 1.5) || cpu.Total != 2 || cpu.Scope != "host" {
		t.Fatalf("host CPU %+v, want 1.5 of 2 cores", cpu)
	}
	mem, err := s.HostMemory()
	if err != nil {
		t.Fatal(err)
	}
	if mem.Used != 2000000*1024 || mem.Total != 8000000*1024 {
		t.Fatalf("host memory %+v, want 2000000 KiB of 8000000 KiB", mem)
	}
	if got := mem.Text(PrefixMebi); got != "1953/7812 MiB (25%)" {
		t.Fatalf("text %q", got)
	}
	if got := cpu.Text(PrefixNone); got != "1.5/2 cores (75%)" {
		t.Fatalf("text %q", got)
	}

	// A canceled context stops the sample.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s2 := statter(root)
	s2.SampleInterval = time.Hour
	if _, err := s2.HostCPU(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled sample: %v", err)
	}
}

func TestIsContainerized(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		files map[string]string
		want  bool
	}{
		{"docker marker", map[string]string{".dockerenv": ""}, true},
		{"podman marker", map[string]string{"run/.containerenv": ""}, true},
		{"kubernetes cgroup", map[string]string{"proc/1/cgroup": "0::/kubepods/besteffort/pod1/abc\n"}, true},
		{"host", map[string]string{"proc/1/cgroup": "0::/init.scope\n"}, false},
		{"nothing readable", map[string]string{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := statter(tree(t, tt.files)).IsContainerized(); got != tt.want {
				t.Fatalf("IsContainerized = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestDiskAndFormat(t *testing.T) {
	t.Parallel()
	res, err := (&Statter{}).Disk(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if res.Total <= 0 || res.Used < 0 || res.Used > res.Total || res.Unit != UnitBytes {
		t.Fatalf("disk %+v", res)
	}
	if _, err := (&Statter{}).Disk(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("statfs of a missing path succeeded")
	}
	for _, tt := range []struct {
		in   string
		want Prefix
		ok   bool
	}{{"Gi", PrefixGibi, true}, {"mi", PrefixMebi, true}, {"", PrefixNone, true}, {"Pi", "", false}} {
		got, err := ParsePrefix(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParsePrefix(%q) = %q, %v", tt.in, got, err)
		}
	}
	r := Result{Used: 3 << 30, Total: 12 << 30, Unit: UnitBytes}
	if got := r.Text(PrefixGibi); got != "3/12 GiB (25%)" {
		t.Errorf("text %q", got)
	}
	if got := (Result{Used: 0.123, Total: 0.5, Unit: UnitCores}).Text(PrefixGibi); got != "0.12/0.5 cores (25%)" {
		t.Errorf("text %q", got)
	}
}
