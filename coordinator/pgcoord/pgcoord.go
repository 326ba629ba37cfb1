// Package pgcoord is a coordinator.Coordinator for several coderd replicas
// sharing one PostgreSQL database: a client connected to replica A and an
// agent connected to replica B exchange nodes through it.
//
// The state lives in tables (migration "high_availability"):
//   - tailnet_coordinators: one row per coordinator, refreshed every
//     HeartbeatInterval. A coordinator whose heartbeat is older than 3 ×
//     HeartbeatInterval is dead: its peers count as lost.
//   - tailnet_peers: each peer's current registration (coordinator,
//     registration ID, node, ok|lost). A registration only ever writes its
//     own row (guarded by the registration ID), so a peer that reconnected
//     elsewhere cannot be clobbered by its previous, dying registration.
//   - tailnet_tunnels: the tunnels peers asked for, owned by the
//     coordinator serving their source.
//
// Every change is announced on the pubsub (LISTEN/NOTIFY) with the IDs it
// touches, never the data: each coordinator then recomputes, from the
// tables, the view of each of its local peers that may be affected (which
// tunnel peers it has, and their node or lost state) and sends the peer
// the difference to what it told it before. So a lost or late
// notification costs latency, never correctness: after a pubsub gap
// (ErrDroppedMessages, e.g. a PostgreSQL restart) and whenever a
// coordinator's liveness changes, every local view is recomputed.
//
// Same-replica fast path: a node update is delivered in memory at once to
// the peer's tunnel partners served by the same coordinator (those whose
// view already has the peer, i.e. whose tunnel a fan-out established from
// the tables), as the in-memory coordinator does. The update is persisted
// afterwards by a writer that coalesces each peer's updates and writes a
// batch in one statement with one NOTIFY, for the other coordinators and
// for resync. The fan-out never lets the tables overrule memory: a local
// peer's node and sequence come from memory (the tables may lag), and a
// view read before a fast-path delivery does not change that pair (the
// fan-out runs again with a fresh read instead). Node sequences are kept
// per registration, so a partner compares (registration, sequence).
//
// Tunnel authorization (TunnelAuth) runs on the coordinator that receives
// the request, as with the in-memory coordinator.
package pgcoord

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/wgmesh/coder/coordinator"
	"github.com/wgmesh/coder/database/pubsub"
)

// Defaults of Options.
const (
	DefaultHeartbeatInterval = 2 * time.Second
	// Pubsub events; payloads are IDs.
	eventPeer = "tailnet_peer" // peer ID, or nodesPrefix and peer IDs
	// nodesPrefix starts a tailnet_peer payload of comma-separated peer
	// IDs whose nodes changed (a batch of node writes).
	nodesPrefix      = "nodes:"
	eventTunnel      = "tailnet_tunnel"      // "src,dst"
	eventCoordinator = "tailnet_coordinator" // coordinator ID
	requestQueueSize = 16
	// notifyBatch bounds the peer IDs of one NOTIFY payload (37 bytes each,
	// within pubsub.MaxPayloadBytes).
	notifyBatch = 150
)

// Options configures New.
type Options struct {
	// Logger; nil discards.
	Logger *slog.Logger
	// ID identifies the coordinator; uuid.Nil picks a random one.
	ID uuid.UUID
	// HeartbeatInterval is how often the coordinator refreshes its row and
	// looks at the others' (default 2s). Peers of a coordinator silent for
	// 3 × HeartbeatInterval are announced lost to their tunnel peers.
	HeartbeatInterval time.Duration
	// LostTimeout is how long a lost peer's tunnels are kept for it to
	// resume (default coordinator.DefaultLostTimeout); also how long a dead
	// coordinator's rows are kept.
	LostTimeout time.Duration
	// QueueSize bounds each peer's response queue (default
	// coordinator.DefaultQueueSize); a peer whose queue is full is dropped.
	QueueSize int
	// Now is the clock of the heartbeats (default time.Now).
	Now func() time.Time
}

// Coordinator is the PostgreSQL-backed coordinator.
type Coordinator struct {
	id     uuid.UUID
	opts   Options
	logger *slog.Logger
	pool   *pgxpool.Pool
	ps     *pubsub.Pubsub
	unsubs []func()

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	wake   chan struct{}

	stripes [64]sync.Mutex // per peer ID: register/lost writes of one ID in order
	seed    maphash.Seed

	mu      sync.Mutex
	closed  bool
	locals  map[uuid.UUID]*local
	dirty   map[uuid.UUID]struct{} // local peers whose views to recompute
	related map[uuid.UUID]struct{} // peers whose tunnel partners to recompute
	// updated: peers whose node changed; only local peers already knowing
	// them look again (no tunnel lookup: a new tunnel or registration has
	// its own event).
	updated  map[uuid.UUID]struct{}
	dirtyAll bool
	alive    map[uuid.UUID]bool // coordinators' liveness at the last heartbeat
	// gen counts fast-path deliveries; a fan-out notes it before reading
	// the tables and leaves alone the pairs delivered to since.
	gen uint64
	// pending holds each local peer's latest node not yet written.
	pending   map[uuid.UUID]pendingWrite
	writeWake chan struct{}
}

// pendingWrite is a node update to persist.
type pendingWrite struct {
	l    *local
	node json.RawMessage
	seq  int64
}

