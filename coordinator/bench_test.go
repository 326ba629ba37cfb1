package coordinator_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"

	"github.com/wgmesh/coder/coordinator"
	"github.com/wgmesh/coder/coordinator/pgcoord"
	"github.com/wgmesh/coder/database/dbtestutil"
	"github.com/wgmesh/coder/database/pubsub"
	"github.com/wgmesh/coder/tunnel"
)

const benchPeers = 1000 // 500 client/agent pairs, one tunnel each

// realisticNode is a node as a peer really publishes it.
func realisticNode(id uuid.UUID, seq int) json.RawMessage {
	n := &tunnel.Node{
		ID:            tailcfg.NodeID(seq + 1),
		AsOf:          time.Now(),
		Key:           key.NewNode().Public(),
		DiscoKey:      key.NewDisco().Public(),
		PreferredDERP: 999,
		DERPLatency:   map[string]float64{"999-v4": 0.0012, "10-v4": 0.034},
		Addresses:     []netip.Prefix{tunnel.PrefixFromUUID(id)},
		AllowedIPs:    []netip.Prefix{tunnel.PrefixFromUUID(id)},
		Endpoints:     []string{"192.0.2.10:41641", "10.0.0.5:41641", "[2001:db8::5]:41641"},
	}
	b, err := json.Marshal(n)
	if err != nil {
		panic(err)
	}
	return b
}

// benchPeer is one peer of the benchmark: how to publish a node, and where
// node updates about its tunnel peer arrive.
type benchPeer struct {
	id      uuid.UUID
	publish func(node json.RawMessage)
	tunnel  func(dst uuid.UUID)
	got     chan struct{} // one per node update received
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// runBench sets up the pairs with connect(), then measures the time from a
// client's update_self to its agent seeing the node.
func runBench(b *testing.B, connect func(id uuid.UUID, auth coordinator.TunnelAuth) *benchPeer, memUnit string) {
	before := heapInUse()
	pairs := make([][2]*benchPeer, benchPeers/2)
	for i := range pairs {
		agentID, clientID := uuid.New(), uuid.New()
		agent := connect(agentID, nil)
		client := connect(clientID, coordinator.AllowTunnelsTo(agentID))
		agent.publish(realisticNode(agentID, 2*i))
		client.publish(realisticNode(clientID, 2*i+1))
		pairs[i] = [2]*benchPeer{client, agent}
	}
	// Establish every tunnel, and wait until both sides saw each other.
	for _, p := range pairs {
		p[0].addTunnel(p[1].id)
	}
	for _, p := range pairs {
		await(b, p[0].got)
		await(b, p[1].got)
	}
	perPeer := float64(int64(heapInUse())-int64(before)) / benchPeers

	nodes := make([]json.RawMessage, len(pairs))
	for i, p := range pairs {
		nodes[i] = realisticNode(p[0].id, i)
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		p := pairs[i%len(pairs)]
		start := time.Now()
		p[0].publish(nodes[i%len(pairs)])
		await(b, p[1].got)
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	b.ReportMetric(perPeer, memUnit) // after the loop: ResetTimer drops metrics
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

func (p *benchPeer) addTunnel(dst uuid.UUID) { p.tunnel(dst) }

func await(b *testing.B, ch chan struct{}) {
	select {
	case <-ch:
	case <-time.After(30 * time.Second):
		b.Fatal("node update never arrived")
	}
}

// BenchmarkInMemoryNodeUpdate drives the coordinator in process, without
// websockets.
func BenchmarkInMemoryNodeUpdate(b *testing.B) {
	coord := coordinator.NewInMemory(nil)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() {
		cancel()
		_ = coord.Close()
		wg.Wait()
	}()
	connect := func(id uuid.UUID, auth coordinator.TunnelAuth) *benchPeer {
		reqs, resps := coord.Coordinate(ctx, id, "bench", auth)
		p := &benchPeer{id: id, got: make(chan struct{}, 64)}
		p.publish = func(n json.RawMessage) {
			reqs <- &coordinator.Request{Type: coordinator.TypeUpdateSelf, Node: n}
		}
		p.tunnel = func(dst uuid.UUID) {
			reqs <- &coordinator.Request{Type: coordinator.TypeAddTunnel, Dst: dst}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range resps {
				for _, u := range r.Updates {
					if u.Kind == coordinator.KindNode {
						p.got <- struct{}{}
					}
				}
			}
		}()
		return p
	}
	runBench(b, connect, "heap-B/peer")
}

// BenchmarkWebsocketNodeUpdate serves the same coordinator over real
// websockets (httptest on loopback): 1,000 sockets.
func BenchmarkWebsocketNodeUpdate(b *testing.B) {
	coord := coordinator.NewInMemory(nil)
	var authMu sync.Mutex
	auths := map[uuid.UUID]coordinator.TunnelAuth{}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := uuid.MustParse(r.URL.Query().Get("id"))
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		authMu.Lock()
		auth := auths[id]
		authMu.Unlock()
		_ = coordinator.ServeWebsocket(r.Context(), ws, coordinator.ServeOptions{Coordinator: coord, ID: id, Auth: auth})
	}))
	var wg sync.WaitGroup
	var sockets []*websocket.Conn
	defer func() {
		for _, ws := range sockets {
			_ = ws.CloseNow()
		}
		wg.Wait()
		hs.CloseClientConnections()
		hs.Close()
		_ = coord.Close()
	}()
	base := "ws" + strings.TrimPrefix(hs.URL, "http") + "/?id="
	connect := func(id uuid.UUID, auth coordinator.TunnelAuth) *benchPeer {
		authMu.Lock()
		auths[id] = auth
		authMu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		ws, _, err := websocket.Dial(ctx, base+id.String(), nil)
		if err != nil {
			b.Fatal(err)
		}
		sockets = append(sockets, ws)
		p := &benchPeer{id: id, got: make(chan struct{}, 64)}
		write := func(env coordinator.Envelope) {
			env.Version = coordinator.ProtocolVersion
			data, _ := json.Marshal(env)
			if err := ws.Write(context.Background(), websocket.MessageText, data); err != nil {
				b.Error(err)
			}
		}
		p.publish = func(n json.RawMessage) { write(coordinator.Envelope{Type: coordinator.TypeUpdateSelf, Node: n}) }
		p.tunnel = func(dst uuid.UUID) { write(coordinator.Envelope{Type: coordinator.TypeAddTunnel, Dst: &dst}) }
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				_, data, err := ws.Read(context.Background())
				if err != nil {
					return
				}
				env, err := coordinator.DecodeEnvelope(data)
				if err != nil {
					continue
				}
				for _, u := range env.Updates {
					if u.Kind == coordinator.KindNode {
						p.got <- struct{}{}
					}
				}
			}
		}()
		return p
	}
	runBench(b, connect, "heap-B/peer(both-ends)")
}

