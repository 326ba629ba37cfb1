package cli_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/wgmesh/coder/cli"
	"github.com/wgmesh/coder/database/dbtestutil"
	"github.com/wgmesh/coder/derp"
)

// TestServerSTUNDefaultListenAddress: unless STUN addresses are configured,
// STUN listens on the standard port of the HTTP server's host only (not on
// every interface); configured addresses win, and an empty list disables
// STUN.
func TestServerSTUNDefaultListenAddress(t *testing.T) {
	t.Parallel()
	// A loopback address of its own, so the fixed STUN port does not clash
	// with other tests.
	host := fmt.Sprintf("127.%d.%d.%d", 1+rand.N(250), 1+rand.N(250), 1+rand.N(250))
	start := func(t *testing.T, stun []string) *cli.Server {
		t.Helper()
		srv, err := cli.StartServer(context.Background(), cli.ServerConfig{
			HTTPAddress: host + ":0",
			PostgresURL: dbtestutil.NewDB(t),
			DERP: cli.DERPConfig{
				ServerEnable: true, RegionID: derp.DefaultRegionID, RegionCode: derp.DefaultRegionCode, RegionName: derp.DefaultRegionName,
				STUNAddresses: stun,
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_ = srv.Close(cctx)
		})
		return srv
	}

	t.Run("DefaultFollowsHTTP", func(t *testing.T) {
		srv := start(t, nil)
		want := net.JoinHostPort(host, strconv.Itoa(derp.DefaultSTUNPort))
		if len(srv.STUNAddrs) != 1 || srv.STUNAddrs[0].String() != want {
			t.Fatalf("STUN bound to %v, want only %s (the HTTP host)", srv.STUNAddrs, want)
		}
	})
	t.Run("Configured", func(t *testing.T) {
		srv := start(t, []string{"127.0.0.1:0"})
		if len(srv.STUNAddrs) != 1 {
			t.Fatalf("STUN bound to %v, want one listener", srv.STUNAddrs)
		}
		if h, _, _ := net.SplitHostPort(srv.STUNAddrs[0].String()); h != "127.0.0.1" {
			t.Fatalf("STUN bound to %v, want the configured 127.0.0.1", srv.STUNAddrs)
		}
	})
	t.Run("Disabled", func(t *testing.T) {
		srv := start(t, []string{})
		if len(srv.STUNAddrs) != 0 {
			t.Fatalf("STUN bound to %v with an empty list", srv.STUNAddrs)
		}
	})
}