// local is one registration served by this coordinator.
type local struct {
	id     uuid.UUID
	name   string
	reg    uuid.UUID
	resps  chan *coordinator.Response
	closed bool
	// registered: l's row was written (set under its stripe lock).
	registered bool
	// snapshotSent: the peer got its first view, whole (a snapshot).
	snapshotSent bool
	// sent is what the peer was told about each tunnel peer.
	sent map[uuid.UUID]sentState
	// node and tunnels are the peer's own state, to rewrite its rows
	// should they vanish (they are in the tables otherwise).
	node    json.RawMessage
	tunnels map[uuid.UUID]struct{}
	// seq is the sequence of node (the row's node_seq once written).
	seq int64
}

type sentState struct {
	lost bool
	// reg and seq identify the node the peer was told (registration and
	// node_seq of the tunnel peer); zero while the tunnel peer had no node.
	reg uuid.UUID
	seq int64
	// stamp is the Coordinator.gen of a fast-path delivery (0: fan-out).
	stamp uint64
}

var _ coordinator.Coordinator = (*Coordinator)(nil)

// New starts a coordinator on pool, announcing changes on ps. Close stops
// it; pool and ps stay the caller's.
func New(ctx context.Context, pool *pgxpool.Pool, ps *pubsub.Pubsub, opts Options) (*Coordinator, error) {
	if pool == nil || ps == nil {
		return nil, errors.New("pgcoord: a pool and a pubsub are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.ID == uuid.Nil {
		opts.ID = uuid.New()
	}
	if opts.HeartbeatInterval <= 0 {
		opts.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if opts.LostTimeout <= 0 {
		opts.LostTimeout = coordinator.DefaultLostTimeout
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = coordinator.DefaultQueueSize
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	c := &Coordinator{
		id:        opts.ID,
		opts:      opts,
		logger:    opts.Logger.With("component", "pgcoord", "coordinator_id", opts.ID),
		pool:      pool,
		ps:        ps,
		wake:      make(chan struct{}, 1),
		seed:      maphash.MakeSeed(),
		locals:    map[uuid.UUID]*local{},
		dirty:     map[uuid.UUID]struct{}{},
		related:   map[uuid.UUID]struct{}{},
		updated:   map[uuid.UUID]struct{}{},
		alive:     map[uuid.UUID]bool{},
		pending:   map[uuid.UUID]pendingWrite{},
		writeWake: make(chan struct{}, 1),
	}
	if err := c.heartbeat(ctx); err != nil {
		return nil, err
	}
	subs := []struct {
		event string
		fn    pubsub.ListenerWithErr
	}{
		{eventPeer, c.onPeerEvent},
		{eventTunnel, c.onTunnelEvent},
		{eventCoordinator, c.onCoordinatorEvent},
	}
	for _, s := range subs {
		unsub, err := ps.SubscribeWithErr(s.event, s.fn)
		if err != nil {
			for _, u := range c.unsubs {
				u()
			}
			return nil, fmt.Errorf("pgcoord: subscribe %s: %w", s.event, err)
		}
		c.unsubs = append(c.unsubs, unsub)
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.wg.Add(3)
	go c.heartbeatLoop()
	go c.fanOutLoop()
	go c.writeLoop()
	return c, nil
}

// Epoch is the epoch of every pgcoord snapshot: the tunnels live in the
// database, not in one replica, so a peer that moves to another replica or
// outlives a replica restart gets an authoritative view from any of them.
const Epoch = "pgcoord"

// ID returns the coordinator's ID (its row in tailnet_coordinators).
func (c *Coordinator) ID() uuid.UUID { return c.id }

func (c *Coordinator) now() time.Time { return c.opts.Now().UTC().Truncate(time.Microsecond) }

func (c *Coordinator) stripe(id uuid.UUID) *sync.Mutex {
	return &c.stripes[maphash.Bytes(c.seed, id[:])%uint64(len(c.stripes))]
}

// Coordinate implements coordinator.Coordinator.
func (c *Coordinator) Coordinate(ctx context.Context, id uuid.UUID, name string, auth coordinator.TunnelAuth) (chan<- *coordinator.Request, <-chan *coordinator.Response) {
	reqs := make(chan *coordinator.Request, requestQueueSize)
	resps := make(chan *coordinator.Response, c.opts.QueueSize)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		close(resps)
		return reqs, resps
	}
	l := &local{id: id, name: name, reg: uuid.New(), resps: resps, sent: map[uuid.UUID]sentState{}, tunnels: map[uuid.UUID]struct{}{}}
	if old := c.locals[id]; old != nil {
		c.logger.Debug("peer registered again, dropping previous connection", "peer", id, "name", name)
		closeLocal(old)
		// The new registration resumes the old one's tunnels.
		for dst := range old.tunnels {
			l.tunnels[dst] = struct{}{}
		}
	}
	c.locals[id] = l
	peerCtx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(c.ctx, cancel)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer cancel()
		defer stop()
		c.serve(peerCtx, l, reqs, auth)
	}()
	return reqs, resps
}

// current reports whether l is its peer's registration on this coordinator.
func (c *Coordinator) current(l *local) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.closed && c.locals[l.id] == l && !l.closed
}

func (c *Coordinator) serve(ctx context.Context, l *local, reqs <-chan *coordinator.Request, auth coordinator.TunnelAuth) {
	if !c.register(ctx, l) {
		c.gone(l, false)
		return
	}
	c.logger.Debug("peer connected", "peer", l.id, "name", l.name)
	for {
		select {
		case <-ctx.Done():
			c.gone(l, false)
			return
		case req, ok := <-reqs:
			if !ok {
				c.gone(l, false)
				return
			}
			if req == nil {
				continue
			}
			if req.Type == coordinator.TypeDisconnect {
				c.gone(l, true)
				return
			}
			if !c.handle(ctx, l, req, auth) {
				c.gone(l, false)
				return
			}
		}
	}
}

// register writes l's row (taking the peer over from any previous
// registration, here or on another coordinator) and claims its tunnels.
func (c *Coordinator) register(ctx context.Context, l *local) bool {
	mu := c.stripe(l.id)
	mu.Lock()
	defer mu.Unlock()
	if !c.current(l) {
		return false
	}
	var seq int64
	err := c.retry(ctx, "register peer", func(ctx context.Context) error {
		return pgx.BeginFunc(ctx, c.pool, func(tx pgx.Tx) error {
			var err error
			seq, err = c.writePeer(ctx, tx, l, nil, 0)
			return err
		})
	})
	if err != nil {
		return false
	}
	c.mu.Lock()
	l.registered = true
	l.seq = seq
	c.mu.Unlock()
	c.notify(eventPeer, l.id.String())
	c.markDirty(l.id)
	return true
}

// writePeer upserts l's row with node (NULL until the peer sends one) and
// a node_seq of at least seq, and moves the peer's tunnels (those in the
// table and those l remembers) to this coordinator. It returns the row's
// node_seq.
func (c *Coordinator) writePeer(ctx context.Context, tx pgx.Tx, l *local, node json.RawMessage, seq int64) (int64, error) {
	now := c.now()
	var rowSeq int64
	if err := tx.QueryRow(ctx, `INSERT INTO tailnet_peers (id, coordinator_id, registration, node, node_seq, status, updated_at)
		VALUES ($1, $2, $3, $4, $6, 'ok', $5)
		ON CONFLICT (id) DO UPDATE SET coordinator_id = $2, registration = $3, node = $4,
			node_seq = GREATEST(tailnet_peers.node_seq, $6), status = 'ok', updated_at = $5
		RETURNING node_seq`,
		l.id, c.id, l.reg, nullBytes(node), now, seq).Scan(&rowSeq); err != nil {
		return 0, fmt.Errorf("upsert peer: %w", err)
	}
	if _, err := tx.Exec(ctx, `UPDATE tailnet_tunnels SET coordinator_id = $2, updated_at = $3 WHERE src_id = $1`, l.id, c.id, now); err != nil {
		return 0, fmt.Errorf("claim tunnels: %w", err)
	}
	c.mu.Lock()
	dsts := make([]uuid.UUID, 0, len(l.tunnels))
	for d := range l.tunnels {
		dsts = append(dsts, d)
	}
	c.mu.Unlock()
	if len(dsts) > 0 {
		if _, err := tx.Exec(ctx, `INSERT INTO tailnet_tunnels (src_id, dst_id, coordinator_id, updated_at)
			SELECT $1, d, $2, $3 FROM unnest($4::uuid[]) AS d
			ON CONFLICT (src_id, dst_id) DO UPDATE SET coordinator_id = $2, updated_at = $3`, l.id, c.id, now, dsts); err != nil {
			return 0, fmt.Errorf("restore tunnels: %w", err)
		}
	}
	return rowSeq, nil
}

func nullBytes(b json.RawMessage) any {
	if b == nil {
		return nil
	}
	return []byte(b)
}

// handle runs one request; false when the registration was taken over.
func (c *Coordinator) handle(ctx context.Context, l *local, req *coordinator.Request, auth coordinator.TunnelAuth) bool {
	if !c.current(l) {
		return false // dropped (too slow) or replaced
	}
	switch req.Type {
	case coordinator.TypeUpdateSelf:
		c.updateNode(l, req.Node)

	case coordinator.TypeAddTunnel:
		var err error
		switch {
		case req.Dst == l.id:
			err = errors.New("a peer cannot open a tunnel to itself")
		case auth == nil:
			err = errors.New("no tunnel authorization configured")
		default:
			err = auth.AuthorizeTunnel(ctx, l.id, req.Dst)
		}
		if err != nil {
			c.logger.Info("tunnel refused", "src", l.id, "name", l.name, "dst", req.Dst, "err", err)
			c.send(l, &coordinator.Response{Error: "tunnel to " + req.Dst.String() + " not authorized"})
			return true
		}
		if err := c.retry(ctx, "add tunnel", func(ctx context.Context) error {
			_, err := c.pool.Exec(ctx, `INSERT INTO tailnet_tunnels (src_id, dst_id, coordinator_id, updated_at) VALUES ($1, $2, $3, $4)
				ON CONFLICT (src_id, dst_id) DO UPDATE SET coordinator_id = $3, updated_at = $4`, l.id, req.Dst, c.id, c.now())
			return err
		}); err != nil {
			return false
		}
		c.mu.Lock()
		l.tunnels[req.Dst] = struct{}{}
		c.mu.Unlock()
		c.notify(eventTunnel, l.id.String()+","+req.Dst.String())

	case coordinator.TypeRemoveTunnel:
		if err := c.retry(ctx, "remove tunnel", func(ctx context.Context) error {
			_, err := c.pool.Exec(ctx, `DELETE FROM tailnet_tunnels WHERE src_id = $1 AND dst_id = $2`, l.id, req.Dst)
			return err
		}); err != nil {
			return false
		}
		c.mu.Lock()
		delete(l.tunnels, req.Dst)
		c.mu.Unlock()
		c.notify(eventTunnel, l.id.String()+","+req.Dst.String())

	default:
		c.logger.Warn("ignoring unknown request", "peer", l.id, "type", req.Type)
	}
	return true
}

// updateNode records l's new node, delivers it at once to l's tunnel
// partners on this coordinator that already know l (the same-replica fast
// path) and queues it for the writer.
func (c *Coordinator) updateNode(l *local, node json.RawMessage) {
	c.mu.Lock()
	if l.closed || c.locals[l.id] != l {
		c.mu.Unlock()
		return
	}
	l.seq++
	l.node = node
	c.gen++
	for other := range l.sent {
		m := c.locals[other]
		if m == nil || m.closed || !m.registered {
			continue
		}
		if _, known := m.sent[l.id]; !known {
			continue // no tunnel established with m yet: the fan-out's job
		}
		m.sent[l.id] = sentState{reg: l.reg, seq: l.seq, stamp: c.gen}
		c.sendLocked(m, &coordinator.Response{Updates: []coordinator.PeerUpdate{{ID: l.id, Kind: coordinator.KindNode, Node: node}}})
	}
	c.pending[l.id] = pendingWrite{l: l, node: node, seq: l.seq}
	c.mu.Unlock()
	select {
	case c.writeWake <- struct{}{}:
	default:
	}
}

// writeLoop persists the queued node updates: each peer's latest, a batch
// in one statement, then one NOTIFY per notifyBatch peers.
func (c *Coordinator) writeLoop() {
	defer c.wg.Done()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-c.writeWake:
		}
		for c.ctx.Err() == nil {
			c.mu.Lock()
			batch := c.pending
			c.pending = map[uuid.UUID]pendingWrite{}
			c.mu.Unlock()
			if len(batch) == 0 {
				break
			}
			c.writeNodes(batch)
		}
	}
}

