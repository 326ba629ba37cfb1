package derp_test

import (
	"context"
	"testing"
	"time"

	tsderp "tailscale.com/derp"
	"tailscale.com/derp/derphttp"
	"tailscale.com/net/netmon"
	"tailscale.com/types/key"

	"github.com/wgmesh/coder/derp"
)

// urlClient connects to the relay at base+"/derp" (plain HTTP for an
// http:// base) with priv.
func urlClient(t *testing.T, base string, priv key.NodePrivate, meshKey string) *derphttp.Client {
	t.Helper()
	c, err := derphttp.NewClient(priv, base+"/derp", t.Logf, netmon.NewStatic())
	if err != nil {
		t.Fatal(err)
	}
	if meshKey != "" {
		k, err := key.ParseDERPMesh(meshKey)
		if err != nil {
			t.Fatal(err)
		}
		c.MeshKey = k
	}
	t.Cleanup(func() { _ = c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.Connect(ctx); err != nil {
		t.Fatalf("connect to %s: %v", base, err)
	}
	return c
}

// TestMeshRelaysBetweenReplicas: two relays with the same mesh key follow
// each other; a client homed on A reaches a client homed on B. Both admit
// only known node keys, and mesh peers are admitted by the mesh key
// (their own node keys are unknown to admission).
func TestMeshRelaysBetweenReplicas(t *testing.T) {
	meshKey := derp.NewMeshKey()
	known := &keySet{keys: map[key.NodePublic]bool{}}
	hsA, a := relay(t, false)
	hsB, b := relay(t, false)
	for _, s := range []*derp.Server{a, b} {
		if err := s.AdmitOnly(known.admit); err != nil {
			t.Fatal(err)
		}
		if err := s.SetMeshKey(meshKey); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.SetMeshPeers([]string{hsB.URL}); err != nil {
		t.Fatal(err)
	}
	if err := b.SetMeshPeers([]string{hsA.URL, hsB.URL}); err != nil { // itself: ignored by the watch loop
		t.Fatal(err)
	}

	p1, p2 := key.NewNode(), key.NewNode()
	known.add(p1.Public())
	known.add(p2.Public())
	c1 := urlClient(t, hsA.URL, p1, "")
	c2 := urlClient(t, hsB.URL, p2, "")
	exchange(t, c1, c2, p1, p2)

	// Dropping the peer stops the watch loop.
	if err := a.SetMeshPeers(nil); err != nil {
		t.Fatal(err)
	}
	if got := a.MeshPeers(); len(got) != 0 {
		t.Fatalf("mesh peers after removal: %v", got)
	}
}

// TestMeshKeyRequired: a relay presenting the wrong mesh key is an
// ordinary client with an unknown node key, and is refused.
func TestMeshKeyRequired(t *testing.T) {
	hs, srv := relay(t, false)
	if err := srv.AdmitOnly((&keySet{keys: map[key.NodePublic]bool{}}).admit); err != nil {
		t.Fatal(err)
	}
	if err := srv.SetMeshKey(derp.NewMeshKey()); err != nil {
		t.Fatal(err)
	}
	if err := srv.SetMeshPeers([]string{"ftp://x"}); err == nil {
		t.Fatal("non-http mesh peer accepted")
	}
	rogue := key.NewNode()
	c, err := derphttp.NewClient(rogue, hs.URL+"/derp", t.Logf, netmon.NewStatic())
	if err != nil {
		t.Fatal(err)
	}
	c.MeshKey, _ = key.ParseDERPMesh(derp.NewMeshKey())
	t.Cleanup(func() { _ = c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err = c.Connect(ctx); err == nil {
		if err = c.Send(rogue.Public(), []byte("relay me")); err == nil {
			var m tsderp.ReceivedMessage
			if m, err = c.Recv(); err == nil {
				t.Fatalf("relay admitted a wrong mesh key (got %T)", m)
			}
		}
	}
	t.Logf("wrong mesh key refused: %v", err)
}
