package terraform

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Names of a job's working directory and its lock file under Runner.WorkDir:
// <WorkDir>/coder-tf-<random> and <WorkDir>/coder-tf-<random>.lock.
const (
	jobDirPrefix = "coder-tf-"
	lockSuffix   = ".lock"
)

// JobDirEnv is set, in the environment of terraform and of everything it
// starts, to the job's working directory. It marks the processes of a job
// so that those left behind by a canceled, failed or killed job can be
// found and killed (see Runner.CleanStale).
const JobDirEnv = "CODER_PROVISIONER_JOB_DIR"

// jobLock is the lock a running job holds on <dir>.lock. A working
// directory whose lock nobody holds belongs to a job that is over (its
// daemon was killed): CleanStale removes it.
type jobLock struct {
	f    *os.File
	path string
}

// newJobDir creates a locked, private job directory under workDir.
func newJobDir(workDir string) (string, *jobLock, error) {
	if err := os.MkdirAll(workDir, 0o700); err != nil {
		return "", nil, fmt.Errorf("create work dir: %w", err)
	}
	// The lock comes first: a directory exists only once its lock is held,
	// so CleanStale (which looks at directories) never sees a new job's
	// directory unlocked.
	f, err := os.CreateTemp(workDir, jobDirPrefix+"*"+lockSuffix)
	if err != nil {
		return "", nil, fmt.Errorf("create job lock: %w", err)
	}
	l := &jobLock{f: f, path: f.Name()}
	if ok, err := lockFile(f); err != nil || !ok {
		l.release()
		if err == nil {
			err = errors.New("lock already held")
		}
		return "", nil, fmt.Errorf("lock job dir: %w", err)
	}
	dir := strings.TrimSuffix(l.path, lockSuffix)
	if err := os.Mkdir(dir, 0o700); err != nil {
		l.release()
		return "", nil, fmt.Errorf("create job dir: %w", err)
	}
	return dir, l, nil
}

// release unlocks and removes the lock file.
func (l *jobLock) release() {
	_ = os.Remove(l.path)
	_ = l.f.Close()
}

// CleanStale removes the job directories under WorkDir that no running job
// holds (left by a daemon that was killed: they hold the template, plans
// and state with agent tokens) and kills the processes those jobs left
// running (terraform, providers and local-exec children in the job's
// process group; processes a template detached on purpose, in their own
// session, are left alone), then removes the go-plugin sockets in the
// temporary directory that nobody listens on any more (see
// cleanDeadPluginSockets). It returns what it removed. A daemon calls it
// when it starts.
func (r *Runner) CleanStale() ([]string, error) {
	workDir := r.workDir()
	entries, err := os.ReadDir(workDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read work dir: %w", err)
	}
	var removed []string
	var errs []error
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), jobDirPrefix) {
			continue
		}
		dir := filepath.Join(workDir, e.Name())
		f, err := os.OpenFile(dir+lockSuffix, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			errs = append(errs, fmt.Errorf("open lock of %s: %w", dir, err))
			continue
		}
		ok, err := lockFile(f)
		if err != nil || !ok {
			_ = f.Close()
			if err != nil {
				errs = append(errs, fmt.Errorf("lock %s: %w", dir, err))
			}
			continue // a live job
		}
		if err := killJobProcesses(dir); err != nil {
			r.logger().Warn("kill processes of a stale job", "dir", dir, "error", err)
		}
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, fmt.Errorf("remove stale job dir: %w", err))
		} else {
			removed = append(removed, dir)
		}
		_ = os.Remove(dir + lockSuffix)
		_ = f.Close()
	}
	// The providers of those jobs (killed above, or with their daemon) left
	// their go-plugin sockets in the temporary directory terraform ran with.
	sockets, err := cleanDeadPluginSockets(os.TempDir())
	if err != nil {
		errs = append(errs, err)
	}
	removed = append(removed, sockets...)
	return removed, errors.Join(errs...)
}

func (r *Runner) workDir() string {
	if r.WorkDir == "" {
		return os.TempDir()
	}
	return r.WorkDir
}