func (c *Coordinator) writeNodes(batch map[uuid.UUID]pendingWrite) {
	ids := make([]uuid.UUID, 0, len(batch))
	regs := make([]uuid.UUID, 0, len(batch))
	nodes := make([][]byte, 0, len(batch))
	seqs := make([]int64, 0, len(batch))
	c.mu.Lock()
	for id, w := range batch {
		if w.l.closed || c.locals[id] != w.l {
			continue // ended: its successor or its lost mark owns the row
		}
		ids = append(ids, id)
		regs = append(regs, w.l.reg)
		nodes = append(nodes, w.node)
		seqs = append(seqs, w.seq)
	}
	c.mu.Unlock()
	if len(ids) == 0 {
		return
	}
	written := make(map[uuid.UUID]struct{}, len(ids))
	err := c.retry(c.ctx, "update nodes", func(ctx context.Context) error {
		// One round trip: the write, and its announcement (NOTIFY on the
		// pubsub's channel, sent at commit) in groups of notifyBatch IDs.
		rows, err := c.pool.Query(ctx, `WITH upd AS (
				UPDATE tailnet_peers p SET node = u.node, node_seq = u.seq, updated_at = $5
				FROM unnest($1::uuid[], $2::uuid[], $3::bytea[], $4::bigint[]) AS u(id, reg, node, seq)
				WHERE p.id = u.id AND p.registration = u.reg AND p.status = 'ok' AND p.node_seq < u.seq
				RETURNING p.id
			), grp AS (
				SELECT string_agg(id::text, ',') AS ids
				FROM (SELECT id, (row_number() OVER ()) / $7 AS g FROM upd) s GROUP BY g
			)
			SELECT ids, pg_notify($6, $8 || ids) FROM grp`,
			ids, regs, nodes, seqs, c.now(), eventPeer, notifyBatch, nodesPrefix)
		if err != nil {
			return err
		}
		var list string
		var ignored any
		_, err = pgx.ForEachRow(rows, []any{&list, &ignored}, func() error {
			for s := range strings.SplitSeq(list, ",") {
				if id, err := uuid.Parse(s); err == nil {
					written[id] = struct{}{}
				}
			}
			return nil
		})
		return err
	})
	if err != nil {
		return // shutting down
	}
	for _, id := range ids {
		if _, ok := written[id]; ok {
			continue
		}
		// Taken over, deleted, or already newer: look.
		l := batch[id].l
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.checkRow(c.ctx, l)
		}()
	}
}

