package pgcoord_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/wgmesh/coder/coordinator"
	"github.com/wgmesh/coder/coordinator/pgcoord"
	"github.com/wgmesh/coder/database"
	"github.com/wgmesh/coder/database/dbtestutil"
	"github.com/wgmesh/coder/database/embeddedpg"
	"github.com/wgmesh/coder/database/pubsub"
)

const waitFor = 20 * time.Second

// replica is one coordinator with its own pool and pubsub, as a coderd
// replica has.
type replica struct {
	coord *pgcoord.Coordinator
	pool  *pgxpool.Pool
	ps    *pubsub.Pubsub
}

func newReplica(t *testing.T, dbURL string, heartbeat time.Duration) *replica {
	t.Helper()
	ctx := context.Background()
	pool := dbtestutil.NewPoolFor(t, dbURL)
	ps, err := pubsub.New(ctx, nil, pool, pubsub.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ps.Close() })
	c, err := pgcoord.New(ctx, pool, ps, pgcoord.Options{HeartbeatInterval: heartbeat})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &replica{coord: c, pool: pool, ps: ps}
}

// peer is one registration driven through the Coordinator interface.
type peer struct {
	t      *testing.T
	id     uuid.UUID
	reqs   chan<- *coordinator.Request
	resps  <-chan *coordinator.Response
	cancel context.CancelFunc
}

func connect(t *testing.T, r *replica, id uuid.UUID, auth coordinator.TunnelAuth) *peer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	reqs, resps := r.coord.Coordinate(ctx, id, "peer-"+id.String()[:8], auth)
	p := &peer{t: t, id: id, reqs: reqs, resps: resps, cancel: cancel}
	t.Cleanup(cancel)
	return p
}

func (p *peer) send(req *coordinator.Request) {
	p.t.Helper()
	select {
	case p.reqs <- req:
	case <-time.After(waitFor):
		p.t.Fatalf("peer %s: request not taken", p.id)
	}
}

func (p *peer) updateSelf(n string) {
	p.t.Helper()
	p.send(&coordinator.Request{Type: coordinator.TypeUpdateSelf, Node: json.RawMessage(n)})
}

func (p *peer) addTunnel(dst uuid.UUID) {
	p.t.Helper()
	p.send(&coordinator.Request{Type: coordinator.TypeAddTunnel, Dst: dst})
}

// expect waits for the next update and checks it.
func (p *peer) expect(id uuid.UUID, kind coordinator.UpdateKind, n string) {
	p.t.Helper()
	deadline := time.After(waitFor)
	for {
		select {
		case r, ok := <-p.resps:
			if !ok {
				p.t.Fatalf("peer %s: responses closed, want %s about %s", p.id, kind, id)
			}
			if r.Snapshot {
				// A registration's first view: its node entries are
				// checked as updates; lost entries only list peers.
				r = &coordinator.Response{Updates: withoutLost(r.Updates)}
				if len(r.Updates) == 0 {
					continue
				}
			}
			p.check(r, id, kind, n)
			return
		case <-deadline:
			p.t.Fatalf("peer %s: no update, want %s about %s", p.id, kind, id)
		}
	}
}

func withoutLost(ups []coordinator.PeerUpdate) []coordinator.PeerUpdate {
	var out []coordinator.PeerUpdate
	for _, u := range ups {
		if u.Kind != coordinator.KindLost {
			out = append(out, u)
		}
	}
	return out
}

func (p *peer) check(r *coordinator.Response, id uuid.UUID, kind coordinator.UpdateKind, n string) {
	p.t.Helper()
	{
		if len(r.Updates) != 1 {
			p.t.Fatalf("peer %s: got %+v, want one %s update about %s", p.id, r, kind, id)
		}
		u := r.Updates[0]
		if u.ID != id || u.Kind != kind || (kind == coordinator.KindNode && string(u.Node) != n) {
			p.t.Fatalf("peer %s: got %s %s %s, want %s %s %s", p.id, u.ID, u.Kind, u.Node, id, kind, n)
		}
	}
}

func node(name string) string { return fmt.Sprintf(`{"name":%q}`, name) }

func allowAll() coordinator.TunnelAuth {
	return coordinator.TunnelAuthFunc(func(context.Context, uuid.UUID, uuid.UUID) error { return nil })
}

