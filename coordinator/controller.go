package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"
	"tailscale.com/tailcfg"

	"github.com/wgmesh/coder/tunnel"
)

// Defaults of ControllerOptions.
const (
	DefaultBackoffMin = 100 * time.Millisecond
	// DefaultBackoffMax keeps a peer within 2 s of a coderd that comes
	// back, however long it was gone (the usual outage is a restart). While
	// coderd is down each peer dials every 1-2 s: a refused connection,
	// cheap for coderd's host and its load balancer.
	DefaultBackoffMax = 2 * time.Second
	// clientReadLimit bounds a frame from the coordinator (DERP maps of many
	// regions, batches of peer updates).
	clientReadLimit = 8 << 20
	// DefaultUnconfirmedPeerTimeout leaves peers far more time than the
	// 2 s reconnect backoff to come back to a restarted coordinator.
	DefaultUnconfirmedPeerTimeout = 2 * time.Minute
	goodbyeTimeout                = 5 * time.Second
)

// TunnelConn is what the Controller drives; *tunnel.Conn implements it.
type TunnelConn interface {
	SetNodeCallback(func(*tunnel.Node))
	UpdatePeers(updates []*tunnel.PeerUpdate) error
	SetDERPMap(m *tailcfg.DERPMap) error
	SetCoordinatorConnected(connected bool)
}

var _ TunnelConn = (*tunnel.Conn)(nil)

// Dialer opens an authenticated websocket to the coordinator (coderd adds
// the agent token or session cookie; tests dial httptest).
type Dialer func(ctx context.Context) (*websocket.Conn, error)

// ControllerOptions configures NewController.
type ControllerOptions struct {
	// Conn is the tunnel to keep in sync. Required.
	Conn TunnelConn
	// Dial connects to the coordinator. Required.
	Dial Dialer
	// Logger; nil discards.
	Logger *slog.Logger
	// BackoffMin and BackoffMax bound the jittered exponential wait between
	// failed dials (defaults 100ms and 2s). The backoff starts over once a
	// connection is established: the first redial after a drop waits at
	// most BackoffMin, however many outages came before.
	BackoffMin, BackoffMax time.Duration
	// UnconfirmedPeerTimeout is how long a tunnel peer is kept after a
	// restarted coordinator (a snapshot of a new epoch) did not list it
	// (default DefaultUnconfirmedPeerTimeout). A peer that reconnects within
	// it is listed again and stays; one that never comes back (e.g. revoked
	// while coderd restarted) is then disconnected.
	UnconfirmedPeerTimeout time.Duration
}

// Controller is the client side of the coordination protocol: it keeps one
// websocket to the coordinator up (reconnecting with backoff), publishes
// the Conn's node whenever it changes, asks for the wanted tunnels, and
// applies peer updates and DERP maps to the Conn.
type Controller struct {
	conn       TunnelConn
	dial       Dialer
	sleep      func(ctx context.Context, d time.Duration) bool
	logger     *slog.Logger
	backoffMin time.Duration
	backoffMax time.Duration

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	// nodeSignal and tunnelSignal (capacity 1) wake the session loop.
	nodeSignal   chan struct{}
	tunnelSignal chan struct{}

	mu      sync.Mutex
	node    *tunnel.Node
	tunnels map[uuid.UUID]struct{}
	// known are the tunnel peers handed to the Conn (a node or lost, not
	// yet disconnected); epoch is that of the last snapshot.
	known map[uuid.UUID]struct{}
	epoch string
	// unconfirmed are known peers a restarted coordinator did not list;
	// dropped when the timer of generation unconfirmedGen fires.
	unconfirmed        map[uuid.UUID]struct{}
	unconfirmedGen     uint64
	unconfirmedTimer   *time.Timer
	unconfirmedTimeout time.Duration
	connected          bool
	connGen            uint64
	connCh             chan struct{} // closed and replaced on every connection change
}

// NewController starts a Controller. Stop it with Close.
func NewController(opts ControllerOptions) (*Controller, error) {
	return newController(opts, sleepCtx)
}