// checkRow handles a node write that found no row of l's registration:
// another registration took the peer over (l ends), or the row was
// deleted (e.g. this coordinator was presumed dead for LostTimeout while
// it could not reach the database) and l writes it again, or the row's
// node_seq had moved past the write's and l's node is written again above
// it.
func (c *Coordinator) checkRow(ctx context.Context, l *local) {
	if !c.current(l) {
		return
	}
	var reg uuid.UUID
	var status string
	var rowSeq int64
	err := c.pool.QueryRow(ctx, `SELECT registration, status, node_seq FROM tailnet_peers WHERE id = $1`, l.id).Scan(&reg, &status, &rowSeq)
	switch {
	case err == nil && reg != l.reg:
		c.logger.Debug("peer registered elsewhere, dropping this connection", "peer", l.id)
		c.takenOver(l)
		return
	case err == nil && status == "ok":
		// The row's sequence is at or past the write's (a rewrite got
		// there first, or the row was changed behind our back): unless a
		// newer update is queued, write the current node again on top.
		c.mu.Lock()
		if _, queued := c.pending[l.id]; !queued && !l.closed && c.locals[l.id] == l && l.node != nil {
			l.seq = max(l.seq, rowSeq) + 1
			c.pending[l.id] = pendingWrite{l: l, node: l.node, seq: l.seq}
			c.mu.Unlock()
			select {
			case c.writeWake <- struct{}{}:
			default:
			}
			return
		}
		c.mu.Unlock()
		return
	case err != nil && !errors.Is(err, pgx.ErrNoRows):
		if ctx.Err() == nil {
			c.logger.Warn("check peer row", "peer", l.id, "error", err)
			c.markDirty(l.id)
		}
		return
	}
	if err := c.rewrite(ctx, l); err != nil && ctx.Err() == nil {
		c.logger.Warn("rewrite peer row", "peer", l.id, "error", err)
	}
}

