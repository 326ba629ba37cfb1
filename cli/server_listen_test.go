package cli_test

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wgmesh/coder/cli"
	"github.com/wgmesh/coder/database/dbtestutil"
)

// TestServerHTTPAddresses: a comma-separated --http-address gets one listener
// per address (e.g. loopback plus the Docker bridge), all serving the same
// coderd; the first one makes the default access URL. An address that
// cannot be bound fails the start and releases the others.
func TestServerHTTPAddresses(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv, err := cli.StartServer(ctx, cli.ServerConfig{
		HTTPAddress: "127.0.0.1:0, 127.0.0.2:0",
		PostgresURL: dbtestutil.NewDB(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = srv.Close(cctx)
	})
	if len(srv.HTTPAddrs) != 2 || srv.HTTPAddr.String() != srv.HTTPAddrs[0].String() {
		t.Fatalf("listeners %v (first %v)", srv.HTTPAddrs, srv.HTTPAddr)
	}
	if want := "http://" + srv.HTTPAddrs[0].String(); srv.AccessURL.String() != want {
		t.Fatalf("access URL %s, want %s", srv.AccessURL, want)
	}
	for i, addr := range srv.HTTPAddrs {
		if want := []string{"127.0.0.1", "127.0.0.2"}[i]; !strings.HasPrefix(addr.String(), want+":") {
			t.Fatalf("listener %d on %s, want %s", i, addr, want)
		}
		resp, err := http.Get("http://" + addr.String() + "/api/v2/buildinfo")
		if err != nil {
			t.Fatalf("listener %s: %v", addr, err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("listener %s: status %d", addr, resp.StatusCode)
		}
	}

	// A taken address: the start fails, naming it, and the first listener is closed again.
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	freeAddr := free.Addr().String()
	_ = free.Close()
	_, err = cli.StartServer(ctx, cli.ServerConfig{HTTPAddress: freeAddr + "," + taken.Addr().String(), PostgresURL: dbtestutil.NewDB(t)})
	if err == nil || !strings.Contains(err.Error(), "listen on "+taken.Addr().String()) {
		t.Fatalf("start with a taken address: %v", err)
	}
	if l, err := net.Listen("tcp", freeAddr); err != nil {
		t.Fatalf("the first listener was not released: %v", err)
	} else {
		_ = l.Close()
	}
	if _, err := cli.StartServer(ctx, cli.ServerConfig{HTTPAddress: " , ", PostgresURL: dbtestutil.NewDB(t)}); err == nil || !strings.Contains(err.Error(), "no HTTP address") {
		t.Fatalf("start with no address: %v", err)
	}
}
