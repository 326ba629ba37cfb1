// Package dbtestutil gives each test its own freshly migrated PostgreSQL
// database, the only way tests in this repository get one.
//
// The server is, in order: $CODER_TEST_POSTGRES_URL; the local server on
// 127.0.0.1:5432 as user postgres; else an embedded cluster (embeddedpg)
// under os.TempDir, shared by every test process of the same OS user and
// left running for the next ones.
//
// Each test database is cloned (CREATE DATABASE ... TEMPLATE) from a template
// database migrated once per schema version: its name carries a hash of the
// embedded migrations, and it is built under a PostgreSQL advisory lock, so
// concurrently running test binaries share it safely.
package dbtestutil

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/wgmesh/coder/database"
	"github.com/wgmesh/coder/database/embeddedpg"
)

// EnvPostgresURL names the environment variable selecting the test server.
// It must point at a database the user can connect to with the CREATEDB
// privilege (e.g. postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable).
const EnvPostgresURL = "CODER_TEST_POSTGRES_URL"

// LocalURL is the local server tried when EnvPostgresURL is unset.
const LocalURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable&connect_timeout=5"

// setupTimeout bounds server discovery, template creation and cloning.
const setupTimeout = 3 * time.Minute

// server is the process-wide choice of test server, made once.
var server = sync.OnceValues(findServer)

// templates caches the template database name per server URL.
var templates sync.Map // admin url -> *templateOnce

type templateOnce struct {
	once sync.Once
	name string
	err  error
}

// NewDB returns the URL of a new, migrated, empty database that is dropped
// when the test ends.
func NewDB(t testing.TB) string {
	t.Helper()
	return newDB(t, true)
}

// NewEmptyDB returns the URL of a new database without any migration
// applied, dropped when the test ends. For tests of the migrations.
func NewEmptyDB(t testing.TB) string {
	t.Helper()
	return newDB(t, false)
}

// NewPool returns a pool on a new migrated database (see NewDB); both are
// closed/dropped when the test ends.
func NewPool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	// The pool's cleanup runs before the drop registered by NewDB.
	return NewPoolFor(t, NewDB(t))
}