// newController is NewController with the wait between dials replaced
// (tests observe and release the waits instead of sleeping).
func newController(opts ControllerOptions, sleep func(ctx context.Context, d time.Duration) bool) (*Controller, error) {
	if opts.Conn == nil {
		return nil, errors.New("new controller: Conn is required")
	}
	if opts.Dial == nil {
		return nil, errors.New("new controller: Dial is required")
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if opts.BackoffMin <= 0 {
		opts.BackoffMin = DefaultBackoffMin
	}
	if opts.UnconfirmedPeerTimeout <= 0 {
		opts.UnconfirmedPeerTimeout = DefaultUnconfirmedPeerTimeout
	}
	if opts.BackoffMax < opts.BackoffMin {
		opts.BackoffMax = max(DefaultBackoffMax, opts.BackoffMin)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Controller{
		conn:               opts.Conn,
		dial:               opts.Dial,
		sleep:              sleep,
		logger:             logger.With("component", "coordinator-controller"),
		backoffMin:         opts.BackoffMin,
		backoffMax:         opts.BackoffMax,
		ctx:                ctx,
		cancel:             cancel,
		done:               make(chan struct{}),
		nodeSignal:         make(chan struct{}, 1),
		tunnelSignal:       make(chan struct{}, 1),
		tunnels:            map[uuid.UUID]struct{}{},
		known:              map[uuid.UUID]struct{}{},
		unconfirmed:        map[uuid.UUID]struct{}{},
		unconfirmedTimeout: opts.UnconfirmedPeerTimeout,
		connCh:             make(chan struct{}),
	}
	c.conn.SetNodeCallback(c.onNode)
	go c.run()
	return c, nil
}

// onNode is the Conn's node callback: remember the latest, wake the loop.
func (c *Controller) onNode(n *tunnel.Node) {
	c.mu.Lock()
	c.node = n
	c.mu.Unlock()
	signal(c.nodeSignal)
}

// AddTunnel asks for a tunnel to dst (kept across reconnections).
func (c *Controller) AddTunnel(dst uuid.UUID) {
	c.mu.Lock()
	c.tunnels[dst] = struct{}{}
	c.mu.Unlock()
	signal(c.tunnelSignal)
}

// RemoveTunnel drops the tunnel to dst.
func (c *Controller) RemoveTunnel(dst uuid.UUID) {
	c.mu.Lock()
	delete(c.tunnels, dst)
	c.mu.Unlock()
	signal(c.tunnelSignal)
}

// Connected reports whether the coordinator websocket is up, and returns a
// channel closed at the next change.
func (c *Controller) Connected() (bool, <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.connected, c.connCh
}

// Connections counts the websocket connections established so far.
func (c *Controller) Connections() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.connGen
}

// Close sends a goodbye on the current connection (tunnel peers learn we
// disconnected rather than got lost) and stops the Controller.
func (c *Controller) Close() error {
	c.cancel()
	<-c.done
	return nil
}

func (c *Controller) setConnected(v bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.connected == v {
		return
	}
	c.connected = v
	if v {
		c.connGen++
	}
	close(c.connCh)
	c.connCh = make(chan struct{})
}

func (c *Controller) run() {
	defer close(c.done)
	defer func() {
		c.mu.Lock()
		c.unconfirmedGen++
		if c.unconfirmedTimer != nil {
			c.unconfirmedTimer.Stop()
		}
		c.mu.Unlock()
	}()
	defer c.conn.SetNodeCallback(nil)
	// failures counts the dials that failed in a row since the last
	// established connection; it alone drives the backoff, so a short
	// outage leaves nothing behind once the coordinator answered again.
	failures := 0
	for c.ctx.Err() == nil {
		ws, err := c.dial(c.ctx)
		if err != nil {
			if c.ctx.Err() != nil {
				return
			}
			failures++
			c.logger.Warn("dial coordinator failed", "err", err, "attempt", failures)
		} else {
			started := time.Now()
			c.setConnected(true)
			c.conn.SetCoordinatorConnected(true)
			answered, err := c.session(ws)
			c.setConnected(false)
			if c.ctx.Err() != nil {
				return
			}
			c.conn.SetCoordinatorConnected(false)
			c.logger.Warn("coordinator connection ended", "err", err)
			// The connection counts as established once the coordinator
			// answered (it sends the DERP map first) or it stayed up for
			// a while; a coordinator that accepts and drops at once keeps
			// backing off instead of being redialled in a tight loop.
			if answered || time.Since(started) >= c.backoffMin {
				failures = 0
			} else {
				failures++
			}
		}
		if !c.sleep(c.ctx, c.retryDelay(failures)) {
			return
		}
	}
}

// retryDelay is the wait before the next dial. After an established
// connection dropped (failures == 0) it is a jitter in [0, BackoffMin]: the
// redial is immediate in effect, yet a fleet of peers that lost coderd at
// the same instant does not come back in lockstep. After n failed dials in a
// row the step is BackoffMin·2^(n-1), capped at BackoffMax, jittered to
// [step/2, step].
func (c *Controller) retryDelay(failures int) time.Duration {
	if failures <= 0 {
		return rand.N(c.backoffMin + 1)
	}
	step := c.backoffMin
	for i := 1; i < failures && step < c.backoffMax; i++ {
		step *= 2
	}
	step = min(step, c.backoffMax)
	return step/2 + rand.N(step/2+1)
}

// sleepCtx waits for d, returning false when ctx ends first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// session runs one websocket until it fails or the Controller closes. It
// reports whether the coordinator sent at least one frame.
func (c *Controller) session(ws *websocket.Conn) (answered bool, _ error) {
	ws.SetReadLimit(clientReadLimit)
	sctx, scancel := context.WithCancel(context.Background())
	defer scancel()

	type frame struct {
		env *Envelope
		err error
	}
	frames := make(chan frame, 16)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer scancel() // runs before wg.Wait: unblocks the reader
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			typ, data, err := ws.Read(sctx)
			if err == nil && typ != websocket.MessageText {
				err = errors.New("unexpected binary frame")
			}
			var env *Envelope
			if err == nil {
				env, err = DecodeEnvelope(data)
			}
			select {
			case frames <- frame{env, err}:
			case <-sctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()

	closeWith := func(code websocket.StatusCode, reason string) {
		_ = ws.Close(code, reason)
		scancel()
	}

	sent := map[uuid.UUID]struct{}{}
	var sentNode *tunnel.Node
	syncState := func() error {
		c.mu.Lock()
		n := c.node
		want := make(map[uuid.UUID]struct{}, len(c.tunnels))
		for d := range c.tunnels {
			want[d] = struct{}{}
		}
		c.mu.Unlock()
		if n != nil && n != sentNode {
			raw, err := json.Marshal(n)
			if err != nil {
				return fmt.Errorf("encode node: %w", err)
			}
			if err := writeEnvelope(sctx, ws, &Envelope{Version: ProtocolVersion, Type: TypeUpdateSelf, Node: raw}); err != nil {
				return err
			}
			sentNode = n
		}
		for d := range want {
			if _, ok := sent[d]; ok {
				continue
			}
			dst := d
			if err := writeEnvelope(sctx, ws, &Envelope{Version: ProtocolVersion, Type: TypeAddTunnel, Dst: &dst}); err != nil {
				return err
			}
			sent[d] = struct{}{}
		}
		for d := range sent {
			if _, ok := want[d]; ok {
				continue
			}
			dst := d
			if err := writeEnvelope(sctx, ws, &Envelope{Version: ProtocolVersion, Type: TypeRemoveTunnel, Dst: &dst}); err != nil {
				return err
			}
			delete(sent, d)
		}
		return nil
	}

	if err := syncState(); err != nil {
		closeWith(websocket.StatusInternalError, "write failed")
		return answered, err
	}
	for {
		select {
		case <-c.ctx.Done():
			gctx, gcancel := context.WithTimeout(context.Background(), goodbyeTimeout)
			err := writeEnvelope(gctx, ws, &Envelope{Version: ProtocolVersion, Type: TypeDisconnect})
			gcancel()
			closeWith(websocket.StatusNormalClosure, "goodbye")
			return answered, err
		case <-c.nodeSignal:
		case <-c.tunnelSignal:
		case f := <-frames:
			if f.err != nil {
				if IsRevoked(f.err) {
					c.dropTunnelPeers()
				}
				closeWith(websocket.StatusGoingAway, "read failed")
				return answered, fmt.Errorf("read from coordinator: %w", f.err)
			}
			answered = true
			c.apply(f.env)
			continue
		}
		if err := syncState(); err != nil {
			closeWith(websocket.StatusInternalError, "write failed")
			return answered, err
		}
	}
}

// dropTunnelPeers removes every tunnel destination from the Conn, as if
// each had disconnected: coderd revoked our access, so the agents already
// dropped us and connections through the tunnel can only hang. The wanted
// tunnels stay: if access comes back (a new key), the next connection asks
// for them again and the peers return.
func (c *Controller) dropTunnelPeers() {
	c.mu.Lock()
	updates := make([]*tunnel.PeerUpdate, 0, len(c.tunnels))
	for dst := range c.tunnels {
		updates = append(updates, &tunnel.PeerUpdate{PeerID: dst, Kind: tunnel.PeerDisconnected})
		delete(c.known, dst)
	}
	c.mu.Unlock()
	c.logger.Warn("coordinator revoked our access; dropping tunnel peers", "peers", len(updates))
	if err := c.conn.UpdatePeers(updates); err != nil {
		c.logger.Warn("drop tunnel peers", "err", err)
	}
}

// apply hands one coordinator frame to the Conn.
func (c *Controller) apply(env *Envelope) {
	switch env.Type {
	case TypePeerUpdate:
		updates := make([]*tunnel.PeerUpdate, 0, len(env.Updates))
		for _, u := range env.Updates {
			pu := &tunnel.PeerUpdate{PeerID: u.ID}
			switch u.Kind {
			case KindNode:
				var n tunnel.Node
				if err := json.Unmarshal(u.Node, &n); err != nil {
					c.logger.Warn("ignoring undecodable peer node", "peer", u.ID, "err", err)
					continue
				}
				pu.Kind, pu.Node = tunnel.PeerNode, &n
			case KindDisconnected:
				pu.Kind = tunnel.PeerDisconnected
			case KindLost:
				pu.Kind = tunnel.PeerLost
			}
			updates = append(updates, pu)
		}
		updates = c.track(env, updates)
		if len(updates) > 0 {
			if err := c.conn.UpdatePeers(updates); err != nil {
				c.logger.Warn("apply peer updates", "err", err)
			}
		}
	case TypeDERPMap:
		if err := c.conn.SetDERPMap(env.DERPMap); err != nil {
			c.logger.Warn("apply DERP map", "err", err)
		}
	case TypeError:
		c.logger.Warn("coordinator refused a request", "message", env.Message)
	default:
		c.logger.Warn("ignoring unexpected frame", "type", env.Type)
	}
}

// track records which peers the Conn holds after updates and, for a
// snapshot, returns updates plus the removal of every held peer the
// snapshot does not list: it stopped being a tunnel peer while we were not
// connected (a client revoked while this agent's coordinator connection was
// down). A snapshot of the same epoch as the previous one is authoritative:
// such a peer is disconnected at once, which ends its WireGuard session and
// the connections through it. After a coordinator restart (another epoch)
// the new coordinator knows only the peers that came back so far, so the
// others are given UnconfirmedPeerTimeout to reappear (a node update) before
// they are disconnected. Peers we ask a tunnel to ourselves are never
// dropped this way: the request for them follows on this connection.
//
// Lost entries of a snapshot only say the peer is still a tunnel peer; the
// Conn keeps whatever it has for them (as it would have, had we stayed
// connected while the peer was away and back).
func (c *Controller) track(env *Envelope, updates []*tunnel.PeerUpdate) []*tunnel.PeerUpdate {
	c.mu.Lock()
	defer c.mu.Unlock()
	if env.Snapshot {
		kept := updates[:0]
		for _, u := range updates {
			if u.Kind != tunnel.PeerLost {
				kept = append(kept, u)
			}
		}
		updates = kept
	}
	for _, u := range updates {
		switch u.Kind {
		case tunnel.PeerNode:
			c.known[u.PeerID] = struct{}{}
			delete(c.unconfirmed, u.PeerID)
		case tunnel.PeerDisconnected:
			delete(c.known, u.PeerID)
			delete(c.unconfirmed, u.PeerID)
		}
	}
	if !env.Snapshot {
		return updates
	}
	authoritative := env.Epoch != "" && env.Epoch == c.epoch
	c.epoch = env.Epoch
	listed := make(map[uuid.UUID]struct{}, len(env.Updates))
	for _, u := range env.Updates {
		listed[u.ID] = struct{}{}
	}
	var dropped, pending int
	for id := range c.known {
		if _, ok := listed[id]; ok {
			delete(c.unconfirmed, id)
			continue
		}
		if _, ok := c.tunnels[id]; ok {
			continue
		}
		if authoritative {
			updates = append(updates, &tunnel.PeerUpdate{PeerID: id, Kind: tunnel.PeerDisconnected})
			delete(c.known, id)
			delete(c.unconfirmed, id)
			dropped++
			continue
		}
		if _, ok := c.unconfirmed[id]; !ok {
			c.unconfirmed[id] = struct{}{}
			pending++
		}
	}
	if dropped > 0 {
		c.logger.Info("coordinator snapshot no longer lists some tunnel peers; dropping them", "peers", dropped)
	}
	if pending > 0 {
		c.logger.Info("new coordinator does not know some tunnel peers yet; dropping them unless they come back", "peers", pending, "timeout", c.unconfirmedTimeout)
		gen := c.unconfirmedGen + 1
		c.unconfirmedGen = gen
		c.unconfirmedTimer = time.AfterFunc(c.unconfirmedTimeout, func() { c.dropUnconfirmed(gen) })
	}
	return updates
}

// dropUnconfirmed disconnects the peers that a restarted coordinator never
// listed again within UnconfirmedPeerTimeout (timer generation gen).
func (c *Controller) dropUnconfirmed(gen uint64) {
	c.mu.Lock()
	if gen != c.unconfirmedGen || c.ctx.Err() != nil {
		c.mu.Unlock()
		return
	}
	updates := make([]*tunnel.PeerUpdate, 0, len(c.unconfirmed))
	for id := range c.unconfirmed {
		if _, want := c.tunnels[id]; want {
			continue
		}
		updates = append(updates, &tunnel.PeerUpdate{PeerID: id, Kind: tunnel.PeerDisconnected})
		delete(c.known, id)
	}
	clear(c.unconfirmed)
	c.mu.Unlock()
	if len(updates) == 0 {
		return
	}
	c.logger.Info("dropping tunnel peers the coordinator never listed again", "peers", len(updates))
	if err := c.conn.UpdatePeers(updates); err != nil {
		c.logger.Warn("drop unconfirmed tunnel peers", "err", err)
	}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
