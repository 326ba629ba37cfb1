package tunnel_test

import (
	"testing"

	"github.com/google/uuid"

	"github.com/wgmesh/coder/tunnel"
)

func TestAddressing(t *testing.T) {
	id := uuid.MustParse("8e4e5f0c-7d6b-4c5e-9d3a-1b2c3d4e5f60")
	ip := tunnel.IPFromUUID(id)
	if ip != tunnel.IPFromUUID(id) {
		t.Fatal("IPFromUUID is not stable")
	}
	if !tunnel.TailnetPrefix.Contains(ip) {
		t.Fatalf("%v is outside %v", ip, tunnel.TailnetPrefix)
	}
	if p := tunnel.AgentPrefix(id); p.Bits() != 128 || p.Addr() != ip || p != tunnel.PrefixFromUUID(id) {
		t.Fatalf("AgentPrefix = %v", p)
	}
	if tunnel.IPFromUUID(uuid.New()) == ip {
		t.Fatal("two UUIDs share an address")
	}
	seen := map[string]bool{}
	for range 100 {
		r := tunnel.RandomIP()
		if !tunnel.TailnetPrefix.Contains(r) || seen[r.String()] {
			t.Fatalf("RandomIP = %v (outside prefix or repeated)", r)
		}
		seen[r.String()] = true
	}
}
