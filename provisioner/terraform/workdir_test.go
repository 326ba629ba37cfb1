package terraform

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestCleanStale: the work directory of a job whose daemon was killed
// (nobody holds its lock) is removed and the job's leftover process (in
// terraform's process group, marked with the job dir) is killed; a process
// the template detached into its own session survives, and a live job's
// directory is kept.
func TestCleanStale(t *testing.T) {
	t.Parallel()
	work := t.TempDir()
	r := &Runner{WorkDir: work}

	// A live job.
	live, lock, err := newJobDir(work)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.release()

	// A killed daemon's job: its directory stays, its lock is not held.
	stale, staleLock, err := newJobDir(work)
	if err != nil {
		t.Fatal(err)
	}
	_ = staleLock.f.Close() // the daemon died: the lock is gone, the file stays
	start := func(attr *syscall.SysProcAttr) *exec.Cmd {
		cmd := exec.Command("sleep", "300")
		cmd.Env = append(os.Environ(), JobDirEnv+"="+stale)
		cmd.SysProcAttr = attr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd
	}
	orphan := start(&syscall.SysProcAttr{Setpgid: true})
	detached := start(&syscall.SysProcAttr{Setsid: true})

	all, err := r.CleanStale()
	if err != nil {
		t.Fatal(err)
	}
	var removed []string // without dead plugin sockets other tests left in $TMPDIR
	for _, p := range all {
		if strings.HasPrefix(p, work) {
			removed = append(removed, p)
		}
	}
	if len(removed) != 1 || removed[0] != stale {
		t.Fatalf("removed %v, want [%s]", removed, stale)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stale dir: %v", err)
	}
	if _, err := os.Stat(stale + lockSuffix); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stale lock: %v", err)
	}
	if _, err := os.Stat(live); err != nil {
		t.Fatalf("live job dir removed: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- orphan.Wait() }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "killed") {
			t.Fatalf("orphan exit: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the stale job's process is still running")
	}
	if err := detached.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("the detached process was killed: %v", err)
	}
	entries, _ := os.ReadDir(work)
	if len(entries) != 2 { // live dir + its lock
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Fatalf("work dir holds %v", names)
	}
}