// NewPoolFor opens a pool on dbURL (e.g. from NewDB), closed when the test ends.
func NewPoolFor(t testing.TB, dbURL string) *pgxpool.Pool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	pool, err := database.Open(ctx, dbURL)
	if err != nil {
		t.Fatalf("dbtestutil: open pool: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// NewStore returns a database.Store on a new migrated database.
func NewStore(t testing.TB) *database.Store {
	t.Helper()
	return database.NewStore(NewPool(t))
}

func newDB(t testing.TB, migrated bool) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()

	adminURL, err := server()
	if err != nil {
		t.Fatalf("dbtestutil: no PostgreSQL server for tests: %v", err)
	}
	source := "template0"
	if migrated {
		source, err = templateFor(ctx, adminURL)
		if err != nil {
			t.Fatalf("dbtestutil: migrated template: %v", err)
		}
	}
	name := "coder_test_" + randomHex(8)
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		t.Fatalf("dbtestutil: connect: %v", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := createDatabase(ctx, conn, name, source); err != nil {
		t.Fatalf("dbtestutil: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := dropDatabase(ctx, adminURL, name); err != nil {
			t.Errorf("dbtestutil: drop test database %s: %v", name, err)
		}
	})
	dbURL, err := withDatabase(adminURL, name)
	if err != nil {
		t.Fatalf("dbtestutil: %v", err)
	}
	return dbURL
}

// createDatabase clones source into name. PostgreSQL refuses to clone a
// template while another session is connected to it (only possible in the
// brief moment a concurrent builder checks it), so that error is retried.
func createDatabase(ctx context.Context, conn *pgx.Conn, name, source string) error {
	stmt := fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s", pgx.Identifier{name}.Sanitize(), pgx.Identifier{source}.Sanitize())
	for attempt := 0; ; attempt++ {
		_, err := conn.Exec(ctx, stmt)
		if err == nil {
			return nil
		}
		if !isSourceBusy(err) || attempt >= 50 {
			return fmt.Errorf("create database %s from %s: %w", name, source, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("create database %s: %w", name, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func isSourceBusy(err error) bool {
	var pgErr interface{ SQLState() string }
	// 55006: object_in_use ("source database is being accessed by other users").
	return errors.As(err, &pgErr) && pgErr.SQLState() == "55006"
}

func dropDatabase(ctx context.Context, adminURL, name string) error {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	// FORCE disconnects sessions a test left open (PostgreSQL 13+).
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database: %w", err)
	}
	return nil
}

// templateFor returns the migrated template database for the current
// migrations on the server, creating it if needed.
func templateFor(ctx context.Context, adminURL string) (string, error) {
	v, _ := templates.LoadOrStore(adminURL, &templateOnce{})
	to := v.(*templateOnce)
	to.once.Do(func() {
		to.name, to.err = ensureTemplate(ctx, adminURL)
	})
	return to.name, to.err
}

// MigrationsHash is a hash of the embedded migration files; the template
// database name carries it so a schema change gets a new template.
func MigrationsHash() (string, error) {
	fsys := database.Migrations()
	var names []string
	err := fs.WalkDir(fsys, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			names = append(names, path)
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("list migrations: %w", err)
	}
	sort.Strings(names)
	h := sha256.New()
	for _, name := range names {
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return "", fmt.Errorf("read migration %s: %w", name, err)
		}
		fmt.Fprintf(h, "%s\x00%d\x00", name, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// ensureTemplate builds the template under an advisory lock: migrate a
// scratch database, then rename it to the final name, so the final name only
// ever denotes a fully migrated database.
func ensureTemplate(ctx context.Context, adminURL string) (string, error) {
	hash, err := MigrationsHash()
	if err != nil {
		return "", err
	}
	name := "coder_tmpl_" + hash
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return "", fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))

	lockKey := int64(0)
	for _, b := range sha256.Sum256([]byte("coder-dbtestutil-template")) {
		lockKey = lockKey<<8 | int64(b)
	}
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", lockKey); err != nil {
		return "", fmt.Errorf("take template lock: %w", err)
	}
	defer func() {
		_, _ = conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", lockKey)
	}()

	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return "", fmt.Errorf("look up template: %w", err)
	}
	if exists {
		return name, nil
	}
	scratch := name + "_build"
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{scratch}.Sanitize()+" WITH (FORCE)"); err != nil {
		return "", fmt.Errorf("drop leftover %s: %w", scratch, err)
	}
	if err := createDatabase(ctx, conn, scratch, "template0"); err != nil {
		return "", err
	}
	scratchURL, err := withDatabase(adminURL, scratch)
	if err != nil {
		return "", err
	}
	if err := database.Migrate(ctx, scratchURL); err != nil {
		return "", fmt.Errorf("migrate template: %w", err)
	}
	if _, err := conn.Exec(ctx, fmt.Sprintf("ALTER DATABASE %s RENAME TO %s", pgx.Identifier{scratch}.Sanitize(), pgx.Identifier{name}.Sanitize())); err != nil {
		return "", fmt.Errorf("rename template into place: %w", err)
	}
	return name, nil
}

// withDatabase returns serverURL pointing at database name.
func withDatabase(serverURL, name string) (string, error) {
	u, err := url.Parse(serverURL)
	if err != nil {
		return "", fmt.Errorf("parse server url: %w", err)
	}
	u.Path = "/" + name
	u.RawPath = ""
	return u.String(), nil
}

// findServer picks the server once per process.
func findServer() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	if u := os.Getenv(EnvPostgresURL); u != "" {
		if err := ping(ctx, u); err != nil {
			return "", fmt.Errorf("%s is set but unusable: %w", EnvPostgresURL, err)
		}
		return u, nil
	}
	localErr := ping(ctx, LocalURL)
	if localErr == nil {
		return LocalURL, nil
	}
	u, err := sharedEmbedded(ctx)
	if err != nil {
		return "", fmt.Errorf("no %s, local server unusable (%v), embedded cluster failed: %w", EnvPostgresURL, localErr, err)
	}
	return u, nil
}

func ping(ctx context.Context, u string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return conn.Ping(ctx)
}

// sharedEmbedded starts (or adopts) the per-user embedded test cluster under
// os.TempDir. The cluster is left running for the next test process.
func sharedEmbedded(ctx context.Context) (string, error) {
	dir := filepath.Join(os.TempDir(), "coder-test-postgres-"+strconv.Itoa(os.Getuid()))
	cluster, err := startShared(ctx, dir)
	if err != nil {
		return "", err
	}
	return cluster.AdminURL(), nil
}

// startShared starts or adopts the cluster in dir/cluster. A file lock
// serializes test processes racing to start it.
func startShared(ctx context.Context, dir string) (*embeddedpg.Cluster, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	// Searchable (not listable) by others: as root the server runs as the
	// postgres user and must reach the cluster below.
	if err := os.Chmod(dir, 0o711); err != nil {
		return nil, fmt.Errorf("chmod %s: %w", dir, err)
	}
	unlock, err := lockFile(filepath.Join(dir, "start.lock"))
	if err != nil {
		return nil, err
	}
	defer unlock()

	cluster, err := embeddedpg.Start(ctx, embeddedpg.Options{DataDir: filepath.Join(dir, "cluster"), NoSync: true})
	if err != nil {
		return nil, fmt.Errorf("start embedded cluster: %w", err)
	}
	return cluster, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	return hex.EncodeToString(b)
}
