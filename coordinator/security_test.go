package coordinator_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"
	"tailscale.com/types/key"

	"github.com/wgmesh/coder/coordinator"
	"github.com/wgmesh/coder/tunnel"
)

// TestSpoofedAddressRefused: a peer (rogue agent or rogue client) that
// announces another agent's tailnet address is disconnected and its node
// never reaches anybody; the victim's node is untouched.
func TestSpoofedAddressRefused(t *testing.T) {
	victimAddr := func(victim uuid.UUID) string { return tunnel.AgentPrefix(victim).String() }
	tests := []struct {
		name string
		node func(victim, rogue uuid.UUID) string
	}{
		{"no address", func(_, _ uuid.UUID) string { return `{"name":"rogue"}` }},
		{"address of another agent", func(v, _ uuid.UUID) string {
			return `{"name":"rogue","addresses":["` + victimAddr(v) + `"]}`
		}},
		{"allowed IPs of another agent", func(v, _ uuid.UUID) string {
			return `{"name":"rogue","allowed_ips":["` + victimAddr(v) + `"]}`
		}},
		{"whole tailnet as allowed IPs", func(_, _ uuid.UUID) string {
			return `{"name":"rogue","allowed_ips":["` + tunnel.TailnetPrefix.String() + `"]}`
		}},
		{"own and another address", func(v, r uuid.UUID) string {
			return `{"name":"rogue","addresses":["` + tunnel.PrefixFromUUID(r).String() + `","` + victimAddr(v) + `"]}`
		}},
	}
	for _, rogueRole := range []string{"agent", "client"} {
		for _, tt := range tests {
			t.Run(rogueRole+"/"+tt.name, func(t *testing.T) {
				s := newServer(t, coordinator.InMemoryOptions{})
				client, victim, rogue := uuid.New(), uuid.New(), uuid.New()
				// coderd's shared proxy connection: tunnels to both agents.
				s.setAuth(client, allowAll())
				if rogueRole == "client" {
					s.setAuth(rogue, coordinator.AllowTunnelsTo(victim))
				}
				pv := s.dial(t, victim)
				pv.updateSelf(node("victim"))
				pc := s.dial(t, client)
				pc.updateSelf(node("proxy"))
				pc.addTunnel(victim)
				pc.expectUpdate(victim, coordinator.KindNode, node("victim"))
				pv.expectUpdate(client, coordinator.KindNode, node("proxy"))

				pr := s.dial(t, rogue)
				switch rogueRole {
				case "agent":
					pc.addTunnel(rogue)
				case "client":
					pr.addTunnel(victim)
					pr.expectUpdate(victim, coordinator.KindNode, node("victim"))
				}
				// The spoofed node, sent raw (updateSelf would add the
				// rogue's own address).
				pr.send(coordinator.Envelope{Type: coordinator.TypeUpdateSelf, Node: []byte(tt.node(victim, rogue))})
				code, reason := pr.expectClosedIgnoring(coordinator.TypePeerUpdate)
				if code != websocket.StatusPolicyViolation || !strings.Contains(reason, "node refused") {
					t.Fatalf("spoofing peer closed with %v %q, want policy violation about its address", code, reason)
				}
				// Nobody heard the spoofed node: the next frames the proxy
				// and the victim get are the barrier's.
				if rogueRole == "client" {
					pv.expectUpdate(rogue, coordinator.KindLost, "")
				} else {
					pc.expectUpdate(rogue, coordinator.KindLost, "")
				}
				barrier(pc)
				barrier(pv)
				// The victim keeps its address: its next node still reaches
				// the proxy.
				pv.updateSelf(node("victim2"))
				pc.expectUpdate(victim, coordinator.KindNode, node("victim2"))
			})
		}
	}
}

