package database_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/wgmesh/coder/database"
	"github.com/wgmesh/coder/database/dbtestutil"
)

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func insertUser(t *testing.T, ctx context.Context, q database.Querier, username, email string) database.User {
	t.Helper()
	now := time.Now().UTC().Truncate(time.Microsecond)
	u, err := q.InsertUser(ctx, database.InsertUserParams{
		ID:             uuid.New(),
		Email:          email,
		Username:       username,
		Name:           "Name " + username,
		HashedPassword: []byte("hash"),
		CreatedAt:      now,
		UpdatedAt:      now,
		Status:         database.UserStatusActive,
		RbacRoles:      []string{},
		LoginType:      database.LoginTypePassword,
	})
	if err != nil {
		t.Fatalf("insert user %s: %v", username, err)
	}
	return u
}

func TestMigrateIdempotentAndConcurrent(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	url := dbtestutil.NewEmptyDB(t)

	const n = 4
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- database.Migrate(ctx, url)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent migrate: %v", err)
		}
	}
	if err := database.Migrate(ctx, url); err != nil {
		t.Fatalf("migrate again: %v", err)
	}
	version, dirty, err := database.MigrationVersion(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	if version < 1 || dirty {
		t.Fatalf("version %d dirty %v, want >= 1 and clean", version, dirty)
	}
}

func TestMigrateDownUp(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	url := dbtestutil.NewDB(t)
	if err := database.MigrateDown(ctx, url); err != nil {
		t.Fatalf("down: %v", err)
	}
	version, _, err := database.MigrationVersion(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	if version != 0 {
		t.Fatalf("version after down = %d, want 0", version)
	}
	pool, err := database.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var tables int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename IN ('users', 'api_keys')").Scan(&tables); err != nil {
		t.Fatal(err)
	}
	if tables != 0 {
		t.Fatalf("%d tables left after down", tables)
	}
	if err := database.Migrate(ctx, url); err != nil {
		t.Fatalf("up again: %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	tests := []struct {
		name string
		url  string
	}{
		{"unparsable", "postgres://%zz"},
		{"nothing listening", "postgres://postgres@127.0.0.1:1/postgres?sslmode=disable&connect_timeout=5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pool, err := database.Open(ctx, tt.url)
			if err == nil {
				pool.Close()
				t.Fatal("Open succeeded")
			}
		})
	}
}

