package dbtestutil_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/wgmesh/coder/database"
	"github.com/wgmesh/coder/database/dbtestutil"
)

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func TestMigrationsUpFromEmpty(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	url := dbtestutil.NewEmptyDB(t)
	pool := dbtestutil.NewPoolFor(t, url)

	var tables int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").Scan(&tables); err != nil {
		t.Fatal(err)
	}
	if tables != 0 {
		t.Fatalf("empty database has %d tables", tables)
	}
	if err := database.Migrate(ctx, url); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	for _, table := range []string{"users", "api_keys", "schema_migrations"} {
		var exists bool
		if err := pool.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", "public."+table).Scan(&exists); err != nil {
			t.Fatal(err)
		}
		if !exists {
			t.Errorf("table %s missing after migrations", table)
		}
	}
}

func TestNewDBIsMigrated(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	url := dbtestutil.NewDB(t)
	version, dirty, err := database.MigrationVersion(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	if version == 0 || dirty {
		t.Fatalf("version %d dirty %v", version, dirty)
	}
	store := dbtestutil.NewStore(t)
	if n, err := store.GetUserCount(ctx); err != nil || n != 0 {
		t.Fatalf("fresh store has %d users (%v)", n, err)
	}
}

func TestClonesAreIsolated(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	a := dbtestutil.NewPool(t)
	b := dbtestutil.NewPool(t)

	var nameA, nameB string
	if err := a.QueryRow(ctx, "SELECT current_database()").Scan(&nameA); err != nil {
		t.Fatal(err)
	}
	if err := b.QueryRow(ctx, "SELECT current_database()").Scan(&nameB); err != nil {
		t.Fatal(err)
	}
	if nameA == nameB || !strings.HasPrefix(nameA, "coder_test_") {
		t.Fatalf("databases %q and %q", nameA, nameB)
	}
	if _, err := a.Exec(ctx, "CREATE TABLE only_in_a (v int); INSERT INTO users (id, email, username, hashed_password, created_at, updated_at) VALUES (gen_random_uuid(), 'a@x', 'a', '', now(), now())"); err != nil {
		t.Fatal(err)
	}
	var exists bool
	if err := b.QueryRow(ctx, "SELECT to_regclass('public.only_in_a') IS NOT NULL").Scan(&exists); err != nil {
		t.Fatal(err)
	}
	var users int
	if err := b.QueryRow(ctx, "SELECT count(*) FROM users").Scan(&users); err != nil {
		t.Fatal(err)
	}
	if exists || users != 0 {
		t.Fatalf("b sees a's changes: table %v, users %d", exists, users)
	}
	// And the next clone from the template is untouched too.
	c := dbtestutil.NewPool(t)
	if err := c.QueryRow(ctx, "SELECT count(*) FROM users").Scan(&users); err != nil || users != 0 {
		t.Fatalf("new clone has %d users (%v)", users, err)
	}
}

func TestDatabaseDroppedAtCleanup(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	var name string
	t.Run("inner", func(t *testing.T) {
		pool := dbtestutil.NewPool(t)
		if err := pool.QueryRow(ctx, "SELECT current_database()").Scan(&name); err != nil {
			t.Fatal(err)
		}
	})
	admin := dbtestutil.NewPool(t)
	var exists bool
	if err := admin.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	if exists {
		t.Fatalf("database %s still exists after its test ended", name)
	}
}

func TestConcurrentNewDB(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	var wg sync.WaitGroup
	urls := make([]string, 6)
	for i := range urls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			urls[i] = dbtestutil.NewDB(t)
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, u := range urls {
		if u == "" || seen[u] {
			t.Fatalf("bad or duplicate url %q", u)
		}
		seen[u] = true
		conn, err := pgx.Connect(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		var users int
		err = conn.QueryRow(ctx, "SELECT count(*) FROM users").Scan(&users)
		conn.Close(ctx)
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestMigrationsHashStable(t *testing.T) {
	t.Parallel()
	h1, err := dbtestutil.MigrationsHash()
	if err != nil {
		t.Fatal(err)
	}
	h2, err := dbtestutil.MigrationsHash()
	if err != nil || h1 != h2 || len(h1) != 16 {
		t.Fatalf("hash %q then %q (%v)", h1, h2, err)
	}
}
