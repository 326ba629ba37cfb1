package coordinator_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"
	"go.uber.org/goleak"
	"tailscale.com/tailcfg"

	"github.com/wgmesh/coder/coordinator"
)

// barrier makes p receive a known frame (an error about a self tunnel) and
// checks it is the next frame: everything queued for p before it must have
// arrived already, so nothing unexpected was queued.
func barrier(p *peer) {
	p.t.Helper()
	p.addTunnel(p.id)
	p.expectError("not authorized")
}

func allowAll() coordinator.TunnelAuth {
	return coordinator.TunnelAuthFunc(func(context.Context, uuid.UUID, uuid.UUID) error { return nil })
}

func TestFanOutOnlyToTunnelPeers(t *testing.T) {
	eachImpl(t, func(t *testing.T, impl coordImpl) {
		s := newServerWith(t, impl.new(t, coordinator.InMemoryOptions{}))
		a, b, c := uuid.New(), uuid.New(), uuid.New()
		s.setAuth(a, coordinator.AllowTunnelsTo(b))

		pb := s.dial(t, b)
		pb.updateSelf(node("b1"))
		pc := s.dial(t, c)
		pc.updateSelf(node("c1"))
		pa := s.dial(t, a)
		pa.updateSelf(node("a1"))

		pa.addTunnel(b)
		pa.expectUpdate(b, coordinator.KindNode, node("b1")) // src learns dst
		pb.expectUpdate(a, coordinator.KindNode, node("a1")) // dst learns src

		// Latest node wins and reaches only the tunnel peer, in both directions.
		pa.updateSelf(node("a2"))
		pb.expectUpdate(a, coordinator.KindNode, node("a2"))
		pb.updateSelf(node("b2"))
		pa.expectUpdate(b, coordinator.KindNode, node("b2"))
		barrier(pc) // c heard nothing about a or b
		pc.updateSelf(node("c2"))
		barrier(pa)
		barrier(pb)

		// Removing the tunnel tells both sides, and stops the fan-out.
		pa.removeTunnel(b)
		pa.expectUpdate(b, coordinator.KindDisconnected, "")
		pb.expectUpdate(a, coordinator.KindDisconnected, "")
		pa.updateSelf(node("a3"))
		barrier(pa)
		barrier(pb)
	})
}

func TestUnauthorizedTunnelLeaksNothing(t *testing.T) {
	eachImpl(t, func(t *testing.T, impl coordImpl) {
		s := newServerWith(t, impl.new(t, coordinator.InMemoryOptions{}))
		client, agent, other := uuid.New(), uuid.New(), uuid.New()
		s.setAuth(client, coordinator.AllowTunnelsTo(agent))
		// agents get no auth at all: they may not add tunnels.

		po := s.dial(t, other)
		po.updateSelf(node("other"))
		pc := s.dial(t, client)
		pc.updateSelf(node("client"))
		pg := s.dial(t, agent)
		pg.updateSelf(node("agent"))

		pc.addTunnel(other)
		pc.expectError("not authorized")
		pg.addTunnel(client) // agent trying to reach the client
		pg.expectError("not authorized")

		po.updateSelf(node("other2"))
		pc.updateSelf(node("client2"))
		barrier(po) // other never learned the client's node
		barrier(pc) // the client never learned other's node
		barrier(pg) // the agent never learned the client's node

		// The allowed tunnel still works on the same sockets.
		pc.addTunnel(agent)
		pc.expectUpdate(agent, coordinator.KindNode, node("agent"))
		pg.expectUpdate(client, coordinator.KindNode, node("client2"))
	})
}

