package derp_test

import (
	"context"
	"net"
	"testing"
	"time"

	"tailscale.com/net/stun"

	"github.com/wgmesh/coder/derp"
)

func TestSTUNAnswersBindingRequest(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, closer, err := derp.ListenSTUN(ctx, "127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = closer.Close() })

	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	// Garbage first: it must be ignored, not kill the server.
	if _, err := c.WriteTo([]byte("not stun"), addr); err != nil {
		t.Fatal(err)
	}
	tx := stun.NewTxID()
	if _, err := c.WriteTo(stun.Request(tx), addr); err != nil {
		t.Fatal(err)
	}
	if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	n, _, err := c.ReadFrom(buf)
	if err != nil {
		t.Fatalf("no STUN reply: %v", err)
	}
	gotTx, mapped, err := stun.ParseResponse(buf[:n])
	if err != nil {
		t.Fatalf("parse reply: %v", err)
	}
	if gotTx != tx {
		t.Fatalf("tx %x, want %x", gotTx, tx)
	}
	local := c.LocalAddr().(*net.UDPAddr).AddrPort()
	if mapped.Addr().Unmap() != local.Addr().Unmap() || mapped.Port() != local.Port() {
		t.Fatalf("mapped address %v, want %v", mapped, local)
	}

	// Close stops answering and is idempotent.
	if err := closer.Close(); err != nil {
		t.Fatal(err)
	}
	if err := closer.Close(); err != nil {
		t.Fatal(err)
	}
}
