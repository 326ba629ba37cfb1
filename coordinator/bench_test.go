package coordinator_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strconv"
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
	runBenchN(b, benchPeers, connect, memUnit, nil)
}

// runBenchN is runBench with peers peers; around the timed loop it calls
// measure (when set) with true before and false after.
func runBenchN(b *testing.B, peers int, connect func(id uuid.UUID, auth coordinator.TunnelAuth) *benchPeer, memUnit string, measure func(start bool)) {
	before := heapInUse()
	pairs := make([][2]*benchPeer, peers/2)
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
	perPeer := float64(int64(heapInUse())-int64(before)) / float64(peers)

	nodes := make([]json.RawMessage, len(pairs))
	for i, p := range pairs {
		nodes[i] = realisticNode(p[0].id, i)
	}
	lat := make([]time.Duration, 0, b.N)
	if measure != nil {
		measure(true)
	}
	b.ResetTimer()
	for i := range b.N {
		p := pairs[i%len(pairs)]
		start := time.Now()
		p[0].publish(nodes[i%len(pairs)])
		await(b, p[1].got)
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	if measure != nil {
		measure(false)
	}
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

// BenchmarkPostgresAtScale is the coordinator at scale: 3 PostgreSQL
// coordinators ($CODER_BENCH_COORD_REPLICAS: replicas in process, each
// with its own pool and pubsub, one database) and $CODER_BENCH_COORD_PEERS
// peers (default 1,000) as client/agent pairs, agents spread round robin over the
// replicas and every other client on a different replica than its agent
// (half the pairs cross replicas). Besides the node-update latency and
// heap per peer (all 3 replicas together) it reports PostgreSQL
// transactions per second in the database while updates flow, and at
// rest (heartbeats only) over 5 s after them.
func BenchmarkPostgresAtScale(b *testing.B) {
	peers := 1000
	if v := os.Getenv("CODER_BENCH_COORD_PEERS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 2 {
			b.Fatalf("CODER_BENCH_COORD_PEERS=%q: want an even number of peers >= 2", v)
		}
		peers = n
	}
	replicas := 3
	if v := os.Getenv("CODER_BENCH_COORD_REPLICAS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			b.Fatalf("CODER_BENCH_COORD_REPLICAS=%q: want a number >= 1", v)
		}
		replicas = n
	}
	ctx, cancel := context.WithCancel(context.Background())
	dbURL := dbtestutil.NewDB(b)
	statsPool := dbtestutil.NewPoolFor(b, dbURL)
	var coords []coordinator.Coordinator
	for range replicas {
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
		coords = append(coords, c)
	}
	var wg sync.WaitGroup
	defer func() {
		cancel()
		for _, c := range coords {
			_ = c.Close()
		}
		wg.Wait()
	}()
	pair := 0
	connect := func(id uuid.UUID, auth coordinator.TunnelAuth) *benchPeer {
		// runBenchN connects each pair's agent, then its client.
		r := pair % replicas
		if auth != nil {
			if pair%2 == 1 && replicas > 1 {
				r = (r + 1) % replicas
			}
			pair++
		}
		reqs, resps := coords[r].Coordinate(ctx, id, "bench", auth)
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
	xacts := func() float64 {
		// The statistics of other backends are flushed within a second.
		var n float64
		if err := statsPool.QueryRow(ctx, `SELECT xact_commit + xact_rollback FROM pg_stat_database
			WHERE datname = current_database()`).Scan(&n); err != nil {
			b.Fatal(err)
		}
		return n
	}
	var startX float64
	var startT time.Time
	runBenchN(b, peers, connect, fmt.Sprintf("heap-B/peer(%d-replicas)", replicas), func(start bool) {
		if start {
			startX, startT = xacts(), time.Now()
			return
		}
		busy := (xacts() - startX) / time.Since(startT).Seconds()
		idleX, idleT := xacts(), time.Now()
		time.Sleep(5 * time.Second) // a quiet window to count the steady-state load
		b.ReportMetric(busy, "pg-xact/s(updating)")
		b.ReportMetric((xacts()-idleX)/time.Since(idleT).Seconds(), "pg-xact/s(at-rest)")
	})
}
