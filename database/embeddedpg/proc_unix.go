//go:build unix

package embeddedpg

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"syscall"
)

func platformSupported() error { return nil }

// runAsUser makes cmd run as u (the process must be root).
func runAsUser(cmd *exec.Cmd, u osUser) {
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: uint32(u.uid), Gid: uint32(u.gid)},
	}
}

// ownerOf returns the owner of a file.
func ownerOf(fi os.FileInfo) (uid, gid int, ok bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, false
	}
	return int(st.Uid), int(st.Gid), true
}

// processAlive reports whether pid runs (a zombie does not count: an
// orphaned postmaster is reaped by init, but a container's init may not).
func processAlive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		// No procfs (macOS): the signal answered.
		return !errors.Is(err, os.ErrNotExist) || !procfsMounted()
	}
	// The state follows the command name in parentheses.
	if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) {
		return stat[i+2] != 'Z'
	}
	return true
}

func procfsMounted() bool {
	_, err := os.Stat("/proc/self/stat")
	return err == nil
}
