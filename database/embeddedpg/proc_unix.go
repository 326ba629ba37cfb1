//go:build unix

package embeddedpg

import (
	"os"
	"os/exec"
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
