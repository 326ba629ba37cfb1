package cli_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/wgmesh/coder/cli"
	"github.com/wgmesh/coder/coderd/coderdtest"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/derp"
)

// TestServerSurvivesEmbeddedPostgresKill runs coder server on its embedded
// PostgreSQL, kills the postmaster with SIGKILL and checks that the server
// restarts the cluster by itself and serves again without a restart of its
// own; the owner's health report covers database, DERP, STUN and the
// built-in provisioner daemon.
func TestServerSurvivesEmbeddedPostgresKill(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	srv, err := cli.StartServer(ctx, cli.ServerConfig{
		HTTPAddress:        "127.0.0.1:0",
		ConfigDir:          filepath.Join(dir, "server"),
		ProvisionerDaemons: 1,
		DERP: cli.DERPConfig{
			ServerEnable: true, RegionID: derp.DefaultRegionID, RegionCode: derp.DefaultRegionCode,
			RegionName: derp.DefaultRegionName, STUNAddresses: []string{"127.0.0.1:0"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close(context.Background()) })
	client := codersdk.New(srv.AccessURL)
	coderdtest.CreateFirstUser(t, client)

	var rep codersdk.HealthReport
	waitFor(t, time.Minute, "a healthy report", func() (bool, error) {
		rep, err = client.DebugHealth(ctx)
		return err == nil && rep.Healthy, err
	})
	if !rep.Database.Reachable || len(rep.DERP.Regions) != 1 || !rep.DERP.Regions[0].Nodes[0].Healthy ||
		!rep.STUN.Enabled || !rep.STUN.Servers[0].Healthy || rep.STUN.Servers[0].MappedAddress == "" ||
		rep.ProvisionerDaemons.Live != 1 {
		t.Fatalf("health report: %+v", rep)
	}

	cluster := srv.EmbeddedPostgres()
	pid, err := cluster.PostmasterPID()
	if err != nil {
		t.Fatal(err)
	}
	_, restarted := cluster.Restarts()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-restarted:
	case <-ctx.Done():
		t.Fatal("the server never restarted its embedded PostgreSQL")
	}
	// Served again by the same server process: the pool reconnected.
	if _, err := client.User(ctx, codersdk.Me); err != nil {
		t.Fatalf("request after the restart: %v", err)
	}
	waitFor(t, time.Minute, "/healthz OK", func() (bool, error) {
		res, err := http.Get(srv.AccessURL.String() + "/healthz")
		if err != nil {
			return false, err
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		return res.StatusCode == http.StatusOK && string(b) == "OK", nil
	})
	waitFor(t, time.Minute, "the built-in daemon live again", func() (bool, error) {
		rep, err := client.DebugHealth(ctx)
		return err == nil && rep.Healthy, err
	})
}