func TestLostDisconnectedAndResume(t *testing.T) {
	eachImpl(t, func(t *testing.T, impl coordImpl) {
		s := newServerWith(t, impl.new(t, coordinator.InMemoryOptions{}))
		client, agent := uuid.New(), uuid.New()
		s.setAuth(client, allowAll())

		pg := s.dial(t, agent)
		pg.updateSelf(node("agent1"))
		pc := s.dial(t, client)
		pc.updateSelf(node("client1"))
		pc.addTunnel(agent)
		pc.expectUpdate(agent, coordinator.KindNode, node("agent1"))
		pg.expectUpdate(client, coordinator.KindNode, node("client1"))

		// The agent's socket drops without a goodbye: lost.
		_ = pg.ws.CloseNow()
		pc.expectUpdate(agent, coordinator.KindLost, "")

		// It comes back with the same ID: it immediately learns the client's
		// node (the client's tunnel survived), and its new node reaches the client.
		pg2 := s.dial(t, agent)
		pg2.expectUpdate(client, coordinator.KindNode, node("client1"))
		pg2.updateSelf(node("agent2"))
		pc.expectUpdate(agent, coordinator.KindNode, node("agent2"))

		// The client drops and resumes: its tunnels were kept, so without
		// re-adding them it learns the agent's node again.
		_ = pc.ws.CloseNow()
		pg2.expectUpdate(client, coordinator.KindLost, "")
		pc2 := s.dial(t, client)
		pc2.expectUpdate(agent, coordinator.KindNode, node("agent2"))
		pc2.updateSelf(node("client2"))
		pg2.expectUpdate(client, coordinator.KindNode, node("client2"))

		// A clean goodbye: disconnected, and the server side ends without error.
		ended := s.endedChan(agent)
		pg2.send(coordinator.Envelope{Type: coordinator.TypeDisconnect})
		pc2.expectUpdate(agent, coordinator.KindDisconnected, "")
		code, _ := pg2.expectClosed()
		if code != websocket.StatusNormalClosure {
			t.Fatalf("goodbye closed with %v", code)
		}
		// the first registration ended as lost (an error), the second cleanly
		for i := 0; ; i++ {
			err := <-ended
			if err == nil {
				break
			}
			if i > 0 {
				t.Fatalf("unexpected serve results, last %v", err)
			}
		}
	})
}

func TestSameIDReplacesConnection(t *testing.T) {
	eachImpl(t, func(t *testing.T, impl coordImpl) {
		s := newServerWith(t, impl.new(t, coordinator.InMemoryOptions{}))
		client, agent := uuid.New(), uuid.New()
		s.setAuth(client, allowAll())
		pg := s.dial(t, agent)
		pg.updateSelf(node("agent"))
		pc := s.dial(t, client)
		pc.addTunnel(agent)
		pc.expectUpdate(agent, coordinator.KindNode, node("agent"))

		pg2 := s.dial(t, agent) // same ID while the first is still up
		code, reason := pg.expectClosed()
		if code != websocket.StatusTryAgainLater || reason == "" {
			t.Fatalf("replaced socket closed with %v %q", code, reason)
		}
		pg2.updateSelf(node("agent-new"))
		// The client saw no lost/disconnected for the swap, only the new node.
		pc.expectUpdate(agent, coordinator.KindNode, node("agent-new"))
	})
}

func TestMalformedFramesCloseOnlyThatSocket(t *testing.T) {
	eachImpl(t, func(t *testing.T, impl coordImpl) {
		big := `{"version":1,"type":"update_self","node":"` + strings.Repeat("x", coordinator.MaxMessageSize) + `"}`
		tests := []struct {
			name   string
			typ    websocket.MessageType
			data   string
			code   websocket.StatusCode
			reason string
		}{
			{"garbage", websocket.MessageText, "{not json", websocket.StatusInvalidFramePayloadData, "decode frame"},
			{"unknown version", websocket.MessageText, `{"version":2,"type":"update_self","node":{}}`, websocket.StatusPolicyViolation, "unknown protocol version 2"},
			{"unknown type", websocket.MessageText, `{"version":1,"type":"take_over"}`, websocket.StatusInvalidFramePayloadData, "unknown frame type"},
			{"coordinator type from peer", websocket.MessageText, `{"version":1,"type":"peer_update","updates":[]}`, websocket.StatusPolicyViolation, "may not send"},
			{"missing dst", websocket.MessageText, `{"version":1,"type":"add_tunnel"}`, websocket.StatusInvalidFramePayloadData, "without dst"},
			{"binary", websocket.MessageBinary, `{"version":1,"type":"disconnect"}`, websocket.StatusUnsupportedData, "binary"},
			{"oversized", websocket.MessageText, big, websocket.StatusMessageTooBig, "read limited"},
		}
		s := newServerWith(t, impl.new(t, coordinator.InMemoryOptions{}))
		client, agent := uuid.New(), uuid.New()
		s.setAuth(client, allowAll())
		pg := s.dial(t, agent)
		pg.updateSelf(node("agent"))
		pc := s.dial(t, client)
		pc.updateSelf(node("client"))
		pc.addTunnel(agent)
		pc.expectUpdate(agent, coordinator.KindNode, node("agent"))
		pg.expectUpdate(client, coordinator.KindNode, node("client"))

		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				bad := uuid.New()
				s.setAuth(bad, allowAll())
				pb := s.dial(t, bad)
				pb.updateSelf(node("bad"))
				pb.addTunnel(agent)
				pb.expectUpdate(agent, coordinator.KindNode, node("agent"))
				pg.expectUpdate(bad, coordinator.KindNode, node("bad"))

				pb.sendRaw(tt.typ, []byte(tt.data))
				code, reason := pb.expectClosed()
				if code != tt.code || !strings.Contains(reason, tt.reason) {
					t.Fatalf("closed with %v %q, want %v containing %q", code, reason, tt.code, tt.reason)
				}
				// Its tunnel peer learns it is lost; everybody else carries on.
				pg.expectUpdate(bad, coordinator.KindLost, "")
				pc.updateSelf(node("client-" + tt.name))
				pg.expectUpdate(client, coordinator.KindNode, node("client-"+tt.name))
				pg.updateSelf(node("agent"))
				pc.expectUpdate(agent, coordinator.KindNode, node("agent"))
			})
		}
	})
}

