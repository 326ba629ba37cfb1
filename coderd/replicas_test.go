package coderd_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/wgmesh/coder/coderd/coderdtest"
	"github.com/wgmesh/coder/coderd/rbac"
	"github.com/wgmesh/coder/coderd/replicasync"
	"github.com/wgmesh/coder/codersdk"
)

// TestReplicasOwnersOnly: GET /api/v2/replicas lists the live replicas
// sharing the database to owners, and to nobody else.
func TestReplicasOwnersOnly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	client, srv := coderdtest.New(t, &coderdtest.Options{Replicas: &replicasync.Options{
		Hostname: "replica-a", RegionID: 999, RelayAddress: "http://10.0.0.1:3000", Version: "v2.0.0", UpdateInterval: time.Hour,
	}})
	coderdtest.CreateFirstUser(t, client)

	// A second replica on the same database.
	other, err := replicasync.New(ctx, nil, srv.DB, nil, replicasync.Options{
		Hostname: "replica-b", RegionID: 999, RelayAddress: "http://10.0.0.2:3000", Version: "v2.0.0", UpdateInterval: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = other.Close() })
	if err := srv.API.Options().Replicas.Sync(ctx); err != nil {
		t.Fatal(err)
	}

	if _, err := codersdk.New(client.URL).Replicas(ctx); !isStatus(err, http.StatusUnauthorized) {
		t.Fatalf("anonymous: %v, want 401", err)
	}
	member, _ := coderdtest.CreateAnotherUser(t, client)
	if _, err := member.Replicas(ctx); !isStatus(err, http.StatusForbidden) {
		t.Fatalf("member: %v, want 403", err)
	}
	admin, _ := coderdtest.CreateAnotherUser(t, client, rbac.RoleTemplateAdmin)
	if _, err := admin.Replicas(ctx); !isStatus(err, http.StatusForbidden) {
		t.Fatalf("template admin: %v, want 403", err)
	}

	got, err := client.Replicas(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("owner sees %d replicas, want 2: %+v", len(got), got)
	}
	byHost := map[string]codersdk.Replica{}
	for _, r := range got {
		byHost[r.Hostname] = r
	}
	a, b := byHost["replica-a"], byHost["replica-b"]
	if a.RelayAddress != "http://10.0.0.1:3000" || b.RelayAddress != "http://10.0.0.2:3000" || a.RegionID != 999 || a.Version != "v2.0.0" || a.StartedAt.IsZero() {
		t.Fatalf("replicas %+v", got)
	}

	// A stopped replica is no longer listed.
	if err := other.Close(); err != nil {
		t.Fatal(err)
	}
	if err := srv.API.Options().Replicas.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	got, err = client.Replicas(ctx)
	if err != nil || len(got) != 1 || got[0].Hostname != "replica-a" {
		t.Fatalf("after B stopped: %+v, %v", got, err)
	}
}

// TestReplicasSingleNode: without registration the list is empty, not an error.
func TestReplicasSingleNode(t *testing.T) {
	t.Parallel()
	client, _ := coderdtest.New(t, nil)
	coderdtest.CreateFirstUser(t, client)
	got, err := client.Replicas(context.Background())
	if err != nil || len(got) != 0 {
		t.Fatalf("single node: %+v, %v", got, err)
	}
}
