package coordinator

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
)

// Defaults of InMemoryOptions.
const (
	DefaultQueueSize   = 512
	DefaultLostTimeout = 15 * time.Minute
	requestQueueSize   = 16
)

// InMemoryOptions configures NewInMemoryWithOptions.
type InMemoryOptions struct {
	// Logger receives debug and warning logs; nil discards them.
	Logger *slog.Logger
	// QueueSize bounds each peer's queue of responses (default 512). A peer
	// whose queue is full is dropped (its response channel closed) instead
	// of slowing others down; its tunnel peers learn it is lost.
	QueueSize int
	// LostTimeout is how long a lost peer's tunnels are kept for it to
	// resume (default 15 minutes). When it expires, tunnel peers learn the
	// peer disconnected.
	LostTimeout time.Duration
}

// InMemory is a Coordinator for a single coderd replica.
type InMemory struct {
	logger      *slog.Logger
	queueSize   int
	lostTimeout time.Duration
	// epoch names this coordinator's lifetime in snapshots: its tunnel
	// table starts empty, so a peer's snapshot from a previous coordinator
	// process says nothing about this one's removals.
	epoch string

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	closed  bool
	nextGen uint64
	peers   map[uuid.UUID]*peerState
	// tunnels[src][dst] and its mirror reverse[dst][src].
	tunnels map[uuid.UUID]map[uuid.UUID]struct{}
	reverse map[uuid.UUID]map[uuid.UUID]struct{}
}

type peerState struct {
	id   uuid.UUID
	name string
	node json.RawMessage
	// conn is the current registration; nil while the peer is lost.
	conn      *binding
	lostTimer *time.Timer
}

type binding struct {
	gen    uint64
	resps  chan *Response
	closed bool
}

var _ Coordinator = (*InMemory)(nil)

// NewInMemory returns an in-memory coordinator with default options.
func NewInMemory(logger *slog.Logger) *InMemory {
	return NewInMemoryWithOptions(InMemoryOptions{Logger: logger})
}

// NewInMemoryWithOptions returns an in-memory coordinator.
func NewInMemoryWithOptions(opts InMemoryOptions) *InMemory {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = DefaultQueueSize
	}
	if opts.LostTimeout <= 0 {
		opts.LostTimeout = DefaultLostTimeout
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &InMemory{
		logger:      logger.With("component", "coordinator"),
		queueSize:   opts.QueueSize,
		lostTimeout: opts.LostTimeout,
		epoch:       "inmemory:" + uuid.NewString(),
		ctx:         ctx,
		cancel:      cancel,
		peers:       map[uuid.UUID]*peerState{},
		tunnels:     map[uuid.UUID]map[uuid.UUID]struct{}{},
		reverse:     map[uuid.UUID]map[uuid.UUID]struct{}{},
	}
}

// Coordinate implements Coordinator.
func (c *InMemory) Coordinate(ctx context.Context, id uuid.UUID, name string, auth TunnelAuth) (chan<- *Request, <-chan *Response) {
	reqs := make(chan *Request, requestQueueSize)
	resps := make(chan *Response, c.queueSize)

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		close(resps)
		return reqs, resps
	}
	c.nextGen++
	b := &binding{gen: c.nextGen, resps: resps}
	p := c.peers[id]
	if p == nil {
		p = &peerState{id: id}
		c.peers[id] = p
	}
	p.name = name
	if p.lostTimer != nil {
		p.lostTimer.Stop()
		p.lostTimer = nil
	}
	if old := p.conn; old != nil {
		c.logger.Debug("peer registered again, dropping previous connection", "peer", id, "name", name)
		closeBinding(old)
	}
	p.conn = b

	// The peer learns its whole set of tunnel peers: the nodes of the
	// connected ones (resumption), the others as lost. A peer it still
	// holds from before and that is not listed was removed while it was
	// away (a revoked client), and it drops it.
	updates := []PeerUpdate{}
	c.forEachTunnelPeerLocked(id, func(q *peerState) {
		if q.conn != nil && q.node != nil {
			updates = append(updates, PeerUpdate{ID: q.id, Kind: KindNode, Node: q.node})
		} else {
			updates = append(updates, PeerUpdate{ID: q.id, Kind: KindLost})
		}
	})
	c.sendLocked(p, &Response{Updates: updates, Snapshot: true, Epoch: c.epoch})

	peerCtx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(c.ctx, cancel)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer cancel()
		defer stop()
		c.serve(peerCtx, p, b, reqs, auth)
	}()
	c.logger.Debug("peer connected", "peer", id, "name", name)
	return reqs, resps
}

