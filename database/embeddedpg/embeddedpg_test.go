package embeddedpg_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/wgmesh/coder/database/embeddedpg"
)

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// dataDir returns a fresh directory the server user can reach (when the
// test runs as root the server runs as the postgres user).
func dataDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "pg")
}

func start(t *testing.T, ctx context.Context, dir string) *embeddedpg.Cluster {
	t.Helper()
	c, err := embeddedpg.Start(ctx, embeddedpg.Options{DataDir: dir, NoSync: true})
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	return c
}

func query(t *testing.T, ctx context.Context, url, sql string, args ...any) []string {
	t.Helper()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, sql, args...)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return out
}

func TestStartQueryStopRestart(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	dir := dataDir(t)

	began := time.Now()
	c := start(t, ctx, dir)
	first := time.Since(began)
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = c.Stop(context.Background())
		}
	})
	if !strings.Contains(c.URL(), "/coder?") || !strings.Contains(c.URL(), "127.0.0.1:") {
		t.Fatalf("URL %q: want database coder on 127.0.0.1", c.URL())
	}
	query(t, ctx, c.URL(), "CREATE TABLE kept (v text)")
	query(t, ctx, c.URL(), "INSERT INTO kept VALUES ('survives restart') RETURNING v")
	if got := query(t, ctx, c.URL(), "SELECT current_setting('listen_addresses')"); got[0] != "127.0.0.1" {
		t.Fatalf("listen_addresses = %v", got)
	}
	if err := c.Stop(ctx); err != nil {
		t.Fatalf("stop: %v", err)
	}
	stopped = true
	if _, err := pgx.Connect(ctx, c.URL()); err == nil {
		t.Fatal("server still answers after Stop")
	}

	began = time.Now()
	c2 := start(t, ctx, dir)
	second := time.Since(began)
	t.Cleanup(func() { _ = c2.Stop(context.Background()) })
	t.Logf("first start (initdb + start) %v, second start %v", first, second)
	if c2.URL() != c.URL() {
		t.Fatalf("URL changed across restart: %q then %q", c.URL(), c2.URL())
	}
	if got := query(t, ctx, c2.URL(), "SELECT v FROM kept"); len(got) != 1 || got[0] != "survives restart" {
		t.Fatalf("data after restart = %v", got)
	}
}

func TestPasswordRequired(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	c := start(t, ctx, dataDir(t))
	t.Cleanup(func() { _ = c.Stop(context.Background()) })
	noPassword := "postgres://postgres@127.0.0.1:" + strconv.Itoa(c.Port()) + "/coder?sslmode=disable"
	if conn, err := pgx.Connect(ctx, noPassword); err == nil {
		conn.Close(ctx)
		t.Fatal("connected without the password")
	}
}

func TestAdoptRunningServer(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	dir := dataDir(t)
	c := start(t, ctx, dir)
	t.Cleanup(func() { _ = c.Stop(context.Background()) })
	// As if the process crashed and started again: the server still runs.
	again := start(t, ctx, dir)
	if again.URL() != c.URL() {
		t.Fatalf("adopted URL %q, want %q", again.URL(), c.URL())
	}
	query(t, ctx, again.URL(), "SELECT 'ok'")
}

func TestStalePostmasterPid(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	dir := dataDir(t)
	c := start(t, ctx, dir)
	pidFile := filepath.Join(dir, "pgdata", "postmaster.pid")
	content, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	// A crash leaves the lock file behind; its PID now belongs to another
	// process (here: this test).
	lines := strings.SplitN(string(content), "\n", 2)
	stale := strconv.Itoa(os.Getpid()) + "\n" + lines[1]
	if err := os.WriteFile(pidFile, []byte(stale), info.Mode().Perm()); err != nil {
		t.Fatal(err)
	}
	c2 := start(t, ctx, dir)
	t.Cleanup(func() { _ = c2.Stop(context.Background()) })
	query(t, ctx, c2.URL(), "SELECT 'ok'")
}

func TestMissingBinaries(t *testing.T) {
	t.Parallel()
	empty := t.TempDir()
	_, err := embeddedpg.FindBinaries(embeddedpg.SearchOptions{
		Path:  empty,
		Roots: []string{filepath.Join(empty, "postgresql", "*", "bin")},
	})
	if !errors.Is(err, embeddedpg.ErrBinariesNotFound) {
		t.Fatalf("err = %v, want ErrBinariesNotFound", err)
	}
	for _, want := range []string{"apt-get install postgresql", "brew install postgresql@16", "--postgres-url"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}

	_, err = embeddedpg.Start(testContext(t), embeddedpg.Options{DataDir: filepath.Join(empty, "data"), BinDir: empty})
	if !errors.Is(err, embeddedpg.ErrBinariesNotFound) {
		t.Fatalf("Start with no binaries: %v", err)
	}
}

func TestFindBinariesPrefersNewest(t *testing.T) {
	t.Parallel()
	real, err := embeddedpg.FindBinaries(embeddedpg.SearchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	for _, version := range []string{"9.6", "16", "12"} {
		bin := filepath.Join(root, version, "bin")
		if err := os.MkdirAll(bin, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"initdb", "pg_ctl", "postgres"} {
			if err := os.Symlink(filepath.Join(real.Dir, name), filepath.Join(bin, name)); err != nil {
				t.Fatal(err)
			}
		}
	}
	got, err := embeddedpg.FindBinaries(embeddedpg.SearchOptions{
		Path:  t.TempDir(),
		Roots: []string{filepath.Join(root, "*", "bin")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(root, "16", "bin"); got.Dir != want {
		t.Fatalf("picked %s, want %s", got.Dir, want)
	}
}

// TestExclusiveOwner: while one owner (coder server) runs the cluster, a second
// Exclusive Start fails at once instead of adopting a server that its owner is
// about to stop; once the owner stops, the cluster can be started again.
func TestExclusiveOwner(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	dir := dataDir(t)
	owner, err := embeddedpg.Start(ctx, embeddedpg.Options{DataDir: dir, NoSync: true, Exclusive: true})
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	if _, err := embeddedpg.Start(ctx, embeddedpg.Options{DataDir: dir, NoSync: true, Exclusive: true}); !errors.Is(err, embeddedpg.ErrInUse) {
		t.Fatalf("second exclusive start = %v, want ErrInUse", err)
	}
	query(t, ctx, owner.URL(), "SELECT 'still served'")
	if err := owner.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	next, err := embeddedpg.Start(ctx, embeddedpg.Options{DataDir: dir, NoSync: true, Exclusive: true})
	if err != nil {
		t.Fatalf("start after the owner stopped: %v", err)
	}
	t.Cleanup(func() { _ = next.Stop(context.Background()) })
	query(t, ctx, next.URL(), "SELECT 'ok'")
}
