package coderd_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/wgmesh/coder/coderd"
	"github.com/wgmesh/coder/coderd/coderdtest"
	"github.com/wgmesh/coder/coderd/rbac"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/database"
	"github.com/wgmesh/coder/database/embeddedpg"
)

// get returns the status and body of GET u.
func get(t *testing.T, u string) (int, string) {
	t.Helper()
	res, err := http.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, string(b)
}

// awaitStatus polls GET u until it answers want.
func awaitStatus(t *testing.T, ctx context.Context, u string, want int) string {
	t.Helper()
	for {
		code, body := get(t, u)
		if code == want {
			return body
		}
		select {
		case <-ctx.Done():
			t.Fatalf("GET %s never answered %d (last %d %q)", u, want, code, body)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// TestHealthzReflectsDatabase: /healthz answers 503 with a reason while the
// database is down (here: a real cluster stopped under a running coderd),
// API requests answer 503 "database unavailable" instead of a 500 carrying
// driver text, and both recover without restarting coderd.
func TestHealthzReflectsDatabase(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	dataDir := filepath.Join(dir, "pg")
	cluster, err := embeddedpg.Start(ctx, embeddedpg.Options{DataDir: dataDir, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	running := cluster
	t.Cleanup(func() { _ = running.Stop(context.Background()) })
	if err := database.Migrate(ctx, cluster.URL()); err != nil {
		t.Fatal(err)
	}
	pool, err := database.Open(ctx, cluster.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)

	srv := httptest.NewServer(nil)
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	api, err := coderd.New(coderd.Options{Database: database.NewStore(pool), AccessURL: u})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = api.Close() })
	srv.Config.Handler = api.Handler()

	if code, body := get(t, srv.URL+"/healthz"); code != http.StatusOK || body != "OK" {
		t.Fatalf("healthz with the database up: %d %q", code, body)
	}

	if err := cluster.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if body := awaitStatus(t, ctx, srv.URL+"/healthz", http.StatusServiceUnavailable); body != "database unreachable" {
		t.Fatalf("healthz reason %q", body)
	}
	code, body := get(t, srv.URL+"/api/v2/users/first")
	var resp codersdk.Response
	if err := json.Unmarshal([]byte(body), &resp); err != nil || code != http.StatusServiceUnavailable || resp.Message != "The database is unavailable." {
		t.Fatalf("API request while the database is down: %d %s", code, body)
	}

	running, err = embeddedpg.Start(ctx, embeddedpg.Options{DataDir: dataDir, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if running.URL() != cluster.URL() {
		t.Fatalf("cluster came back at %s, want %s", running.URL(), cluster.URL())
	}
	if body := awaitStatus(t, ctx, srv.URL+"/healthz", http.StatusOK); body != "OK" {
		t.Fatalf("healthz after recovery %q", body)
	}
	// The same pool serves requests again.
	awaitStatus(t, ctx, srv.URL+"/api/v2/users/first", http.StatusNotFound)
}

// TestDebugHealthOwnersOnly: the health report is for owners; it reports
// each section with a verdict.
func TestDebugHealthOwnersOnly(t *testing.T) {
	t.Parallel()
	client, _ := coderdtest.New(t, nil)
	coderdtest.CreateFirstUser(t, client)
	ctx := context.Background()

	anon := codersdk.New(client.URL)
	if _, err := anon.DebugHealth(ctx); !isStatus(err, http.StatusUnauthorized) {
		t.Fatalf("anonymous: %v, want 401", err)
	}
	member, _ := coderdtest.CreateAnotherUser(t, client)
	if _, err := member.DebugHealth(ctx); !isStatus(err, http.StatusForbidden) {
		t.Fatalf("member: %v, want 403", err)
	}
	admin, _ := coderdtest.CreateAnotherUser(t, client, rbac.RoleTemplateAdmin)
	if _, err := admin.DebugHealth(ctx); !isStatus(err, http.StatusForbidden) {
		t.Fatalf("template admin: %v, want 403", err)
	}

	rep, err := client.DebugHealth(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Database.Healthy || !rep.Database.Reachable || rep.Database.LatencyMS <= 0 {
		t.Fatalf("database section %+v", rep.Database)
	}
	// This coderd has no DERP relay and no provisioner daemon: both
	// sections say so, and the report names them.
	if rep.DERP.Healthy || rep.DERP.Error == "" {
		t.Fatalf("DERP section without a DERP map: %+v", rep.DERP)
	}
	if rep.ProvisionerDaemons.Healthy || rep.ProvisionerDaemons.Error == "" {
		t.Fatalf("provisioner section without daemons: %+v", rep.ProvisionerDaemons)
	}
	if rep.Healthy || rep.Severity != codersdk.HealthSeverityError {
		t.Fatalf("report healthy=%v severity=%s", rep.Healthy, rep.Severity)
	}
	want := map[string]bool{"derp": true, "provisioner_daemons": true}
	for _, s := range rep.FailingSections {
		if !want[s] {
			t.Fatalf("failing sections %v", rep.FailingSections)
		}
		delete(want, s)
	}
	if len(want) != 0 {
		t.Fatalf("failing sections %v lack %v", rep.FailingSections, want)
	}
}

func isStatus(err error, code int) bool {
	apiErr, ok := codersdk.AsError(err)
	return ok && apiErr.StatusCode() == code
}
