package terraform

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
)

// killJobProcesses kills (SIGKILL) every process whose environment marks
// it as started by the job in dir (JobDirEnv) and which is not in a session
// of its own: terraform runs in its own process group inside the daemon's
// session, and so do its providers and the `sh -c` of local-exec with their
// children. A process the template detached on purpose (setsid, e.g. a
// workspace agent) leads its own session and is left running.
func killJobProcesses(dir string) error {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return fmt.Errorf("read /proc: %w", err)
	}
	marker := []byte(JobDirEnv + "=" + dir + "\x00")
	self := os.Getpid()
	var errs []error
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err != nil || !bytes.Contains(append([]byte{0}, env...), append([]byte{0}, marker...)) {
			continue
		}
		pgid, sid, ok := procGroup(pid)
		if !ok || pgid == sid {
			continue
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("kill %d: %w", pid, err))
		}
	}
	return errors.Join(errs...)
}

// procGroup reads a process's group and session from /proc/<pid>/stat.
func procGroup(pid int) (pgid, sid int, ok bool) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, false
	}
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, 0, false
	}
	// After "(comm)": state ppid pgrp session ...
	fields := bytes.Fields(stat[i+1:])
	if len(fields) < 4 {
		return 0, 0, false
	}
	pgid, err1 := strconv.Atoi(string(fields[2]))
	sid, err2 := strconv.Atoi(string(fields[3]))
	return pgid, sid, err1 == nil && err2 == nil
}