// rewrite writes l's row and tunnels again from memory.
func (c *Coordinator) rewrite(ctx context.Context, l *local) error {
	mu := c.stripe(l.id)
	mu.Lock()
	defer mu.Unlock()
	if !c.current(l) {
		return errors.New("registration replaced")
	}
	c.mu.Lock()
	node, seq := l.node, l.seq
	c.mu.Unlock()
	err := c.retry(ctx, "rewrite peer", func(ctx context.Context) error {
		return pgx.BeginFunc(ctx, c.pool, func(tx pgx.Tx) error {
			_, err := c.writePeer(ctx, tx, l, node, seq)
			return err
		})
	})
	if err != nil {
		return err
	}
	c.notify(eventPeer, l.id.String())
	return nil
}

// takenOver ends l without touching the tables: another registration of
// the peer owns its row now.
func (c *Coordinator) takenOver(l *local) {
	c.mu.Lock()
	closeLocal(l)
	if c.locals[l.id] == l {
		delete(c.locals, l.id)
	}
	// Local partners were shown l's node from memory: they look at the
	// tables' (the new registration's) now.
	c.related[l.id] = struct{}{}
	c.mu.Unlock()
	c.poke()
}

// gone ends registration l: a clean goodbye deletes the peer and the
// tunnels it asked for; otherwise the peer is marked lost.
func (c *Coordinator) gone(l *local, goodbye bool) {
	mu := c.stripe(l.id)
	mu.Lock()
	defer mu.Unlock()
	c.mu.Lock()
	closeLocal(l)
	mine := c.locals[l.id] == l
	if mine {
		delete(c.locals, l.id)
	}
	closed := c.closed
	c.mu.Unlock()
	if !mine || closed {
		// Replaced by a newer registration, or shutting down (Close marks
		// every peer lost at once).
		return
	}
	ctx := c.ctx
	var err error
	if goodbye {
		err = c.retry(ctx, "delete peer", func(ctx context.Context) error {
			return pgx.BeginFunc(ctx, c.pool, func(tx pgx.Tx) error {
				tag, err := tx.Exec(ctx, `DELETE FROM tailnet_peers WHERE id = $1 AND registration = $2`, l.id, l.reg)
				if err != nil || tag.RowsAffected() == 0 {
					return err
				}
				_, err = tx.Exec(ctx, `DELETE FROM tailnet_tunnels WHERE src_id = $1`, l.id)
				return err
			})
		})
	} else {
		err = c.retry(ctx, "mark peer lost", func(ctx context.Context) error {
			_, err := c.pool.Exec(ctx, `UPDATE tailnet_peers SET status = 'lost', updated_at = $3 WHERE id = $1 AND registration = $2`, l.id, l.reg, c.now())
			return err
		})
	}
	if err == nil {
		c.notify(eventPeer, l.id.String())
	}
	c.logger.Debug("peer gone", "peer", l.id, "name", l.name, "goodbye", goodbye)
}

