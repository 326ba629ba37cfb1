// Package clistat measures CPU, memory and disk use for `coder stat`: of the
// host from /proc, and of the container the process runs in from its cgroup
// (v1 or v2). Templates call it from agent metadata scripts inside workspaces.
package clistat

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Units of a Result.
const (
	UnitCores = "cores"
	UnitBytes = "B"
)

// DefaultSampleInterval is how long CPU use is sampled for: it is the
// difference of two readings of the CPU time counters this far apart.
const DefaultSampleInterval = 100 * time.Millisecond

// Result is one measurement: Used out of Total, in Unit (cores or bytes).
type Result struct {
	// Used is the amount in use.
	Used float64 `json:"used"`
	// Total is the amount available (a limit, or what the host has).
	Total float64 `json:"total"`
	// Unit is UnitCores or UnitBytes.
	Unit string `json:"unit"`
	// Scope says what was measured: "host", "container" or "disk".
	Scope string `json:"scope"`
	// Source names where the numbers came from (e.g. "cgroup v2", "/proc/stat",
	// "statfs /home/coder").
	Source string `json:"source"`
}

// Percent returns Used as a percentage of Total (0 when Total is 0).
func (r Result) Percent() float64 {
	if r.Total <= 0 {
		return 0
	}
	return r.Used / r.Total * 100
}

// Statter reads the counters. The zero value reads the real /proc and
// /sys/fs/cgroup of the running process.
type Statter struct {
	// ProcDir is the procfs mount. Default "/proc".
	ProcDir string
	// CgroupDir is the cgroup filesystem mount. Default "/sys/fs/cgroup".
	CgroupDir string
	// RootDir is where the container marker files (/.dockerenv,
	// /run/.containerenv) are looked for. Default "/".
	RootDir string
	// SampleInterval is the CPU sampling period. Default DefaultSampleInterval.
	SampleInterval time.Duration
	// NumCPU is the number of CPUs this process may use, the CPU total of a
	// container without a CPU quota. Default runtime.NumCPU.
	NumCPU func() int

	// Test hooks: now replaces time.Now; sampled runs between the two readings
	// of a CPU measurement.
	now     func() time.Time
	sampled func()
}

func (s *Statter) clock() time.Time {
	if s.now != nil {
		return s.now()
	}
	return time.Now()
}

func (s *Statter) proc() string {
	if s.ProcDir == "" {
		return "/proc"
	}
	return s.ProcDir
}

func (s *Statter) cgroupRoot() string {
	if s.CgroupDir == "" {
		return "/sys/fs/cgroup"
	}
	return s.CgroupDir
}

func (s *Statter) root() string {
	if s.RootDir == "" {
		return "/"
	}
	return s.RootDir
}

func (s *Statter) interval() time.Duration {
	if s.SampleInterval <= 0 {
		return DefaultSampleInterval
	}
	return s.SampleInterval
}

func (s *Statter) numCPU() int {
	if s.NumCPU != nil {
		return s.NumCPU()
	}
	return runtime.NumCPU()
}

// wait sleeps for the sample interval or until ctx ends.
func (s *Statter) wait(ctx context.Context) error {
	if s.sampled != nil {
		s.sampled()
	}
	t := time.NewTimer(s.interval())
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// IsContainerized reports whether the process runs in a container: a
// container runtime's marker file exists, or PID 1's cgroup path names a
// container runtime.
func (s *Statter) IsContainerized() bool {
	for _, marker := range []string{".dockerenv", "run/.containerenv"} {
		if _, err := os.Stat(filepath.Join(s.root(), marker)); err == nil {
			return true
		}
	}
	data, err := os.ReadFile(filepath.Join(s.proc(), "1", "cgroup"))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(data), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		for _, word := range []string{"docker", "kubepods", "containerd", "lxc", "libpod"} {
			if strings.Contains(parts[2], word) {
				return true
			}
		}
	}
	return false
}

// HostCPU returns the host's CPU use in cores over one sample interval, from
// /proc/stat (busy time is everything but idle and iowait).
func (s *Statter) HostCPU(ctx context.Context) (Result, error) {
	busy1, total1, n, err := s.procStat()
	if err != nil {
		return Result{}, err
	}
	if err := s.wait(ctx); err != nil {
		return Result{}, err
	}
	busy2, total2, _, err := s.procStat()
	if err != nil {
		return Result{}, err
	}
	used := 0.0
	if dt := total2 - total1; dt > 0 {
		used = float64(busy2-busy1) / float64(dt) * float64(n)
	}
	return Result{Used: clamp(used, float64(n)), Total: float64(n), Unit: UnitCores, Scope: "host", Source: "/proc/stat"}, nil
}

