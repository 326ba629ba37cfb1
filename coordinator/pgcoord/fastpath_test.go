package pgcoord_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/wgmesh/coder/coordinator"
	"github.com/wgmesh/coder/database/dbtestutil"
	"github.com/wgmesh/coder/database/pubsub"
)

// next waits for the next update of p; a snapshot's lost entries (tunnel
// peers without a node yet) are skipped, an empty snapshot too.
func (p *peer) next() coordinator.PeerUpdate {
	p.t.Helper()
	deadline := time.After(waitFor)
	for {
		select {
		case r, ok := <-p.resps:
			if !ok {
				p.t.Fatalf("peer %s: responses closed", p.id)
			}
			ups := r.Updates
			if r.Snapshot {
				ups = withoutLost(ups)
				if len(ups) == 0 {
					continue
				}
			}
			if len(ups) != 1 {
				p.t.Fatalf("peer %s: got %+v, want one update", p.id, r)
			}
			return ups[0]
		case <-deadline:
			p.t.Fatalf("peer %s: no update", p.id)
		}
	}
}

// nodes waits until p was told the nodes want (in any order, a snapshot
// holding several).
func (p *peer) nodes(want ...string) {
	p.t.Helper()
	missing := map[string]bool{}
	for _, n := range want {
		missing[n] = true
	}
	deadline := time.After(waitFor)
	for len(missing) > 0 {
		select {
		case r, ok := <-p.resps:
			if !ok {
				p.t.Fatalf("peer %s: responses closed", p.id)
			}
			for _, u := range r.Updates {
				if u.Kind == coordinator.KindNode {
					delete(missing, string(u.Node))
				}
			}
		case <-deadline:
			p.t.Fatalf("peer %s: never told %v", p.id, missing)
		}
	}
}

// index is n of a node("prefix-n").
func index(t *testing.T, u coordinator.PeerUpdate) int {
	t.Helper()
	s := string(u.Node)
	i := strings.LastIndexByte(s, '-')
	n, err := strconv.Atoi(strings.TrimSuffix(s[i+1:], `"}`))
	if i < 0 || err != nil {
		t.Fatalf("unexpected node %s", s)
	}
	return n
}

// awaitRow waits until the peer's row in the tables holds node n.
func awaitRow(t *testing.T, r *replica, id uuid.UUID, n string) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		var got []byte
		if err := r.pool.QueryRow(context.Background(), `SELECT node FROM tailnet_peers WHERE id = $1`, id).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if string(got) == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("peer %s: row has node %s, want %s", id, got, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestFastPathOrderAndResync: node updates between tunnel partners on one
// replica are delivered in memory, every one and in order, also while the
// database write is stalled (the peer's row locked by another
// transaction); a resync after a pubsub gap during the stall (when the
// tables hold an older node than memory) does not send the older node;
// the partner on the other replica sees the updates in order, coalesced,
// ending with the last; and every update is persisted once the database
// moves again.
func TestFastPathOrderAndResync(t *testing.T) {
	t.Parallel()
	db := dbtestutil.NewDB(t)
	a, b := newReplica(t, db, time.Hour), newReplica(t, db, time.Hour)
	agent, remoteAgent, client, observer := uuid.New(), uuid.New(), uuid.New(), uuid.New()
	pa := connect(t, a, agent, nil)
	pa.updateSelf(node("a-0"))
	pr := connect(t, b, remoteAgent, nil)
	pr.updateSelf(node("r-0"))
	pc := connect(t, a, client, allowAll())
	pc.addTunnel(agent)
	pc.addTunnel(remoteAgent)
	pc.nodes(node("a-0"), node("r-0"))
	po := connect(t, b, observer, allowAll())
	po.addTunnel(agent)
	po.nodes(node("a-0"))

	// observe reads the observer's updates about agent up to want,
	// failing on one older than the one before.
	last := 0
	observe := func(want int) {
		t.Helper()
		for last < want {
			u := po.next()
			if u.ID != agent || u.Kind != coordinator.KindNode {
				t.Fatalf("observer: got %s %s, want nodes of the agent", u.ID, u.Kind)
			}
			n := index(t, u)
			if n < last {
				t.Fatalf("observer: node a-%d after a-%d", n, last)
			}
			last = n
		}
	}
	sendAll := func(from, to int) {
		t.Helper()
		for i := from; i <= to; i++ {
			pa.updateSelf(node(fmt.Sprintf("a-%d", i)))
		}
		for i := from; i <= to; i++ {
			pc.expect(agent, coordinator.KindNode, node(fmt.Sprintf("a-%d", i)))
		}
	}

	sendAll(1, 50)
	observe(50)
	awaitRow(t, a, agent, node("a-50"))

	// Stall the agent's row.
	ctx := context.Background()
	lock, err := b.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = lock.Rollback(ctx) }()
	if _, err := lock.Exec(ctx, `SELECT 1 FROM tailnet_peers WHERE id = $1 FOR UPDATE`, agent); err != nil {
		t.Fatal(err)
	}
	sendAll(51, 60) // in memory, while nothing reaches the table
	// A change without a notification, then a pubsub gap: replica A
	// resynchronises the client's view from the tables, which still hold
	// a-50 for the agent.
	if _, err := a.pool.Exec(ctx, `UPDATE tailnet_peers SET node = $2, node_seq = node_seq + 1 WHERE id = $1`, remoteAgent, []byte(node("r-1"))); err != nil {
		t.Fatal(err)
	}
	if _, err := a.pool.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE application_name = $1 AND datname = current_database()`, pubsub.ApplicationName); err != nil {
		t.Fatal(err)
	}
	pc.expect(remoteAgent, coordinator.KindNode, node("r-1"))
	if err := lock.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	awaitRow(t, a, agent, node("a-60"))
	observe(60)
	// Nothing older (nor a repeat) was queued for the client meanwhile.
	sendAll(61, 61)
	observe(61)
}