// retry runs fn until it succeeds or ctx ends: a database outage delays
// coordination but loses no request.
func (c *Coordinator) retry(ctx context.Context, what string, fn func(context.Context) error) error {
	backoff := 50 * time.Millisecond
	for attempt := 0; ; attempt++ {
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := fn(qctx)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if attempt == 0 || attempt%20 == 0 {
			c.logger.Warn("coordinator database write failed, retrying", "op", what, "error", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// notify publishes an event; a failure is logged (the other coordinators
// catch up at their next full resync).
func (c *Coordinator) notify(event, payload string) {
	if err := c.ps.Publish(event, []byte(payload)); err != nil && !errors.Is(err, pubsub.ErrClosed) {
		c.logger.Warn("coordinator publish failed", "event", event, "error", err)
		c.markAll()
	}
}

// send queues r for l without blocking; a full queue drops l (lost).
func (c *Coordinator) send(l *local, r *coordinator.Response) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sendLocked(l, r)
}

func (c *Coordinator) sendLocked(l *local, r *coordinator.Response) bool {
	if l.closed {
		return false
	}
	select {
	case l.resps <- r:
		return true
	default:
		c.logger.Warn("peer too slow, dropping its connection", "peer", l.id, "name", l.name, "queue", cap(l.resps))
		closeLocal(l)
		if !c.closed {
			// Its tunnel peers learn it is lost now, not when its
			// requests end.
			c.wg.Add(1)
			go func() {
				defer c.wg.Done()
				c.gone(l, false)
			}()
		}
		return false
	}
}

func closeLocal(l *local) {
	if !l.closed {
		l.closed = true
		close(l.resps)
	}
}

// --- fan-out ---------------------------------------------------------------

func (c *Coordinator) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *Coordinator) markDirty(ids ...uuid.UUID) {
	c.mu.Lock()
	for _, id := range ids {
		c.dirty[id] = struct{}{}
	}
	c.mu.Unlock()
	c.poke()
}

func (c *Coordinator) markAll() {
	c.mu.Lock()
	c.dirtyAll = true
	c.mu.Unlock()
	c.poke()
}

func (c *Coordinator) onPeerEvent(_ context.Context, msg []byte, err error) {
	if err != nil {
		c.logger.Info("coordinator events may have been missed, resynchronising from the database", "error", err)
		c.markAll()
		return
	}
	// One peer ID, or nodesPrefix and IDs separated by commas (a batch of
	// node writes).
	payload, nodes := strings.CutPrefix(string(msg), nodesPrefix)
	c.mu.Lock()
	set := c.related // the fan-out swaps the sets under c.mu
	if nodes {
		set = c.updated
	}
	for s := range strings.SplitSeq(payload, ",") {
		id, perr := uuid.Parse(s)
		if perr != nil {
			continue
		}
		set[id] = struct{}{}
		if _, ok := c.locals[id]; ok && !nodes {
			c.dirty[id] = struct{}{}
		}
	}
	c.mu.Unlock()
	c.poke()
}

func (c *Coordinator) onTunnelEvent(_ context.Context, msg []byte, err error) {
	if err != nil {
		c.markAll()
		return
	}
	src, dst, ok := strings.Cut(string(msg), ",")
	if !ok {
		return
	}
	var ids []uuid.UUID
	for _, s := range []string{src, dst} {
		if id, err := uuid.Parse(s); err == nil {
			ids = append(ids, id)
		}
	}
	c.markDirty(ids...)
}

func (c *Coordinator) onCoordinatorEvent(_ context.Context, _ []byte, _ error) {
	c.markAll()
}

func (c *Coordinator) fanOutLoop() {
	defer c.wg.Done()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-c.wake:
		}
		for c.ctx.Err() == nil {
			c.mu.Lock()
			all, dirty, related, updated := c.dirtyAll, c.dirty, c.related, c.updated
			c.dirtyAll = false
			c.dirty, c.related, c.updated = map[uuid.UUID]struct{}{}, map[uuid.UUID]struct{}{}, map[uuid.UUID]struct{}{}
			if all {
				for id := range c.locals {
					dirty[id] = struct{}{}
				}
			}
			// A local peer that knows one of the changed peers must look
			// again even if their tunnel is gone.
			if len(related)+len(updated) > 0 {
				for _, l := range c.locals {
					if knowsAny(l, related) || knowsAny(l, updated) {
						dirty[l.id] = struct{}{}
					}
				}
			}
			c.mu.Unlock()
			if len(dirty) == 0 && len(related) == 0 {
				break
			}
			if err := c.fanOut(dirty, related); err != nil {
				if c.ctx.Err() != nil {
					return
				}
				c.logger.Warn("coordinator fan-out failed, retrying", "error", err)
				c.mu.Lock()
				for id := range dirty {
					c.dirty[id] = struct{}{}
				}
				for id := range related {
					c.related[id] = struct{}{}
				}
				c.mu.Unlock()
				select {
				case <-c.ctx.Done():
					return
				case <-time.After(250 * time.Millisecond):
				}
			}
		}
	}
}

type viewEntry struct {
	node json.RawMessage
	reg  uuid.UUID
	seq  int64
	lost bool
}

// fanOut recomputes the views of the dirty local peers and of the local
// tunnel partners of the related peers, and sends each the difference.
func (c *Coordinator) fanOut(dirty, related map[uuid.UUID]struct{}) error {
	ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
	defer cancel()
	if len(related) > 0 {
		ids := keys(related)
		rows, err := c.pool.Query(ctx, `SELECT src_id, dst_id FROM tailnet_tunnels WHERE src_id = ANY($1) OR dst_id = ANY($1)`, ids)
		if err != nil {
			return fmt.Errorf("find tunnel partners: %w", err)
		}
		pairs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[struct{ Src, Dst uuid.UUID }])
		if err != nil {
			return fmt.Errorf("find tunnel partners: %w", err)
		}
		c.mu.Lock()
		for _, p := range pairs {
			for _, id := range []uuid.UUID{p.Src, p.Dst} {
				if _, ok := c.locals[id]; ok {
					dirty[id] = struct{}{}
				}
			}
		}
		c.mu.Unlock()
	}
	if len(dirty) == 0 {
		return nil
	}
	ids := keys(dirty)
	c.mu.Lock()
	readGen := c.gen
	c.mu.Unlock()
	cutoff := c.now().Add(-3 * c.opts.HeartbeatInterval)
	// The views and the registrations in one round trip.
	var batch pgx.Batch
	batch.Queue(`
		WITH rel AS (
			SELECT src_id AS me, dst_id AS other FROM tailnet_tunnels WHERE src_id = ANY($1)
			UNION
			SELECT dst_id, src_id FROM tailnet_tunnels WHERE dst_id = ANY($1)
		)
		SELECT rel.me, rel.other, p.registration, p.node, p.node_seq, (p.status = 'ok' AND c.heartbeat_at >= $2) AS up
		FROM rel
		JOIN tailnet_peers p ON p.id = rel.other
		JOIN tailnet_coordinators c ON c.id = p.coordinator_id`, ids, cutoff)
	batch.Queue(`SELECT id, registration FROM tailnet_peers WHERE id = ANY($1)`, ids)
	br := c.pool.SendBatch(ctx, &batch)
	defer br.Close()
	rows, err := br.Query()
	if err != nil {
		return fmt.Errorf("load views: %w", err)
	}
	views := map[uuid.UUID]map[uuid.UUID]viewEntry{}
	var (
		me, other uuid.UUID
		preg      uuid.UUID
		node      []byte
		seq       int64
		up        bool
	)
	_, err = pgx.ForEachRow(rows, []any{&me, &other, &preg, &node, &seq, &up}, func() error {
		v := views[me]
		if v == nil {
			v = map[uuid.UUID]viewEntry{}
			views[me] = v
		}
		e := viewEntry{lost: !up, reg: preg, seq: seq}
		if node != nil {
			e.node = json.RawMessage(bytes.Clone(node))
		}
		v[other] = e
		return nil
	})
	if err != nil {
		return fmt.Errorf("load views: %w", err)
	}
	// Registrations taken over by another coordinator end here.
	rows, err = br.Query()
	if err != nil {
		return fmt.Errorf("load registrations: %w", err)
	}
	regs := map[uuid.UUID]uuid.UUID{}
	var id, reg uuid.UUID
	if _, err := pgx.ForEachRow(rows, []any{&id, &reg}, func() error { regs[id] = reg; return nil }); err != nil {
		return fmt.Errorf("load registrations: %w", err)
	}
	if err := br.Close(); err != nil {
		return fmt.Errorf("load views: %w", err)
	}

	var suspects []*local
	c.mu.Lock()
	for _, id := range ids {
		l := c.locals[id]
		if l == nil || l.closed || !l.registered {
			// Not registered yet: its registration marks it dirty again
			// once its row is written, and its snapshot follows then.
			continue
		}
		if r, ok := regs[id]; ok && r != l.reg {
			// Taken over elsewhere, or our read predates l's own
			// registration: check again below.
			suspects = append(suspects, l)
		}
		c.diffLocked(l, views[id], readGen)
	}
	c.mu.Unlock()
	for _, l := range suspects {
		c.checkTakenOver(ctx, l)
	}
	return nil
}

