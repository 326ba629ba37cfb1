package derp_test

import (
	"context"
	"sync"
	"testing"
	"time"

	tsderp "tailscale.com/derp"
	"tailscale.com/derp/derphttp"
	"tailscale.com/net/netmon"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"
)

// keySet is a minimal admission source: keys added by the test.
type keySet struct {
	mu   sync.Mutex
	keys map[key.NodePublic]bool
}

func (s *keySet) add(k key.NodePublic) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys[k] = true
}

func (s *keySet) admit(_ context.Context, k key.NodePublic) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.keys[k]
}

// TestRelayAdmitsOnlyKnownKeys: with AdmitOnly, a client with a random key
// is refused (the open-relay attack) while clients whose keys are known
// relay packets to each other.
func TestRelayAdmitsOnlyKnownKeys(t *testing.T) {
	hs, srv := relay(t, true)
	known := &keySet{keys: map[key.NodePublic]bool{}}
	if err := srv.AdmitOnly(known.admit); err != nil {
		t.Fatal(err)
	}
	if err := srv.AdmitOnly(known.admit); err == nil {
		t.Fatal("second AdmitOnly accepted")
	}
	region := embeddedRegion(t, hs)

	// Attack: a random key.
	stranger := key.NewNode()
	c := derphttp.NewRegionClient(stranger, t.Logf, netmon.NewStatic(), func() *tailcfg.DERPRegion { return region })
	t.Cleanup(func() { _ = c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := c.Connect(ctx)
	if err == nil {
		// The refusal shows on the first read; an admitted client would
		// get its own packet back instead.
		if err = c.Send(stranger.Public(), []byte("relay me")); err == nil {
			var m tsderp.ReceivedMessage
			if m, err = c.Recv(); err == nil {
				t.Fatalf("relay admitted an unknown node key (got %T)", m)
			}
		}
	}
	t.Logf("unknown key refused: %v", err)

	// Legitimate: known keys connect and relay.
	aPriv, bPriv := key.NewNode(), key.NewNode()
	known.add(aPriv.Public())
	known.add(bPriv.Public())
	connect := func(priv key.NodePrivate) *derphttp.Client {
		c := derphttp.NewRegionClient(priv, t.Logf, netmon.NewStatic(), func() *tailcfg.DERPRegion { return region })
		t.Cleanup(func() { _ = c.Close() })
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := c.Connect(ctx); err != nil {
			t.Fatalf("known key refused: %v", err)
		}
		return c
	}
	a, b := connect(aPriv), connect(bPriv)
	exchange(t, a, b, aPriv, bPriv)
}
