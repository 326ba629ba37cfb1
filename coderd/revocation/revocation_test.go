package revocation_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/wgmesh/coder/coderd/revocation"
	"github.com/wgmesh/coder/database/dbtestutil"
	"github.com/wgmesh/coder/database/pubsub"
)

const waitFor = 30 * time.Second

// replica is one coderd's registry on the shared database.
func replica(t *testing.T, url string, recheck func(context.Context, revocation.Session) (bool, error)) *revocation.Registry {
	t.Helper()
	ps, err := pubsub.NewFromURL(context.Background(), nil, url, pubsub.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ps.Close() })
	reg, err := revocation.New(revocation.Options{Pubsub: ps, Recheck: recheck})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reg.Close)
	return reg
}

// session registers s and returns a channel closed when it is ended.
func session(t *testing.T, reg *revocation.Registry, s revocation.Session) <-chan struct{} {
	t.Helper()
	ended := make(chan struct{})
	var once sync.Once
	unregister := reg.Register(s, time.Now(), func() { once.Do(func() { close(ended) }) })
	t.Cleanup(unregister)
	return ended
}

func awaitEnded(t *testing.T, what string, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(waitFor):
		t.Fatalf("%s was not ended", what)
	}
}

func requireLive(t *testing.T, what string, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
		t.Fatalf("%s was ended", what)
	default:
	}
}

// TestRevokeAcrossReplicas: a revocation on replica A ends the matching
// sessions held by replica B (through PostgreSQL pubsub) and by A itself,
// each kind matching only its own field; a session it does not cover stays.
func TestRevokeAcrossReplicas(t *testing.T) {
	url := dbtestutil.NewDB(t)
	a := replica(t, url, nil)
	b := replica(t, url, nil)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()

	alice, bob := uuid.New(), uuid.New()
	wsAlice, wsBob := uuid.New(), uuid.New()
	for _, tc := range []struct {
		name   string
		victim revocation.Session
		event  revocation.Event
	}{
		{"api key", revocation.Session{Kind: "terminal", APIKeyID: "key-1", UserID: alice, WorkspaceID: wsAlice}, revocation.APIKey("key-1")},
		{"user", revocation.Session{Kind: "client coordinate", APIKeyID: "key-2", UserID: alice, WorkspaceID: wsAlice}, revocation.User(alice)},
		{"workspace", revocation.Session{Kind: "client coordinate", APIKeyID: "key-3", UserID: alice, WorkspaceID: wsAlice}, revocation.Workspace(wsAlice)},
		{"workspace agents", revocation.Session{Kind: "agent coordinate", WorkspaceID: wsAlice, Agent: true}, revocation.WorkspaceAgents(wsAlice)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Bob's sessions share nothing with the victim's but the kind.
			bobOnB := session(t, b, revocation.Session{Kind: tc.victim.Kind, APIKeyID: "bob-key", UserID: bob, WorkspaceID: wsBob})
			// A workspace's agent outlives users' revocation of it, and
			// its users outlive the agents' revocation.
			sameWorkspace := session(t, b, revocation.Session{Kind: "other side", WorkspaceID: wsAlice, Agent: !tc.victim.Agent})
			victimOnB := session(t, b, tc.victim)
			victimOnA := session(t, a, tc.victim)
			if err := a.Revoke(ctx, tc.event); err != nil {
				t.Fatal(err)
			}
			// A ends its own at once, before publishing returns.
			requireEndedNow(t, "A's session", victimOnA)
			awaitEnded(t, "B's session", victimOnB)
			// Delivery is in order: a later revocation that B applied
			// shows it is done with this one; Bob's session survived it.
			marker := session(t, b, revocation.Session{Kind: "marker", APIKeyID: "marker-" + tc.name})
			if err := a.Revoke(ctx, revocation.APIKey("marker-"+tc.name)); err != nil {
				t.Fatal(err)
			}
			awaitEnded(t, "marker", marker)
			requireLive(t, "bob's session", bobOnB)
			if tc.event.Kind == revocation.KindWorkspace || tc.event.Kind == revocation.KindWorkspaceAgents {
				requireLive(t, "the workspace's other side", sameWorkspace)
			}
		})
	}
}

func requireEndedNow(t *testing.T, what string, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	default:
		t.Fatalf("%s was not ended synchronously", what)
	}
}

// TestRegisterAfterRevocation: a session whose credentials were checked
// before a revocation but that registers after it (the request was in
// flight) is ended at once; one checked after the revocation (the user was
// reactivated) is not, nor one registered after RecentWindow.
func TestRegisterAfterRevocation(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	reg, err := revocation.New(revocation.Options{Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	register := func(s revocation.Session, since time.Time) <-chan struct{} {
		ended := make(chan struct{})
		var once sync.Once
		t.Cleanup(reg.Register(s, since, func() { once.Do(func() { close(ended) }) }))
		return ended
	}
	user := uuid.New()
	checked := clock()
	advance(time.Second)
	if err := reg.Revoke(context.Background(), revocation.User(user)); err != nil {
		t.Fatal(err)
	}
	advance(time.Second)
	requireEndedNow(t, "in-flight registration", register(revocation.Session{Kind: "terminal", UserID: user}, checked))
	requireLive(t, "another user's in-flight session", register(revocation.Session{Kind: "terminal", UserID: uuid.New()}, checked))
	requireLive(t, "session checked after the revocation", register(revocation.Session{Kind: "terminal", UserID: user}, clock()))
	advance(revocation.RecentWindow)
	requireLive(t, "session registered after the window", register(revocation.Session{Kind: "terminal", UserID: user}, checked))
}

// TestRecheckAfterDroppedMessages: when B's pubsub listener loses its
// connection (revocations published meanwhile are lost), B asks Recheck
// about its live sessions and ends those no longer allowed.
func TestRecheckAfterDroppedMessages(t *testing.T) {
	url := dbtestutil.NewDB(t)
	revokedKey := "key-revoked"
	b := replica(t, url, func(_ context.Context, s revocation.Session) (bool, error) {
		return s.APIKeyID != revokedKey, nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	gone := session(t, b, revocation.Session{Kind: "terminal", APIKeyID: revokedKey})
	kept := session(t, b, revocation.Session{Kind: "terminal", APIKeyID: "key-kept"})

	admin := dbtestutil.NewPoolFor(t, url)
	if _, err := admin.Exec(ctx,
		`SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		 WHERE application_name = $1 AND datname = current_database()`,
		pubsub.ApplicationName); err != nil {
		t.Fatal(err)
	}
	awaitEnded(t, "session of the revoked key", gone)
	requireLive(t, "session still allowed", kept)
}
