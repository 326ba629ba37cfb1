//go:build windows

package embeddedpg

import (
	"errors"
	"os"
	"os/exec"
)

func platformSupported() error {
	return errors.New("embedded PostgreSQL is not supported on Windows: pass --postgres-url to use a PostgreSQL server")
}

func runAsUser(*exec.Cmd, osUser) {}

func ownerOf(os.FileInfo) (uid, gid int, ok bool) { return 0, 0, false }

func processAlive(int) bool { return true }
