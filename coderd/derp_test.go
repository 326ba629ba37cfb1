package coderd_test

import (
	"context"
	"net/http"
	"testing"

	"tailscale.com/types/key"

	"github.com/wgmesh/coder/coderd"
	"github.com/wgmesh/coder/coderd/coderdtest"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/derp"
)

func TestEmbeddedDERPAndMap(t *testing.T) {
	t.Parallel()
	srv := derp.NewServer(nil, key.NodePrivate{})
	t.Cleanup(func() { _ = srv.Close() })
	client, api := coderdtest.New(t, &coderdtest.Options{API: coderd.Options{Agents: coderd.AgentOptions{DERPServer: srv}}})
	ctx := context.Background()

	// The relay answers latency probes without authentication.
	res, err := client.Request(ctx, http.MethodGet, "/derp/latency-check", nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("latency-check: %d", res.StatusCode)
	}
	// The DERP map needs a session.
	if _, err := client.DERPMap(ctx); err == nil {
		t.Fatal("anonymous DERP map")
	} else if apiErr, ok := codersdk.AsError(err); !ok || apiErr.StatusCode() != http.StatusUnauthorized {
		t.Fatalf("anonymous DERP map: %v", err)
	}
	coderdtest.CreateFirstUser(t, client)
	member, _ := coderdtest.CreateAnotherUser(t, client)
	m, err := member.DERPMap(ctx)
	if err != nil {
		t.Fatal(err)
	}
	region := m.Regions[derp.DefaultRegionID]
	if region == nil || len(region.Nodes) == 0 || region.Nodes[0].HostName != api.URL.Hostname() {
		t.Fatalf("map without the embedded region at the access URL: %+v", m)
	}
	if !m.OmitDefaultRegions {
		t.Fatal("map does not omit Tailscale's default regions")
	}
}
