//go:build unix

package terraform

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// HashiCorp go-plugin, inside terraform and every provider, listens on unix
// sockets it names $TMPDIR/plugin<random> (newer versions put them in a
// directory $TMPDIR/plugin-dir<random>). The process that listens removes
// its socket when it exits normally; a provider killed with its daemon
// leaves the socket behind. Such a socket is dead: connecting to it is
// refused.
const (
	pluginSocketPrefix = "plugin"
	pluginDirPrefix    = "plugin-dir"
)

// pluginRecheckDelay separates the two connection attempts that make a
// socket dead: a socket is bound a moment before it listens, and a
// connection in between is refused too.
const pluginRecheckDelay = 100 * time.Millisecond

// cleanDeadPluginSockets removes, directly under dir, the go-plugin sockets
// of this user that nobody listens on any more, and go-plugin socket
// directories holding only such sockets. Sockets that accept, other files
// and other users' entries are left alone. It returns what it removed.
func cleanDeadPluginSockets(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("read %s: %w", dir, err)
	}
	uid := uint32(os.Getuid())
	var candidates []string
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), pluginSocketPrefix) {
			continue
		}
		path := filepath.Join(dir, e.Name())
		info, err := os.Lstat(path)
		if err != nil {
			continue
		}
		if st, ok := info.Sys().(*syscall.Stat_t); !ok || st.Uid != uid {
			continue
		}
		switch {
		case info.Mode()&os.ModeSocket != 0:
			if socketRefuses(path) {
				candidates = append(candidates, path)
			}
		case info.IsDir() && strings.HasPrefix(e.Name(), pluginDirPrefix):
			if dirOfDeadSockets(path) {
				candidates = append(candidates, path)
			}
		}
	}
	if len(candidates) == 0 {
		return nil, nil
	}
	time.Sleep(pluginRecheckDelay)
	var removed []string
	var errs []error
	for _, path := range candidates {
		info, err := os.Lstat(path)
		if err != nil {
			continue
		}
		dead := info.IsDir() && dirOfDeadSockets(path) || !info.IsDir() && socketRefuses(path)
		if !dead {
			continue
		}
		if err := os.RemoveAll(path); err != nil {
			errs = append(errs, fmt.Errorf("remove dead plugin socket: %w", err))
			continue
		}
		removed = append(removed, path)
	}
	return removed, errors.Join(errs...)
}

// socketRefuses reports whether connecting to the unix socket at path is
// refused (nobody listens on it).
func socketRefuses(path string) bool {
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		_ = c.Close()
		return false
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}

// dirOfDeadSockets reports whether dir holds at least one socket and only
// sockets, all of them refusing connections.
func dirOfDeadSockets(dir string) bool {
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) == 0 {
		return false
	}
	for _, e := range entries {
		if e.Type()&os.ModeSocket == 0 || !socketRefuses(filepath.Join(dir, e.Name())) {
			return false
		}
	}
	return true
}