// checkTakenOver ends l when the peer's row belongs to another
// registration. It reads under the peer's stripe lock, so l's own
// registration write is either complete or not started.
func (c *Coordinator) checkTakenOver(ctx context.Context, l *local) {
	mu := c.stripe(l.id)
	mu.Lock()
	defer mu.Unlock()
	c.mu.Lock()
	registered := l.registered
	c.mu.Unlock()
	if !registered || !c.current(l) {
		return
	}
	var reg uuid.UUID
	if err := c.pool.QueryRow(ctx, `SELECT registration FROM tailnet_peers WHERE id = $1`, l.id).Scan(&reg); err != nil {
		return
	}
	if reg != l.reg {
		c.logger.Debug("peer registered elsewhere, dropping this connection", "peer", l.id)
		c.takenOver(l)
	}
}

// diffLocked sends l what changed between what it was told and view, as
// the in-memory coordinator would have: every node update of a tunnel peer
// (the latest, when several happened since), lost when it drops, and
// disconnected when it left or the tunnel is gone. A tunnel peer without a
// node yet is known but not announced.
//
// The first view of a registration is sent whole, as one snapshot: every
// tunnel peer (a node, or lost when it is away or has no node yet), so a
// peer resuming after an outage drops the tunnel peers removed meanwhile.
//
// The tables never overrule memory: a tunnel peer served here (its row
// being this registration's) is seen as memory has it, and a pair
// delivered to by the fast path after the view was read (stamp > readGen)
// is left alone, l being marked dirty to look again with a fresh read.
func (c *Coordinator) diffLocked(l *local, view map[uuid.UUID]viewEntry, readGen uint64) {
	for other, e := range view {
		if o := c.locals[other]; o != nil && !o.closed && o.registered && o.reg == e.reg {
			view[other] = viewEntry{node: o.node, reg: o.reg, seq: o.seq}
		}
	}
	if !l.snapshotSent {
		ups := make([]coordinator.PeerUpdate, 0, len(view))
		for other, e := range view {
			if e.lost || e.node == nil {
				ups = append(ups, coordinator.PeerUpdate{ID: other, Kind: coordinator.KindLost})
				l.sent[other] = sentState{lost: e.lost}
				continue
			}
			ups = append(ups, coordinator.PeerUpdate{ID: other, Kind: coordinator.KindNode, Node: e.node})
			l.sent[other] = sentState{reg: e.reg, seq: e.seq}
		}
		if c.sendLocked(l, &coordinator.Response{Updates: ups, Snapshot: true, Epoch: Epoch}) {
			l.snapshotSent = true
		}
		return
	}
	var ups []coordinator.PeerUpdate
	for other, e := range view {
		prev, known := l.sent[other]
		if known && prev.stamp > readGen {
			c.dirty[l.id] = struct{}{}
			continue
		}
		switch {
		case e.lost:
			if known && !prev.lost {
				ups = append(ups, coordinator.PeerUpdate{ID: other, Kind: coordinator.KindLost})
				l.sent[other] = sentState{lost: true, reg: prev.reg, seq: prev.seq}
			}
		case e.node == nil:
			// Registered, no node yet (it just (re)connected): nothing to
			// say until it sends one.
			if !known {
				l.sent[other] = sentState{}
			} else if prev.lost {
				l.sent[other] = sentState{reg: prev.reg, seq: prev.seq}
			}
		default:
			if !known || prev.lost || prev.reg != e.reg || prev.seq != e.seq {
				ups = append(ups, coordinator.PeerUpdate{ID: other, Kind: coordinator.KindNode, Node: e.node})
				l.sent[other] = sentState{reg: e.reg, seq: e.seq}
			}
		}
	}
	for other, prev := range l.sent {
		if prev.stamp > readGen {
			c.dirty[l.id] = struct{}{}
			continue
		}
		if _, ok := view[other]; !ok {
			ups = append(ups, coordinator.PeerUpdate{ID: other, Kind: coordinator.KindDisconnected})
			delete(l.sent, other)
		}
	}
	for _, u := range ups {
		// One update per response, as the in-memory coordinator sends them.
		if !c.sendLocked(l, &coordinator.Response{Updates: []coordinator.PeerUpdate{u}}) {
			return
		}
	}
}