func TestUsers(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	store := dbtestutil.NewStore(t)

	alice := insertUser(t, ctx, store, "Alice", "Alice@Example.com")
	bob := insertUser(t, ctx, store, "bob", "bob@example.com")

	if alice.Status != database.UserStatusActive || alice.LoginType != database.LoginTypePassword || alice.Deleted {
		t.Fatalf("unexpected defaults: %+v", alice)
	}
	if !alice.LastSeenAt.Equal(time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("last_seen_at = %v, want year 1", alice.LastSeenAt)
	}

	got, err := store.GetUserByID(ctx, alice.ID)
	if err != nil || got.Username != "Alice" {
		t.Fatalf("GetUserByID = %+v, %v", got, err)
	}
	got, err = store.GetUserByUsername(ctx, "aLiCe")
	if err != nil || got.ID != alice.ID {
		t.Fatalf("GetUserByUsername case-insensitive = %+v, %v", got, err)
	}
	got, err = store.GetUserByEmail(ctx, "alice@example.COM")
	if err != nil || got.ID != alice.ID {
		t.Fatalf("GetUserByEmail case-insensitive = %+v, %v", got, err)
	}
	if _, err := store.GetUserByID(ctx, uuid.New()); !database.IsNotFound(err) {
		t.Fatalf("missing user: err = %v, want not found", err)
	}

	// Uniqueness is case-insensitive.
	dupTests := []struct {
		name, username, email, constraint string
	}{
		{"username", "ALICE", "other@example.com", database.UniqueUsersUsernameLower},
		{"email", "carol", "alice@example.com", database.UniqueUsersEmailLower},
	}
	for _, tt := range dupTests {
		now := time.Now()
		_, err := store.InsertUser(ctx, database.InsertUserParams{
			ID: uuid.New(), Email: tt.email, Username: tt.username, HashedPassword: []byte{},
			CreatedAt: now, UpdatedAt: now, Status: database.UserStatusActive, RbacRoles: []string{},
			LoginType: database.LoginTypePassword,
		})
		if !database.IsUniqueViolation(err, tt.constraint) {
			t.Fatalf("duplicate %s: err = %v, want unique violation of %s", tt.name, err, tt.constraint)
		}
	}

	users, err := store.GetUsers(ctx, database.GetUsersParams{Limit: 10, Offset: 0})
	if err != nil {
		t.Fatal(err)
	}
	if len(users) != 2 || users[0].ID != alice.ID || users[1].ID != bob.ID {
		t.Fatalf("GetUsers order = %v", usernames(users))
	}
	users, err = store.GetUsers(ctx, database.GetUsersParams{Limit: 1, Offset: 1})
	if err != nil || len(users) != 1 || users[0].ID != bob.ID {
		t.Fatalf("GetUsers page 2 = %v, %v", usernames(users), err)
	}
	count, err := store.GetUserCount(ctx)
	if err != nil || count != 2 {
		t.Fatalf("GetUserCount = %d, %v", count, err)
	}

	later := time.Now().Add(time.Minute).UTC().Truncate(time.Microsecond)
	suspended, err := store.UpdateUserStatus(ctx, database.UpdateUserStatusParams{ID: bob.ID, Status: database.UserStatusSuspended, UpdatedAt: later})
	if err != nil || suspended.Status != database.UserStatusSuspended || !suspended.UpdatedAt.Equal(later) {
		t.Fatalf("UpdateUserStatus = %+v, %v", suspended, err)
	}
	roles, err := store.UpdateUserRoles(ctx, database.UpdateUserRolesParams{ID: bob.ID, RbacRoles: []string{"owner", "member", "owner"}})
	if err != nil || len(roles.RbacRoles) != 2 || roles.RbacRoles[0] != "member" || roles.RbacRoles[1] != "owner" {
		t.Fatalf("UpdateUserRoles = %v, %v", roles.RbacRoles, err)
	}
	seen, err := store.UpdateUserLastSeenAt(ctx, database.UpdateUserLastSeenAtParams{ID: bob.ID, LastSeenAt: later, UpdatedAt: later})
	if err != nil || !seen.LastSeenAt.Equal(later) {
		t.Fatalf("UpdateUserLastSeenAt = %v, %v", seen.LastSeenAt, err)
	}

	// Soft delete frees the username and email, and hides the user.
	if err := store.UpdateUserDeletedByID(ctx, database.UpdateUserDeletedByIDParams{ID: bob.ID, UpdatedAt: later}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.GetUserByUsername(ctx, "bob"); !database.IsNotFound(err) {
		t.Fatalf("deleted user still found by username: %v", err)
	}
	count, err = store.GetUserCount(ctx)
	if err != nil || count != 1 {
		t.Fatalf("GetUserCount after delete = %d, %v", count, err)
	}
	insertUser(t, ctx, store, "bob", "bob@example.com")
}

func usernames(users []database.User) []string {
	var names []string
	for _, u := range users {
		names = append(names, u.Username)
	}
	return names
}

func TestAPIKeys(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	store := dbtestutil.NewStore(t)
	user := insertUser(t, ctx, store, "keyowner", "keys@example.com")
	now := time.Now().UTC().Truncate(time.Microsecond)

	newKey := func(id string, lt database.LoginType, name string) database.InsertAPIKeyParams {
		secret := sha256.Sum256([]byte("secret-" + id))
		return database.InsertAPIKeyParams{
			ID: id, HashedSecret: secret[:], UserID: user.ID, LastUsed: now, ExpiresAt: now.Add(time.Hour),
			CreatedAt: now, UpdatedAt: now, LoginType: lt, LifetimeSeconds: 3600, TokenName: name, Scope: "all",
		}
	}
	session, err := store.InsertAPIKey(ctx, newKey("session0001", database.LoginTypePassword, ""))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.InsertAPIKey(ctx, newKey("token000001", database.LoginTypeToken, "ci")); err != nil {
		t.Fatal(err)
	}
	// A second token with the same name is refused; sessions have no names.
	if _, err := store.InsertAPIKey(ctx, newKey("token000002", database.LoginTypeToken, "ci")); !database.IsUniqueViolation(err, database.UniqueAPIKeysUserTokenName) {
		t.Fatalf("duplicate token name: %v", err)
	}
	if _, err := store.InsertAPIKey(ctx, newKey("session0002", database.LoginTypePassword, "")); err != nil {
		t.Fatal(err)
	}
	// Unknown user: foreign key.
	orphan := newKey("orphan00001", database.LoginTypePassword, "")
	orphan.UserID = uuid.New()
	if _, err := store.InsertAPIKey(ctx, orphan); !database.IsForeignKeyViolation(err) {
		t.Fatalf("orphan key: %v", err)
	}

	got, err := store.GetAPIKeyByID(ctx, session.ID)
	if err != nil || string(got.HashedSecret) != string(session.HashedSecret) {
		t.Fatalf("GetAPIKeyByID = %+v, %v", got, err)
	}
	tokens, err := store.GetAPIKeysByUserID(ctx, database.GetAPIKeysByUserIDParams{UserID: user.ID, LoginType: database.LoginTypeToken})
	if err != nil || len(tokens) != 1 || tokens[0].ID != "token000001" {
		t.Fatalf("GetAPIKeysByUserID(token) = %v, %v", tokens, err)
	}
	byName, err := store.GetAPIKeyByName(ctx, database.GetAPIKeyByNameParams{UserID: user.ID, TokenName: "ci"})
	if err != nil || byName.ID != "token000001" {
		t.Fatalf("GetAPIKeyByName = %+v, %v", byName, err)
	}

	later := now.Add(30 * time.Minute)
	if err := store.UpdateAPIKeyByID(ctx, database.UpdateAPIKeyByIDParams{ID: session.ID, LastUsed: later, ExpiresAt: later.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	got, err = store.GetAPIKeyByID(ctx, session.ID)
	if err != nil || !got.LastUsed.Equal(later) || !got.ExpiresAt.Equal(later.Add(time.Hour)) {
		t.Fatalf("after UpdateAPIKeyByID = %+v, %v", got, err)
	}

	if err := store.DeleteAPIKeyByID(ctx, session.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := store.GetAPIKeyByID(ctx, session.ID); !database.IsNotFound(err) {
		t.Fatalf("deleted key: %v", err)
	}
	if err := store.DeleteAPIKeysByUserID(ctx, user.ID); err != nil {
		t.Fatal(err)
	}
	sessions, err := store.GetAPIKeysByUserID(ctx, database.GetAPIKeysByUserIDParams{UserID: user.ID, LoginType: database.LoginTypePassword})
	if err != nil || len(sessions) != 0 {
		t.Fatalf("keys left after DeleteAPIKeysByUserID: %v, %v", sessions, err)
	}
}

func TestInTx(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	store := dbtestutil.NewStore(t)

	t.Run("rollback on error", func(t *testing.T) {
		errBoom := errors.New("boom")
		err := store.InTx(ctx, func(q *database.Queries) error {
			insertUser(t, ctx, q, "rolledback", "rb@example.com")
			return errBoom
		})
		if !errors.Is(err, errBoom) {
			t.Fatalf("InTx error = %v", err)
		}
		if _, err := store.GetUserByUsername(ctx, "rolledback"); !database.IsNotFound(err) {
			t.Fatalf("row survived rollback: %v", err)
		}
	})

	t.Run("commit", func(t *testing.T) {
		var id uuid.UUID
		if err := store.InTx(ctx, func(q *database.Queries) error {
			id = insertUser(t, ctx, q, "committed", "c@example.com").ID
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if _, err := store.GetUserByID(ctx, id); err != nil {
			t.Fatalf("committed row missing: %v", err)
		}
	})

	t.Run("serialization failures are retried", func(t *testing.T) {
		// Two serializable transactions read the count then insert: one of
		// them must fail with 40001 and succeed when retried.
		var attempts atomic.Int32
		barrier := make(chan struct{})
		var arrived atomic.Int32
		run := func(name string) error {
			return store.InTxOpts(ctx, database.TxOptions{Isolation: pgx.Serializable}, func(q *database.Queries) error {
				n := attempts.Add(1)
				if _, err := q.GetUserCount(ctx); err != nil {
					return err
				}
				if n <= 2 {
					// First attempts of both: wait until both have read.
					if arrived.Add(1) == 2 {
						close(barrier)
					}
					select {
					case <-barrier:
					case <-ctx.Done():
						return ctx.Err()
					}
				}
				_, err := q.InsertUser(ctx, database.InsertUserParams{
					ID: uuid.New(), Email: name + "@example.com", Username: name, HashedPassword: []byte{},
					CreatedAt: time.Now(), UpdatedAt: time.Now(), Status: database.UserStatusActive,
					RbacRoles: []string{}, LoginType: database.LoginTypePassword,
				})
				return err
			})
		}
		errs := make(chan error, 2)
		go func() { errs <- run("ser1") }()
		go func() { errs <- run("ser2") }()
		for range 2 {
			if err := <-errs; err != nil {
				t.Fatalf("serializable tx: %v", err)
			}
		}
		if got := attempts.Load(); got < 3 {
			t.Fatalf("attempts = %d, want a retry (>= 3)", got)
		}
		for _, name := range []string{"ser1", "ser2"} {
			if _, err := store.GetUserByUsername(ctx, name); err != nil {
				t.Fatalf("%s missing: %v", name, err)
			}
		}
	})
}

// TestOpenPoolSize: Open's pool is large enough for coderd's long-held
// lock connections plus concurrent requests (pgx's default is 4 on a
// 2-core machine: a test server hung with every request waiting for a
// connection), and pool_max_conns in the URL still decides when given.
func TestOpenPoolSize(t *testing.T) {
	t.Parallel()
	url := dbtestutil.NewDB(t)
	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	for _, tc := range []struct {
		name string
		url  string
		want int32
	}{
		{"default", url, database.DefaultMaxConns},
		{"from the url", url + sep + "pool_max_conns=3", 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pool, err := database.Open(context.Background(), tc.url)
			if err != nil {
				t.Fatal(err)
			}
			defer pool.Close()
			if got := pool.Config().MaxConns; got != tc.want {
				t.Fatalf("MaxConns = %d, want %d", got, tc.want)
			}
			// The pool really hands out that many connections at once.
			var conns []*pgxpool.Conn
			for range tc.want {
				c, err := pool.Acquire(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				conns = append(conns, c)
			}
			for _, c := range conns {
				c.Release()
			}
		})
	}
}