// procStat returns the busy and total jiffies of the aggregate "cpu" line and
// the number of per-CPU lines.
func (s *Statter) procStat() (busy, total uint64, ncpu int, err error) {
	path := filepath.Join(s.proc(), "stat")
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("read host CPU times: %w", err)
	}
	defer f.Close()
	found := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || !strings.HasPrefix(fields[0], "cpu") {
			continue
		}
		if fields[0] != "cpu" {
			ncpu++
			continue
		}
		// cpu user nice system idle iowait irq softirq steal guest guest_nice;
		// guest time is already counted in user and nice.
		if len(fields) < 5 {
			return 0, 0, 0, fmt.Errorf("%s: short cpu line %q", path, sc.Text())
		}
		var vals []uint64
		for i, f := range fields[1:] {
			if i >= 8 {
				break
			}
			v, err := strconv.ParseUint(f, 10, 64)
			if err != nil {
				return 0, 0, 0, fmt.Errorf("%s: cpu field %d: %w", path, i+1, err)
			}
			vals = append(vals, v)
		}
		for _, v := range vals {
			total += v
		}
		idle := vals[3]
		if len(vals) > 4 {
			idle += vals[4]
		}
		busy = total - idle
		found = true
	}
	if err := sc.Err(); err != nil {
		return 0, 0, 0, fmt.Errorf("read %s: %w", path, err)
	}
	if !found {
		return 0, 0, 0, fmt.Errorf("%s: no aggregate cpu line", path)
	}
	if ncpu == 0 {
		ncpu = 1
	}
	return busy, total, ncpu, nil
}

// HostMemory returns the host's memory use from /proc/meminfo: MemTotal minus
// MemAvailable, out of MemTotal.
func (s *Statter) HostMemory() (Result, error) {
	path := filepath.Join(s.proc(), "meminfo")
	data, err := os.ReadFile(path)
	if err != nil {
		return Result{}, fmt.Errorf("read host memory: %w", err)
	}
	vals := map[string]uint64{}
	for _, line := range strings.Split(string(data), "\n") {
		key, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseUint(fields[0], 10, 64)
		if err != nil {
			continue
		}
		if len(fields) > 1 && fields[1] == "kB" {
			v *= 1024
		}
		vals[key] = v
	}
	total, ok := vals["MemTotal"]
	if !ok || total == 0 {
		return Result{}, fmt.Errorf("%s: no MemTotal", path)
	}
	avail, ok := vals["MemAvailable"]
	if !ok {
		// Kernels before 3.14: approximate with free + buffers + page cache.
		avail = vals["MemFree"] + vals["Buffers"] + vals["Cached"]
	}
	if avail > total {
		avail = total
	}
	return Result{Used: float64(total - avail), Total: float64(total), Unit: UnitBytes, Scope: "host", Source: "/proc/meminfo"}, nil
}

// Disk returns the use of the filesystem holding path (used = size minus
// free blocks, as df counts it).
func (s *Statter) Disk(path string) (Result, error) {
	if path == "" {
		path = "/"
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return Result{}, fmt.Errorf("statfs %s: %w", path, err)
	}
	bs := uint64(st.Bsize)
	total := st.Blocks * bs
	free := st.Bfree * bs
	return Result{Used: float64(total - free), Total: float64(total), Unit: UnitBytes, Scope: "disk", Source: "statfs " + path}, nil
}

// cgroup describes where the process's cgroup files are.
type cgroup struct {
	version int
	// v2: the unified directory; v1: the cpuacct, cpu and memory directories.
	unified, cpuacct, cpu, memory string
}

// ErrNoCgroup is returned when no cgroup CPU or memory files are found.
var ErrNoCgroup = errors.New("no cgroup v1 or v2 CPU/memory accounting files found")