// TestNodeKeysTrackRegistrations: the relay's admission set holds a peer's
// key from the moment it connects with node_key until its socket ends, and
// a key held by one peer cannot be claimed by another.
func TestNodeKeysTrackRegistrations(t *testing.T) {
	s := newServer(t, coordinator.InMemoryOptions{})
	agent := uuid.New()
	k := key.NewNode().Public()
	text, err := k.MarshalText()
	if err != nil {
		t.Fatal(err)
	}
	if s.keys.Known(k) {
		t.Fatal("key known before any registration")
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, s.url(agent)+"&node_key="+string(text), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !s.keys.Await(ctx, k) {
		t.Fatal("key not registered while the peer is connected")
	}

	// Another peer announcing that key in its node is disconnected.
	thief := s.dial(t, uuid.New())
	thief.updateSelf(`{"name":"thief","key":"` + string(text) + `"}`)
	code, reason := thief.expectClosed()
	if code != websocket.StatusPolicyViolation || !strings.Contains(reason, "registered by another") {
		t.Fatalf("key thief closed with %v %q", code, reason)
	}
	// Connecting with it is refused as well.
	thiefID := uuid.New()
	ws2, _, err := websocket.Dial(ctx, s.url(thiefID)+"&node_key="+string(text), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = ws2.Read(ctx)
	if websocket.CloseStatus(err) != websocket.StatusPolicyViolation {
		t.Fatalf("second holder of a key: read = %v, want policy violation", err)
	}
	// A node with a key other than the one it connected with is refused.
	ws3, _, err := websocket.Dial(ctx, s.url(agent)+"&node_key="+string(text), nil)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := key.NewNode().Public().MarshalText()
	if err := ws3.Write(ctx, websocket.MessageText, []byte(`{"version":1,"type":"update_self","node":{"key":"`+string(other)+`","addresses":["`+tunnel.AgentPrefix(agent).String()+`"]}}`)); err != nil {
		t.Fatal(err)
	}
	for {
		_, _, err = ws3.Read(ctx)
		if err != nil {
			break
		}
	}
	if websocket.CloseStatus(err) != websocket.StatusPolicyViolation {
		t.Fatalf("node with a different key: read = %v, want policy violation", err)
	}

	// The owner leaves: the key is forgotten.
	_ = ws.Close(websocket.StatusNormalClosure, "")
	<-s.endedChan(agent)
	<-s.endedChan(agent)
	// Both of the agent's sockets have ended (ServeWebsocket returned, and
	// it releases the key before returning).
	if s.keys.Known(k) {
		t.Fatal("key still known after its peer left")
	}
}

// fakeClock is a manually advanced clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// TestFloodingPeerDisconnected: a peer sending frames faster than its rate
// limit is disconnected with a reason; its tunnel peers learn it is lost;
// a peer within the limit is unaffected.
func TestFloodingPeerDisconnected(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	const burst = 10
	s := newServer(t, coordinator.InMemoryOptions{})
	s.tweak = func(o *coordinator.ServeOptions) {
		o.RateLimit, o.RateBurst = 2, burst
		*o = coordinator.WithClock(*o, clock.Now)
	}
	agent, flooder, calm := uuid.New(), uuid.New(), uuid.New()
	s.setAuth(flooder, coordinator.AllowTunnelsTo(agent))
	s.setAuth(calm, coordinator.AllowTunnelsTo(agent))
	pg := s.dial(t, agent)
	pg.updateSelf(node("agent"))

	// Legitimate: a full burst, then more after the bucket refills.
	pc := s.dial(t, calm)
	pc.addTunnel(agent)
	pc.expectUpdate(agent, coordinator.KindNode, node("agent"))
	for i := range burst - 1 {
		pc.updateSelf(node("calm" + string(rune('a'+i))))
		pg.expectUpdate(calm, coordinator.KindNode, node("calm"+string(rune('a'+i))))
	}
	clock.Advance(5 * time.Second) // 10 more tokens
	for i := range burst {
		pc.updateSelf(node("calm-later" + string(rune('a'+i))))
		pg.expectUpdate(calm, coordinator.KindNode, node("calm-later"+string(rune('a'+i))))
	}

	// Attack: a flood without the clock moving.
	pf := s.dial(t, flooder)
	pf.addTunnel(agent)
	pf.expectUpdate(agent, coordinator.KindNode, node("agent"))
	for i := range burst {
		// Frames past the limit may find the socket closed already.
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		_ = pf.ws.Write(ctx, websocket.MessageText, []byte(`{"version":1,"type":"update_self","node":`+string(withAddress(t, flooder, node("flood"+string(rune('a'+i)))))+`}`))
		cancel()
	}
	code, reason := pf.expectClosedIgnoring(coordinator.TypePeerUpdate)
	if code != websocket.StatusPolicyViolation || !strings.Contains(reason, "rate limit") {
		t.Fatalf("flooder closed with %v %q, want policy violation about the rate limit", code, reason)
	}
	// The agent heard the flooder's burst-1 accepted nodes, then lost.
	for {
		env := pg.next()
		if len(env.Updates) == 1 && env.Updates[0].ID == flooder && env.Updates[0].Kind == coordinator.KindLost {
			break
		}
		if len(env.Updates) != 1 || env.Updates[0].ID != flooder || env.Updates[0].Kind != coordinator.KindNode {
			t.Fatalf("agent got %s while the flooder was cut off", describe(env))
		}
	}
	// The calm peer carries on.
	clock.Advance(time.Second)
	pc.updateSelf(node("calm-after"))
	pg.expectUpdate(calm, coordinator.KindNode, node("calm-after"))
}
