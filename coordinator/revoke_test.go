package coordinator_test

import (
	"context"
	"testing"

	"github.com/coder/websocket"
	"github.com/google/uuid"

	"github.com/wgmesh/coder/coordinator"
)

// TestDisconnectRemovesPeerAndTunnels: a revoked client is removed as if it
// had said goodbye, whether its socket is still up or not: the agent learns
// "disconnected" (not "lost", which would keep the WireGuard session), the
// client's live socket is closed, and its tunnels are gone, so a
// registration under the same ID starts with nothing.
func TestDisconnectRemovesPeerAndTunnels(t *testing.T) {
	for _, tc := range []struct {
		name string
		// revoke ends the client's socket before Disconnect (as coderd
		// does) or leaves it to Disconnect.
		cancelFirst bool
	}{
		{"socket cancelled as revoked", true},
		{"socket still up", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(t, coordinator.InMemoryOptions{})
			client, agent, bystander := uuid.New(), uuid.New(), uuid.New()
			s.setAuth(client, allowAll())
			s.setAuth(bystander, allowAll())

			pg := s.dial(t, agent)
			pg.updateSelf(node("agent"))
			pc := s.dial(t, client)
			pc.updateSelf(node("client"))
			pc.addTunnel(agent)
			pc.expectUpdate(agent, coordinator.KindNode, node("agent"))
			pg.expectUpdate(client, coordinator.KindNode, node("client"))
			// Another user's client of the same agent stays.
			pb := s.dial(t, bystander)
			pb.updateSelf(node("bystander"))
			pb.addTunnel(agent)
			pb.expectUpdate(agent, coordinator.KindNode, node("agent"))
			pg.expectUpdate(bystander, coordinator.KindNode, node("bystander"))

			if tc.cancelFirst {
				s.cancelPeer(client, coordinator.ErrRevoked)
				code, reason := pc.expectClosed()
				if code != websocket.StatusPolicyViolation || reason != "access revoked" {
					t.Fatalf("revoked socket closed with %v %q", code, reason)
				}
				pg.expectUpdate(client, coordinator.KindLost, "")
			}
			ctx, cancel := context.WithTimeout(context.Background(), waitFor)
			defer cancel()
			if err := coordinator.Disconnect(ctx, s.coord, client); err != nil {
				t.Fatal(err)
			}
			pg.expectUpdate(client, coordinator.KindDisconnected, "")
			if !tc.cancelFirst {
				if code, _ := pc.expectClosed(); code != websocket.StatusTryAgainLater {
					t.Fatalf("replaced socket closed with %v", code)
				}
			}

			// The tunnel is gone: a new registration of the client learns
			// nothing about the agent and the agent hears nothing of it.
			pc2 := s.dial(t, client)
			barrier(pc2)
			pc2.updateSelf(node("client2"))
			barrier(pg)
			// The bystander's tunnel works as before.
			pg.updateSelf(node("agent2"))
			pb.expectUpdate(agent, coordinator.KindNode, node("agent2"))
		})
	}
}
