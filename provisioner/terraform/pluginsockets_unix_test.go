//go:build unix

package terraform

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// listenUnix listens on path; with keepFile the socket file stays after
// Close, as it does when the listening process is killed.
func listenUnix(t *testing.T, path string, keepFile bool) *net.UnixListener {
	t.Helper()
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(!keepFile)
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// deadSocket leaves a socket file at path that nobody listens on: what a
// provider killed with its daemon leaves behind.
func deadSocket(t *testing.T, path string) {
	t.Helper()
	_ = listenUnix(t, path, true).Close()
}

// TestCleanDeadPluginSockets: go-plugin sockets nobody listens on (and
// go-plugin directories of only such sockets) are removed; a live
// provider's socket, its directory, files that are not sockets and dead
// sockets with other names stay.
func TestCleanDeadPluginSockets(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := func(name string) string { return filepath.Join(dir, name) }

	deadSocket(t, p("plugin111"))
	listenUnix(t, p("plugin222"), false) // a running provider
	if err := os.WriteFile(p("plugin333"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	deadSocket(t, p("other444"))
	for _, d := range []string{"plugin-dir555", "plugin-dir666", "plugin-dir777"} {
		if err := os.Mkdir(p(d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	deadSocket(t, p("plugin-dir555/plugin1"))
	deadSocket(t, p("plugin-dir666/plugin1"))
	listenUnix(t, p("plugin-dir666/plugin2"), false) // one live socket keeps the directory

	removed, err := cleanDeadPluginSockets(dir)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(removed)
	want := []string{p("plugin-dir555"), p("plugin111")}
	if !slices.Equal(removed, want) {
		t.Fatalf("removed %v, want %v", removed, want)
	}
	for _, name := range []string{"plugin222", "plugin333", "other444", "plugin-dir666", "plugin-dir777"} {
		if _, err := os.Lstat(p(name)); err != nil {
			t.Errorf("%s was removed: %v", name, err)
		}
	}
	for _, name := range []string{"plugin111", "plugin-dir555"} {
		if _, err := os.Lstat(p(name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s is still there: %v", name, err)
		}
	}
	// The live socket still serves.
	c, err := net.Dial("unix", p("plugin222"))
	if err != nil {
		t.Fatalf("live socket: %v", err)
	}
	_ = c.Close()
}

// TestCleanStaleRemovesDeadPluginSocket: a daemon's start-up sweep reaches
// the temporary directory terraform and its providers ran with (chaos seed
// 3: a provider killed with its daemon left $TMPDIR/plugin<N>).
func TestCleanStaleRemovesDeadPluginSocket(t *testing.T) {
	t.Parallel()
	f, err := os.CreateTemp("", pluginSocketPrefix)
	if err != nil {
		t.Fatal(err)
	}
	path := f.Name()
	_ = f.Close()
	_ = os.Remove(path)
	deadSocket(t, path)
	t.Cleanup(func() { _ = os.Remove(path) })

	removed, err := (&Runner{WorkDir: t.TempDir()}).CleanStale()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(removed, path) {
		t.Fatalf("removed %v, want it to include %s", removed, path)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("dead plugin socket still there: %v", err)
	}
}