// findCgroup locates the process's cgroup: v2 when the mount has
// cgroup.controllers, v1 otherwise. The process's own cgroup path (from
// /proc/self/cgroup) is used below the mount when it exists there (host
// cgroup namespace); otherwise the mount root is the process's cgroup, as in
// a container with its own cgroup view.
func (s *Statter) findCgroup() (cgroup, error) {
	root := s.cgroupRoot()
	paths := map[string]string{}
	if data, err := os.ReadFile(filepath.Join(s.proc(), "self", "cgroup")); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			parts := strings.SplitN(line, ":", 3)
			if len(parts) != 3 {
				continue
			}
			if parts[1] == "" {
				paths[""] = parts[2]
				continue
			}
			for _, c := range strings.Split(parts[1], ",") {
				paths[c] = parts[2]
			}
		}
	}
	below := func(base, sub string) string {
		if sub != "" && sub != "/" {
			if p := filepath.Join(base, sub); isDir(p) {
				return p
			}
		}
		return base
	}
	if _, err := os.Stat(filepath.Join(root, "cgroup.controllers")); err == nil {
		return cgroup{version: 2, unified: below(root, paths[""])}, nil
	}
	cg := cgroup{version: 1}
	for _, name := range []string{"cpuacct", "cpu,cpuacct", "cpuacct,cpu"} {
		if p := filepath.Join(root, name); isFile(filepath.Join(p, "cpuacct.usage")) {
			cg.cpuacct = below(p, paths["cpuacct"])
			break
		}
	}
	for _, name := range []string{"cpu", "cpu,cpuacct", "cpuacct,cpu"} {
		if p := filepath.Join(root, name); isFile(filepath.Join(p, "cpu.cfs_quota_us")) {
			cg.cpu = below(p, paths["cpu"])
			break
		}
	}
	if p := filepath.Join(root, "memory"); isFile(filepath.Join(p, "memory.usage_in_bytes")) {
		cg.memory = below(p, paths["memory"])
	}
	if cg.cpuacct == "" && cg.memory == "" {
		return cgroup{}, ErrNoCgroup
	}
	return cg, nil
}

// ContainerCPU returns the CPU use of the process's cgroup in cores over one
// sample interval, out of its quota (cpu.max or cpu.cfs_quota_us /
// cpu.cfs_period_us), or out of the CPUs available when there is no quota.
func (s *Statter) ContainerCPU(ctx context.Context) (Result, error) {
	cg, err := s.findCgroup()
	if err != nil {
		return Result{}, err
	}
	total, err := s.cpuLimit(cg)
	if err != nil {
		return Result{}, err
	}
	u1, err := cpuUsage(cg)
	if err != nil {
		return Result{}, err
	}
	t1 := s.clock()
	if err := s.wait(ctx); err != nil {
		return Result{}, err
	}
	u2, err := cpuUsage(cg)
	if err != nil {
		return Result{}, err
	}
	elapsed := s.clock().Sub(t1)
	used := 0.0
	if elapsed > 0 && u2 > u1 {
		used = float64(u2-u1) / float64(elapsed)
	}
	return Result{Used: clamp(used, total), Total: total, Unit: UnitCores, Scope: "container", Source: fmt.Sprintf("cgroup v%d", cg.version)}, nil
}

// cpuUsage returns the cgroup's cumulative CPU time.
func cpuUsage(cg cgroup) (time.Duration, error) {
	if cg.version == 2 {
		vals, err := readKeyed(filepath.Join(cg.unified, "cpu.stat"))
		if err != nil {
			return 0, err
		}
		usec, ok := vals["usage_usec"]
		if !ok {
			return 0, fmt.Errorf("%s: no usage_usec", filepath.Join(cg.unified, "cpu.stat"))
		}
		return time.Duration(usec) * time.Microsecond, nil
	}
	if cg.cpuacct == "" {
		return 0, fmt.Errorf("cgroup v1: no cpuacct controller: %w", ErrNoCgroup)
	}
	ns, err := readUint(filepath.Join(cg.cpuacct, "cpuacct.usage"))
	if err != nil {
		return 0, err
	}
	return time.Duration(ns), nil
}