// TestCrossReplica: a client on replica A and an agent on replica B
// exchange nodes, in both directions, and authorization runs on the replica
// receiving the request.
func TestCrossReplica(t *testing.T) {
	t.Parallel()
	db := dbtestutil.NewDB(t)
	a, b := newReplica(t, db, time.Second), newReplica(t, db, time.Second)
	client, agent, other := uuid.New(), uuid.New(), uuid.New()

	pg := connect(t, b, agent, nil)
	pg.updateSelf(node("agent1"))
	po := connect(t, b, other, nil)
	po.updateSelf(node("other"))
	pc := connect(t, a, client, coordinator.AllowTunnelsTo(agent))
	pc.updateSelf(node("client1"))

	pc.addTunnel(other) // refused on A
	select {
	case r := <-pc.resps:
		if r.Error == "" {
			t.Fatalf("tunnel to other: %+v, want refused", r)
		}
	case <-time.After(waitFor):
		t.Fatal("no refusal")
	}
	pc.addTunnel(agent)
	pc.expect(agent, coordinator.KindNode, node("agent1"))
	pg.expect(client, coordinator.KindNode, node("client1"))
	pg.updateSelf(node("agent2"))
	pc.expect(agent, coordinator.KindNode, node("agent2"))
	pc.updateSelf(node("client2"))
	pg.expect(client, coordinator.KindNode, node("client2"))

	// Other never heard of the client: at most its own empty snapshot.
	for drained := false; !drained; {
		select {
		case r := <-po.resps:
			if !r.Snapshot || len(r.Updates) != 0 {
				t.Fatalf("other got %+v", r)
			}
		default:
			drained = true
		}
	}

	// A clean goodbye on A reaches B's agent as disconnected.
	pc.send(&coordinator.Request{Type: coordinator.TypeDisconnect})
	pg.expect(client, coordinator.KindDisconnected, "")
}

// TestDeadReplicaPeersLostAndResume: replica B is killed (no goodbye, its
// heartbeat stops): once its heartbeat lapses, the client on A learns the
// agent is lost — not disconnected, so it keeps its WireGuard session; the
// agent reconnects to replica C with the same node and the client gets it
// back.
func TestDeadReplicaPeersLostAndResume(t *testing.T) {
	t.Parallel()
	db := dbtestutil.NewDB(t)
	const hb = 200 * time.Millisecond
	a, b, c := newReplica(t, db, hb), newReplica(t, db, hb), newReplica(t, db, hb)
	client, agent := uuid.New(), uuid.New()
	pg := connect(t, b, agent, nil)
	pg.updateSelf(node("agent"))
	pc := connect(t, a, client, allowAll())
	pc.updateSelf(node("client"))
	pc.addTunnel(agent)
	pc.expect(agent, coordinator.KindNode, node("agent"))
	pg.expect(client, coordinator.KindNode, node("client"))

	b.coord.Crash()
	pc.expect(agent, coordinator.KindLost, "")

	pg2 := connect(t, c, agent, nil)
	pg2.expect(client, coordinator.KindNode, node("client")) // its tunnel peer's node, at once
	pg2.updateSelf(node("agent"))                            // same node, as a resuming peer sends
	pc.expect(agent, coordinator.KindNode, node("agent"))
	pc.updateSelf(node("client-later"))
	pg2.expect(client, coordinator.KindNode, node("client-later"))
}

// TestGracefulCloseMarksLost: a replica shutting down tells its peers'
// tunnel partners at once that they are lost (not disconnected).
func TestGracefulCloseMarksLost(t *testing.T) {
	t.Parallel()
	db := dbtestutil.NewDB(t)
	// A long heartbeat: only the close announcement can explain a quick lost.
	a, b := newReplica(t, db, time.Hour), newReplica(t, db, time.Hour)
	client, agent := uuid.New(), uuid.New()
	pg := connect(t, b, agent, nil)
	pg.updateSelf(node("agent"))
	pc := connect(t, a, client, allowAll())
	pc.addTunnel(agent)
	pc.expect(agent, coordinator.KindNode, node("agent"))
	if err := b.coord.Close(); err != nil {
		t.Fatal(err)
	}
	pc.expect(agent, coordinator.KindLost, "")
}

