package dbtestutil

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestEmbeddedFallback exercises the path taken on machines without a
// PostgreSQL server: start the shared embedded cluster, adopt it from a
// second "process", build the migrated template on it and clone it.
func TestEmbeddedFallback(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	base := t.TempDir()
	if err := os.Chmod(filepath.Dir(base), 0o711); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(base, "shared")

	cluster, err := startShared(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cluster.Stop(context.Background()) })
	again, err := startShared(ctx, dir)
	if err != nil {
		t.Fatalf("second process adopting the cluster: %v", err)
	}
	if again.AdminURL() != cluster.AdminURL() {
		t.Fatalf("adopted %q, want %q", again.AdminURL(), cluster.AdminURL())
	}

	tmpl, err := ensureTemplate(ctx, cluster.AdminURL())
	if err != nil {
		t.Fatalf("template: %v", err)
	}
	conn, err := pgx.Connect(ctx, cluster.AdminURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := createDatabase(ctx, conn, "clone_1", tmpl); err != nil {
		t.Fatal(err)
	}
	cloneURL, err := withDatabase(cluster.AdminURL(), "clone_1")
	if err != nil {
		t.Fatal(err)
	}
	clone, err := pgx.Connect(ctx, cloneURL)
	if err != nil {
		t.Fatal(err)
	}
	defer clone.Close(ctx)
	var users int
	if err := clone.QueryRow(ctx, "SELECT count(*) FROM users").Scan(&users); err != nil {
		t.Fatalf("clone is not migrated: %v", err)
	}
}