// cpuLimit returns the cgroup's CPU quota in cores, or the available CPUs.
func (s *Statter) cpuLimit(cg cgroup) (float64, error) {
	ncpu := float64(s.numCPU())
	if cg.version == 2 {
		path := filepath.Join(cg.unified, "cpu.max")
		data, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) {
			return ncpu, nil // the cpu controller is not enabled here: no quota
		}
		if err != nil {
			return 0, fmt.Errorf("read CPU limit: %w", err)
		}
		fields := strings.Fields(string(data))
		if len(fields) == 0 || fields[0] == "max" {
			return ncpu, nil
		}
		quota, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return 0, fmt.Errorf("%s: quota %q: %w", path, fields[0], err)
		}
		period := 100000.0
		if len(fields) > 1 {
			if period, err = strconv.ParseFloat(fields[1], 64); err != nil || period <= 0 {
				return 0, fmt.Errorf("%s: bad period %q", path, fields[1])
			}
		}
		return quota / period, nil
	}
	if cg.cpu == "" {
		return ncpu, nil
	}
	quotaData, err := os.ReadFile(filepath.Join(cg.cpu, "cpu.cfs_quota_us"))
	if err != nil {
		return 0, fmt.Errorf("read CPU quota: %w", err)
	}
	quota, err := strconv.ParseInt(strings.TrimSpace(string(quotaData)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("cpu.cfs_quota_us: %w", err)
	}
	if quota <= 0 {
		return ncpu, nil // -1: no quota
	}
	period, err := readUint(filepath.Join(cg.cpu, "cpu.cfs_period_us"))
	if err != nil {
		return 0, err
	}
	if period == 0 {
		return 0, fmt.Errorf("cpu.cfs_period_us is 0")
	}
	return float64(quota) / float64(period), nil
}

// ContainerMemory returns the memory use of the process's cgroup: its usage
// minus inactive page cache (which the kernel reclaims first), out of its
// limit, or out of the host's memory when there is no limit.
func (s *Statter) ContainerMemory() (Result, error) {
	cg, err := s.findCgroup()
	if err != nil {
		return Result{}, err
	}
	var usage, limit, inactive uint64
	unlimited := false
	if cg.version == 2 {
		if usage, err = readUint(filepath.Join(cg.unified, "memory.current")); err != nil {
			return Result{}, err
		}
		data, err := os.ReadFile(filepath.Join(cg.unified, "memory.max"))
		if err != nil {
			return Result{}, fmt.Errorf("read memory limit: %w", err)
		}
		if v := strings.TrimSpace(string(data)); v == "max" {
			unlimited = true
		} else if limit, err = strconv.ParseUint(v, 10, 64); err != nil {
			return Result{}, fmt.Errorf("memory.max %q: %w", v, err)
		}
		if stat, err := readKeyed(filepath.Join(cg.unified, "memory.stat")); err == nil {
			inactive = stat["inactive_file"]
		}
	} else {
		if cg.memory == "" {
			return Result{}, fmt.Errorf("cgroup v1: no memory controller: %w", ErrNoCgroup)
		}
		if usage, err = readUint(filepath.Join(cg.memory, "memory.usage_in_bytes")); err != nil {
			return Result{}, err
		}
		if limit, err = readUint(filepath.Join(cg.memory, "memory.limit_in_bytes")); err != nil {
			return Result{}, err
		}
		// v1 reports "no limit" as a huge page-aligned number (PAGE_COUNTER_MAX pages).
		if limit >= math.MaxInt64/2 {
			unlimited = true
		}
		if stat, err := readKeyed(filepath.Join(cg.memory, "memory.stat")); err == nil {
			inactive = stat["total_inactive_file"]
		}
	}
	host, hostErr := s.HostMemory()
	if unlimited || (hostErr == nil && float64(limit) > host.Total) {
		if hostErr != nil {
			return Result{}, fmt.Errorf("container has no memory limit and the host's is unknown: %w", hostErr)
		}
		limit = uint64(host.Total)
	}
	used := usage
	if inactive < used {
		used -= inactive
	}
	return Result{Used: float64(used), Total: float64(limit), Unit: UnitBytes, Scope: "container", Source: fmt.Sprintf("cgroup v%d", cg.version)}, nil
}

// readUint reads a file holding one unsigned integer.
func readUint(path string) (uint64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read cgroup file: %w", err)
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return v, nil
}

// readKeyed reads a "key value" per line file (cpu.stat, memory.stat).
func readKeyed(path string) (map[string]uint64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read cgroup file: %w", err)
	}
	out := map[string]uint64{}
	for _, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(line)
		if len(fields) != 2 {
			continue
		}
		if v, err := strconv.ParseUint(fields[1], 10, 64); err == nil {
			out[fields[0]] = v
		}
	}
	return out, nil
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

func clamp(v, max float64) float64 {
	if v < 0 {
		return 0
	}
	if max > 0 && v > max {
		return max
	}
	return v
}