// serve handles one registration's requests until it ends.
func (c *InMemory) serve(ctx context.Context, p *peerState, b *binding, reqs <-chan *Request, auth TunnelAuth) {
	for {
		select {
		case <-ctx.Done():
			c.peerGone(p, b, KindLost)
			return
		case req, ok := <-reqs:
			if !ok {
				c.peerGone(p, b, KindLost)
				return
			}
			if req == nil {
				continue
			}
			if req.Type == TypeDisconnect {
				c.peerGone(p, b, KindDisconnected)
				return
			}
			c.handle(ctx, p, b, req, auth)
		}
	}
}

func (c *InMemory) handle(ctx context.Context, p *peerState, b *binding, req *Request, auth TunnelAuth) {
	switch req.Type {
	case TypeUpdateSelf:
		c.mu.Lock()
		defer c.mu.Unlock()
		if p.conn != b {
			return
		}
		p.node = req.Node
		up := &Response{Updates: []PeerUpdate{{ID: p.id, Kind: KindNode, Node: p.node}}}
		c.forEachTunnelPeerLocked(p.id, func(q *peerState) { c.sendLocked(q, up) })

	case TypeAddTunnel:
		var err error
		switch {
		case req.Dst == p.id:
			err = errSelfTunnel
		case auth == nil:
			err = errNoAuth
		default:
			err = auth.AuthorizeTunnel(ctx, p.id, req.Dst)
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if p.conn != b {
			return
		}
		if err != nil {
			c.logger.Info("tunnel refused", "src", p.id, "name", p.name, "dst", req.Dst, "err", err)
			c.sendLocked(p, &Response{Error: "tunnel to " + req.Dst.String() + " not authorized"})
			return
		}
		addEdge(c.tunnels, p.id, req.Dst)
		addEdge(c.reverse, req.Dst, p.id)
		if q := c.peers[req.Dst]; q != nil && q.conn != nil {
			if q.node != nil {
				c.sendLocked(p, &Response{Updates: []PeerUpdate{{ID: q.id, Kind: KindNode, Node: q.node}}})
			}
			if p.node != nil {
				c.sendLocked(q, &Response{Updates: []PeerUpdate{{ID: p.id, Kind: KindNode, Node: p.node}}})
			}
		}

	case TypeRemoveTunnel:
		c.mu.Lock()
		defer c.mu.Unlock()
		if p.conn != b {
			return
		}
		if !hasEdge(c.tunnels, p.id, req.Dst) {
			return
		}
		delEdge(c.tunnels, p.id, req.Dst)
		delEdge(c.reverse, req.Dst, p.id)
		if hasEdge(c.tunnels, req.Dst, p.id) {
			return // still connected by the reverse tunnel
		}
		c.sendLocked(p, &Response{Updates: []PeerUpdate{{ID: req.Dst, Kind: KindDisconnected}}})
		if q := c.peers[req.Dst]; q != nil {
			c.sendLocked(q, &Response{Updates: []PeerUpdate{{ID: p.id, Kind: KindDisconnected}}})
		}

	default:
		c.logger.Warn("ignoring unknown request", "peer", p.id, "type", req.Type)
	}
}

// peerGone ends registration b of p: lost, or disconnected after a goodbye.
func (c *InMemory) peerGone(p *peerState, b *binding, kind UpdateKind) {
	c.mu.Lock()
	defer c.mu.Unlock()
	closeBinding(b)
	if p.conn != b || c.closed {
		return // replaced by a newer registration, dropped, or shutting down
	}
	c.dropLocked(p, kind)
}

// dropLocked detaches p's current registration and tells its tunnel peers.
func (c *InMemory) dropLocked(p *peerState, kind UpdateKind) {
	p.conn = nil
	up := &Response{Updates: []PeerUpdate{{ID: p.id, Kind: kind}}}
	c.forEachTunnelPeerLocked(p.id, func(q *peerState) { c.sendLocked(q, up) })
	c.logger.Debug("peer gone", "peer", p.id, "name", p.name, "kind", kind)
	if kind == KindDisconnected {
		c.forgetLocked(p)
		return
	}
	p.lostTimer = time.AfterFunc(c.lostTimeout, func() { c.expire(p) })
}

// expire forgets a peer that stayed lost for LostTimeout.
func (c *InMemory) expire(p *peerState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.peers[p.id] != p || p.conn != nil {
		return
	}
	up := &Response{Updates: []PeerUpdate{{ID: p.id, Kind: KindDisconnected}}}
	c.forEachTunnelPeerLocked(p.id, func(q *peerState) { c.sendLocked(q, up) })
	c.forgetLocked(p)
}

// forgetLocked removes p and the tunnels it asked for. Tunnels other peers
// asked for towards p stay: p may come back.
func (c *InMemory) forgetLocked(p *peerState) {
	for dst := range c.tunnels[p.id] {
		delEdge(c.reverse, dst, p.id)
	}
	delete(c.tunnels, p.id)
	if p.lostTimer != nil {
		p.lostTimer.Stop()
		p.lostTimer = nil
	}
	delete(c.peers, p.id)
}

// sendLocked queues r for q without blocking; a full queue drops q.
func (c *InMemory) sendLocked(q *peerState, r *Response) {
	b := q.conn
	if b == nil || b.closed {
		return
	}
	select {
	case b.resps <- r:
	default:
		c.logger.Warn("peer too slow, dropping its connection", "peer", q.id, "name", q.name, "queue", cap(b.resps))
		closeBinding(b)
		c.dropLocked(q, KindLost)
	}
}

// forEachTunnelPeerLocked calls fn for every known peer sharing a tunnel
// with id, once each.
func (c *InMemory) forEachTunnelPeerLocked(id uuid.UUID, fn func(*peerState)) {
	for dst := range c.tunnels[id] {
		if q := c.peers[dst]; q != nil {
			fn(q)
		}
	}
	for src := range c.reverse[id] {
		if hasEdge(c.tunnels, id, src) {
			continue // already visited
		}
		if q := c.peers[src]; q != nil {
			fn(q)
		}
	}
}

// Close implements Coordinator.
func (c *InMemory) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	for _, p := range c.peers {
		if p.lostTimer != nil {
			p.lostTimer.Stop()
			p.lostTimer = nil
		}
	}
	c.mu.Unlock()
	c.cancel()
	c.wg.Wait()
	return nil
}

func closeBinding(b *binding) {
	if !b.closed {
		b.closed = true
		close(b.resps)
	}
}

func addEdge(m map[uuid.UUID]map[uuid.UUID]struct{}, a, b uuid.UUID) {
	s := m[a]
	if s == nil {
		s = map[uuid.UUID]struct{}{}
		m[a] = s
	}
	s[b] = struct{}{}
}

func delEdge(m map[uuid.UUID]map[uuid.UUID]struct{}, a, b uuid.UUID) {
	if s := m[a]; s != nil {
		delete(s, b)
		if len(s) == 0 {
			delete(m, a)
		}
	}
}

func hasEdge(m map[uuid.UUID]map[uuid.UUID]struct{}, a, b uuid.UUID) bool {
	_, ok := m[a][b]
	return ok
}

type coordError string

func (e coordError) Error() string { return string(e) }

const (
	errSelfTunnel coordError = "a peer cannot open a tunnel to itself"
	errNoAuth     coordError = "no tunnel authorization configured"
)