func TestDERPMapPushed(t *testing.T) {
	eachImpl(t, func(t *testing.T, impl coordImpl) {
		s := newServerWith(t, impl.new(t, coordinator.InMemoryOptions{}))
		m1 := &tailcfg.DERPMap{OmitDefaultRegions: true, Regions: map[int]*tailcfg.DERPRegion{1: {RegionID: 1, RegionCode: "one"}}}
		s.maps.Set(m1)
		p := s.dial(t, uuid.New())
		expectMap := func(code string) {
			t.Helper()
			env, ok := <-p.frames
			for ok && env.Snapshot {
				env, ok = <-p.frames
			}
			if !ok || env.Type != coordinator.TypeDERPMap || env.DERPMap.Regions[1] == nil || env.DERPMap.Regions[1].RegionCode != code {
				t.Fatalf("got %v, want DERP map with region code %q", env, code)
			}
		}
		expectMap("one")
		s.maps.Set(&tailcfg.DERPMap{OmitDefaultRegions: true, Regions: map[int]*tailcfg.DERPRegion{1: {RegionID: 1, RegionCode: "two"}}})
		expectMap("two")
	})
}

// TestSlowPeerIsDropped uses the Coordinator interface directly: a peer
// that never reads its responses is dropped once its queue is full, and the
// others never block.
func TestSlowPeerIsDropped(t *testing.T) {
	eachImpl(t, func(t *testing.T, impl coordImpl) {
		if impl.name == "inmemory" {
			defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
		}
		coord := impl.new(t, coordinator.InMemoryOptions{QueueSize: 4})
		defer coord.Close()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		fast, slow := uuid.New(), uuid.New()

		slowReqs, slowResps := coord.Coordinate(ctx, slow, "slow", nil)
		defer close(slowReqs)
		fastReqs, fastResps := coord.Coordinate(ctx, fast, "fast", allowAll())
		defer close(fastReqs)

		fastReqs <- &coordinator.Request{Type: coordinator.TypeAddTunnel, Dst: slow}
		// The fast peer keeps publishing new nodes until it learns the
		// slow one is lost (a coordinator may coalesce updates, so how
		// many it takes is its business; the request queue paces it).
		deadline := time.After(waitFor)
		for i := 0; ; i++ {
			select {
			case fastReqs <- &coordinator.Request{Type: coordinator.TypeUpdateSelf, Node: json.RawMessage(node(fmt.Sprintf("fast%d", i)))}:
			case <-deadline:
				t.Fatal("the slow peer was never dropped")
			}
			lost := false
			for drained := false; !drained && !lost; {
				select {
				case r := <-fastResps:
					// (A snapshot lists a peer without a node as lost: not a drop.)
					lost = !r.Snapshot && len(r.Updates) == 1 && r.Updates[0].ID == slow && r.Updates[0].Kind == coordinator.KindLost
				default:
					drained = true
				}
			}
			if lost {
				break
			}
		}
		// ...and the slow peer's queue was closed after at most QueueSize items.
		n := 0
		for range slowResps {
			n++
		}
		if n > 4 {
			t.Fatalf("slow peer got %d responses, queue is 4", n)
		}
	})
}

func TestCloseEndsEveryone(t *testing.T) {
	eachImpl(t, func(t *testing.T, impl coordImpl) {
		if impl.name == "inmemory" {
			defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
		}
		coord := impl.new(t, coordinator.InMemoryOptions{})
		ctx := context.Background()
		var resps []<-chan *coordinator.Response
		for range 3 {
			_, r := coord.Coordinate(ctx, uuid.New(), "p", nil)
			resps = append(resps, r)
		}
		if err := coord.Close(); err != nil {
			t.Fatal(err)
		}
		for _, r := range resps {
			for range r {
			}
		}
		// Registering after Close yields a closed response channel.
		_, r := coord.Coordinate(ctx, uuid.New(), "late", nil)
		if _, ok := <-r; ok {
			t.Fatal("response after Close")
		}
		if err := coord.Close(); err != nil {
			t.Fatal(errors.New("second Close failed"))
		}
	})
}