// knowsAny reports whether l was told about one of ids.
func knowsAny(l *local, ids map[uuid.UUID]struct{}) bool {
	if len(ids) > len(l.sent) {
		for id := range l.sent {
			if _, ok := ids[id]; ok {
				return true
			}
		}
		return false
	}
	for id := range ids {
		if _, ok := l.sent[id]; ok {
			return true
		}
	}
	return false
}

func keys(m map[uuid.UUID]struct{}) []uuid.UUID {
	out := make([]uuid.UUID, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// --- heartbeats ------------------------------------------------------------

func (c *Coordinator) heartbeatLoop() {
	defer c.wg.Done()
	t := time.NewTicker(c.opts.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(c.ctx, max(c.opts.HeartbeatInterval, time.Second))
		err := c.heartbeat(ctx)
		cancel()
		if err != nil && c.ctx.Err() == nil {
			c.logger.Warn("coordinator heartbeat failed", "error", err)
		}
	}
}

// heartbeat refreshes this coordinator's row, expires lost peers and dead
// coordinators, and resynchronises every local view when a coordinator's
// liveness changed.
func (c *Coordinator) heartbeat(ctx context.Context) error {
	now := c.now()
	var inserted bool
	if err := c.pool.QueryRow(ctx, `INSERT INTO tailnet_coordinators (id, heartbeat_at) VALUES ($1, $2)
		ON CONFLICT (id) DO UPDATE SET heartbeat_at = $2 RETURNING (xmax = 0)`, c.id, now).Scan(&inserted); err != nil {
		return fmt.Errorf("coordinator heartbeat: %w", err)
	}
	expired := now.Add(-c.opts.LostTimeout)
	rows, err := c.pool.Query(ctx, `DELETE FROM tailnet_peers WHERE coordinator_id = $1 AND status = 'lost' AND updated_at < $2 RETURNING id`, c.id, expired)
	if err != nil {
		return fmt.Errorf("expire lost peers: %w", err)
	}
	gone, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil {
		return fmt.Errorf("expire lost peers: %w", err)
	}
	if len(gone) > 0 {
		if _, err := c.pool.Exec(ctx, `DELETE FROM tailnet_tunnels WHERE coordinator_id = $1 AND src_id = ANY($2)`, c.id, gone); err != nil {
			return fmt.Errorf("expire lost peers' tunnels: %w", err)
		}
		for _, id := range gone {
			c.notify(eventPeer, id.String())
		}
	}
	tag, err := c.pool.Exec(ctx, `DELETE FROM tailnet_coordinators WHERE heartbeat_at < $1 AND id <> $2`, expired, c.id)
	if err != nil {
		return fmt.Errorf("expire dead coordinators: %w", err)
	}
	if tag.RowsAffected() > 0 {
		c.notify(eventCoordinator, c.id.String())
	}
	rows, err = c.pool.Query(ctx, `SELECT id, heartbeat_at >= $1 FROM tailnet_coordinators`, now.Add(-3*c.opts.HeartbeatInterval))
	if err != nil {
		return fmt.Errorf("read coordinators: %w", err)
	}
	alive := map[uuid.UUID]bool{}
	var id uuid.UUID
	var up bool
	if _, err := pgx.ForEachRow(rows, []any{&id, &up}, func() error { alive[id] = up; return nil }); err != nil {
		return fmt.Errorf("read coordinators: %w", err)
	}
	c.mu.Lock()
	changed := len(alive) != len(c.alive)
	for k, v := range alive {
		if c.alive[k] != v {
			changed = true
		}
	}
	c.alive = alive
	var rewrite []*local
	if inserted && len(c.locals) > 0 {
		// Our row had been expired (we were presumed dead): write our
		// peers again.
		for _, l := range c.locals {
			rewrite = append(rewrite, l)
		}
	}
	c.mu.Unlock()
	for _, l := range rewrite {
		if err := c.rewrite(ctx, l); err != nil && ctx.Err() == nil {
			c.logger.Warn("rewrite peer after coordinator expiry", "peer", l.id, "error", err)
		}
	}
	if changed {
		c.markAll()
	}
	return nil
}

// Close disconnects every local peer, marks them lost in the database (their
// tunnel peers keep their sessions and learn they are lost; the peers
// reconnect to another replica) and stops the coordinator.
func (c *Coordinator) Close() error { return c.shutdown(true) }

// shutdown stops the coordinator; graceful also records it in the
// database (a crash leaves that to the others' heartbeat checks).
func (c *Coordinator) shutdown(graceful bool) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	for _, l := range c.locals {
		closeLocal(l)
	}
	c.locals = map[uuid.UUID]*local{}
	c.mu.Unlock()
	c.cancel()
	c.wg.Wait()
	for _, u := range c.unsubs {
		u()
	}
	if !graceful {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.pool.Exec(ctx, `UPDATE tailnet_peers SET status = 'lost', updated_at = $2 WHERE coordinator_id = $1`, c.id, c.now()); err != nil {
		return fmt.Errorf("pgcoord: mark peers lost on close: %w", err)
	}
	if err := c.ps.PublishContext(ctx, eventCoordinator, []byte(c.id.String())); err != nil && !errors.Is(err, pubsub.ErrClosed) {
		return fmt.Errorf("pgcoord: announce close: %w", err)
	}
	return nil
}