// TestResyncAfterPubsubGap: a change whose notification never arrived
// (here written straight to the table, as if its NOTIFY was lost while the
// listener connection was down) reaches the peer once the pubsub reports
// the gap (the listener's connection is killed) and the replica
// resynchronises from the tables.
func TestResyncAfterPubsubGap(t *testing.T) {
	t.Parallel()
	db := dbtestutil.NewDB(t)
	a, b := newReplica(t, db, time.Hour), newReplica(t, db, time.Hour)
	client, agent := uuid.New(), uuid.New()
	pg := connect(t, b, agent, nil)
	pg.updateSelf(node("agent1"))
	pc := connect(t, a, client, allowAll())
	pc.addTunnel(agent)
	pc.expect(agent, coordinator.KindNode, node("agent1"))

	ctx := context.Background()
	if _, err := a.pool.Exec(ctx, `UPDATE tailnet_peers SET node = $2, node_seq = node_seq + 1 WHERE id = $1`, agent, []byte(node("agent2"))); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-pc.resps:
		t.Fatalf("update without notification arrived: %+v", r)
	default:
	}
	// Kill every pubsub listener connection of this database.
	if _, err := a.pool.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE application_name = $1 AND datname = current_database()`, pubsub.ApplicationName); err != nil {
		t.Fatal(err)
	}
	pc.expect(agent, coordinator.KindNode, node("agent2"))
	// And live notifications work again afterwards.
	pg.updateSelf(node("agent3"))
	pc.expect(agent, coordinator.KindNode, node("agent3"))
}

// TestTakeOverAcrossReplicas: the same peer registering on another replica
// while its first connection is still up ends the first one; its tunnel
// peer sees no lost, only the new node.
func TestTakeOverAcrossReplicas(t *testing.T) {
	t.Parallel()
	db := dbtestutil.NewDB(t)
	a, b := newReplica(t, db, time.Second), newReplica(t, db, time.Second)
	client, agent := uuid.New(), uuid.New()
	pg := connect(t, a, agent, nil)
	pg.updateSelf(node("agent"))
	pc := connect(t, a, client, allowAll())
	pc.updateSelf(node("client"))
	pc.addTunnel(agent)
	pc.expect(agent, coordinator.KindNode, node("agent"))
	pg.expect(client, coordinator.KindNode, node("client"))

	pg2 := connect(t, b, agent, nil)
	pg2.expect(client, coordinator.KindNode, node("client"))
	// A drops its registration of the agent.
	select {
	case r, ok := <-pg.resps:
		if ok {
			t.Fatalf("replaced registration got %+v, want its channel closed", r)
		}
	case <-time.After(waitFor):
		t.Fatal("the replaced registration on A was not ended")
	}
	pg2.updateSelf(node("agent-new"))
	pc.expect(agent, coordinator.KindNode, node("agent-new"))
}

// TestSurvivesPostgresRestart: PostgreSQL is killed (SIGKILL of the
// postmaster) under two replicas and comes back on the same URL; the
// replicas recover without a restart of their own: a node update made
// after the restart reaches the peer on the other replica.
func TestSurvivesPostgresRestart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	// Durable (no NoSync): with synchronous_commit off a crash loses the
	// last commits, and the coordinator's rows with them.
	cluster, err := embeddedpg.Start(ctx, embeddedpg.Options{DataDir: filepath.Join(dir, "pg")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cluster.Stop(context.Background()) })
	if err := database.Migrate(ctx, cluster.URL()); err != nil {
		t.Fatal(err)
	}
	a, b := newReplica(t, cluster.URL(), 500*time.Millisecond), newReplica(t, cluster.URL(), 500*time.Millisecond)
	if err := cluster.Supervise(embeddedpg.SuperviseOptions{OnRestart: func() { a.pool.Reset(); b.pool.Reset() }}); err != nil {
		t.Fatal(err)
	}
	client, agent := uuid.New(), uuid.New()
	pg := connect(t, b, agent, nil)
	pg.updateSelf(node("agent1"))
	pc := connect(t, a, client, allowAll())
	pc.updateSelf(node("client1"))
	pc.addTunnel(agent)
	pc.expect(agent, coordinator.KindNode, node("agent1"))
	pg.expect(client, coordinator.KindNode, node("client1"))

	pid, err := cluster.PostmasterPID()
	if err != nil {
		t.Fatal(err)
	}
	_, restarted := cluster.Restarts()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-restarted:
	case <-time.After(2 * time.Minute):
		t.Fatal("PostgreSQL was not restarted")
	}
	pg.updateSelf(node("agent2"))
	// The outage may have outlasted 3 heartbeats: the client may first
	// hear the agent was lost (and its node again once the heartbeats
	// resume); in the end it has the new node.
	deadline := time.After(2 * time.Minute)
	for {
		select {
		case r, ok := <-pc.resps:
			if !ok {
				t.Fatal("the client's registration ended")
			}
			u := r.Updates
			if len(u) == 1 && u[0].ID == agent && u[0].Kind == coordinator.KindNode && string(u[0].Node) == node("agent2") {
				return
			}
			if len(u) != 1 || u[0].ID != agent || u[0].Kind == coordinator.KindDisconnected {
				t.Fatalf("client got %+v during the outage", r)
			}
		case <-deadline:
			t.Fatal("the node update after the restart never arrived")
		}
	}
}