// BenchmarkPostgresNodeUpdate drives two PostgreSQL coordinators (two
// replicas, each with its own pool and pubsub, one database) in process:
// every agent on replica A, every client on replica B, so every update
// crosses replicas through the tables and LISTEN/NOTIFY.
func BenchmarkPostgresNodeUpdate(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	dbURL := dbtestutil.NewDB(b)
	newReplica := func() coordinator.Coordinator {
		pool := dbtestutil.NewPoolFor(b, dbURL)
		ps, err := pubsub.New(ctx, nil, pool, pubsub.Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = ps.Close() })
		c, err := pgcoord.New(ctx, pool, ps, pgcoord.Options{})
		if err != nil {
			b.Fatal(err)
		}
		return c
	}
	a, bb := newReplica(), newReplica()
	var wg sync.WaitGroup
	defer func() {
		cancel()
		_ = a.Close()
		_ = bb.Close()
		wg.Wait()
	}()
	connect := func(id uuid.UUID, auth coordinator.TunnelAuth) *benchPeer {
		coord := a
		if auth != nil {
			coord = bb
		}
		reqs, resps := coord.Coordinate(ctx, id, "bench", auth)
		p := &benchPeer{id: id, got: make(chan struct{}, 64)}
		p.publish = func(n json.RawMessage) {
			reqs <- &coordinator.Request{Type: coordinator.TypeUpdateSelf, Node: n}
		}
		p.tunnel = func(dst uuid.UUID) {
			reqs <- &coordinator.Request{Type: coordinator.TypeAddTunnel, Dst: dst}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range resps {
				for _, u := range r.Updates {
					if u.Kind == coordinator.KindNode {
						p.got <- struct{}{}
					}
				}
			}
		}()
		return p
	}
	runBench(b, connect, "heap-B/peer(2-replicas)")
}
