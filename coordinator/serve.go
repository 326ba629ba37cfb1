package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"
	"github.com/google/uuid"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"

	"github.com/wgmesh/coder/tunnel"
)

// Defaults of ServeOptions.
const (
	DefaultPingInterval = 15 * time.Second
	// DefaultRateLimit and DefaultRateBurst bound the frames one peer may
	// send: a real peer sends a node when its endpoints or DERP latencies
	// change (seconds apart) and a handful of tunnel requests.
	DefaultRateLimit = 20
	DefaultRateBurst = 100
	writeTimeout     = 10 * time.Second
)

// ServeOptions configures ServeWebsocket.
type ServeOptions struct {
	// Coordinator serves the peer. Required.
	Coordinator Coordinator
	// ID identifies the peer (agent ID, or the client's tunnel ID). Required.
	ID uuid.UUID
	// Name labels the peer in logs.
	Name string
	// Auth authorizes the peer's tunnels; nil denies all (right for agents).
	Auth TunnelAuth
	// DERPMaps, when set, pushes the current DERP map and its changes.
	DERPMaps DERPMapSource
	// Logger; nil discards.
	Logger *slog.Logger
	// PingInterval is the keepalive period (default 15s); a ping without a
	// pong within the same period closes the socket and the peer is lost.
	PingInterval time.Duration
	// NodeKey is the WireGuard key the peer said it holds when it connected
	// (coderd reads it from the node_key query parameter). When set, it is
	// registered in NodeKeys at once (before the peer's first node, which a
	// peer publishes only after it reached the DERP relay) and every node
	// must carry it. When zero, the key of the first node is registered.
	NodeKey key.NodePublic
	// NodeKeys, when set, records the peer's node key while the socket is
	// up; the DERP relay admits only keys it knows. A key another peer holds
	// closes the socket.
	NodeKeys *NodeKeys
	// RateLimit is how many frames per second the peer may send on average
	// (default DefaultRateLimit), with bursts of RateBurst (default
	// DefaultRateBurst). A peer over the limit is disconnected with
	// StatusPolicyViolation and the reason is logged.
	RateLimit float64
	RateBurst int

	// now is the limiter's clock (tests replace it).
	now func() time.Time
}

// closeError is how the server ended the socket.
type closeError struct {
	code   websocket.StatusCode
	reason string
	err    error
}

func (e *closeError) Error() string {
	if e.err != nil {
		return fmt.Sprintf("%s (%d): %v", e.reason, e.code, e.err)
	}
	return fmt.Sprintf("%s (%d)", e.reason, e.code)
}

func (e *closeError) Unwrap() error { return e.err }

// ServeWebsocket speaks the coordination protocol with one peer on ws until
// the peer says goodbye, the socket fails, ctx is done or the coordinator
// drops the peer. Malformed, oversized, binary, unknown-version or
// unknown-type frames close this socket with a status code and reason;
// other peers are unaffected. It returns nil after a clean goodbye.
func ServeWebsocket(ctx context.Context, ws *websocket.Conn, opts ServeOptions) error {
	if opts.Coordinator == nil {
		return errors.New("serve coordinator websocket: no coordinator")
	}
	if opts.ID == uuid.Nil {
		_ = ws.Close(websocket.StatusInternalError, "no peer ID")
		return errors.New("serve coordinator websocket: no peer ID")
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("peer", opts.ID, "name", opts.Name)
	pingInterval := opts.PingInterval
	if pingInterval <= 0 {
		pingInterval = DefaultPingInterval
	}
	ws.SetReadLimit(MaxMessageSize)
	if opts.RateLimit <= 0 {
		opts.RateLimit = DefaultRateLimit
	}
	if opts.RateBurst <= 0 {
		opts.RateBurst = DefaultRateBurst
	}
	if opts.now == nil {
		opts.now = time.Now
	}
	keys := &peerKey{set: opts.NodeKeys, peer: opts.ID}
	defer keys.releaseKey()
	if !opts.NodeKey.IsZero() {
		if err := keys.hold(opts.NodeKey); err != nil {
			logger.Warn("refusing coordinator connection", "error", err)
			_ = ws.Close(websocket.StatusPolicyViolation, truncateReason(err.Error()))
			return &closeError{code: websocket.StatusPolicyViolation, reason: "node key in use", err: err}
		}
	}

	// The socket's own context is not a child of the caller's: when the
	// caller's ends (a shutdown, or access revoked with cause ErrRevoked)
	// the socket is closed with a status and reason first (finish), and
	// only then are its pending reads and writes cancelled.
	parent := ctx
	ctx, cancel := context.WithCancel(context.WithoutCancel(parent))
	defer cancel()

	reqs, resps := opts.Coordinator.Coordinate(ctx, opts.ID, opts.Name, opts.Auth)

	var (
		endOnce sync.Once
		end     *closeError
	)
	// finish records why the socket ends and closes it with that status
	// and reason before cancelling ctx (cancelling a pending Read or Write
	// would drop the connection without a close frame).
	finish := func(ce *closeError) {
		endOnce.Do(func() {
			end = ce
			_ = ws.Close(ce.code, ce.reason)
		})
		cancel()
	}

	stopParent := context.AfterFunc(parent, func() { finish(parentEnded(parent)) })
	defer stopParent()

	var wg sync.WaitGroup
	defer wg.Wait()

	// Reader: owns reqs and closes it when it returns.
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(reqs)
		pr := &peerReader{opts: &opts, keys: keys, bucket: newTokenBucket(opts.RateLimit, opts.RateBurst, opts.now)}
		ce := pr.readLoop(ctx, ws, reqs)
		if ce.code == websocket.StatusPolicyViolation {
			logger.Warn("disconnecting coordinator peer", "reason", ce.reason, "error", ce.err)
		}
		finish(ce)
	}()

	// Keepalive.
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(pingInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				pctx, pcancel := context.WithTimeout(ctx, pingInterval)
				err := ws.Ping(pctx)
				pcancel()
				if err != nil && ctx.Err() == nil {
					finish(&closeError{code: websocket.StatusGoingAway, reason: "keepalive timeout", err: err})
					return
				}
			}
		}
	}()

	var derpMaps <-chan *tailcfg.DERPMap
	if opts.DERPMaps != nil {
		derpMaps = opts.DERPMaps.Subscribe(ctx)
	}

	// Writer: this goroutine.
	for ctx.Err() == nil {
		var env *Envelope
		select {
		case <-ctx.Done():
		case r, ok := <-resps:
			if !ok {
				if errors.Is(context.Cause(parent), ErrRevoked) {
					// Disconnect replaced a revoked peer's registration.
					finish(parentEnded(parent))
				} else {
					finish(&closeError{code: websocket.StatusTryAgainLater, reason: "coordinator dropped this connection"})
				}
				continue
			}
			env = responseEnvelope(r)
		case m, ok := <-derpMaps:
			if !ok {
				derpMaps = nil
				continue
			}
			env = &Envelope{Version: ProtocolVersion, Type: TypeDERPMap, DERPMap: m}
		}
		if env == nil {
			continue
		}
		if err := writeEnvelope(ctx, ws, env); err != nil {
			finish(&closeError{code: websocket.StatusInternalError, reason: "write failed", err: err})
		}
	}

	finish(&closeError{code: websocket.StatusGoingAway, reason: "server shutting down", err: ctx.Err()})
	wg.Wait()
	if end.code == websocket.StatusNormalClosure {
		logger.Debug("peer said goodbye")
		return nil
	}
	logger.Debug("coordinator websocket closed", "code", end.code, "reason", end.reason, "err", end.err)
	return end
}

// parentEnded is how the socket closes when the caller's context ends.
func parentEnded(parent context.Context) *closeError {
	cause := context.Cause(parent)
	if errors.Is(cause, ErrRevoked) {
		return &closeError{code: websocket.StatusPolicyViolation, reason: RevokedReason, err: cause}
	}
	return &closeError{code: websocket.StatusGoingAway, reason: "server shutting down", err: cause}
}

// peerReader checks one peer's frames before they reach the coordinator.
type peerReader struct {
	opts   *ServeOptions
	keys   *peerKey
	bucket *tokenBucket
}

// readLoop reads frames into reqs until a goodbye or an error, and says how
// the socket must be closed.
func (pr *peerReader) readLoop(ctx context.Context, ws *websocket.Conn, reqs chan<- *Request) *closeError {
	for {
		typ, data, err := ws.Read(ctx)
		if err != nil {
			if websocket.CloseStatus(err) == websocket.StatusMessageTooBig || errors.Is(err, websocket.ErrMessageTooBig) {
				return &closeError{code: websocket.StatusMessageTooBig, reason: fmt.Sprintf("frame larger than %d bytes", MaxMessageSize), err: err}
			}
			return &closeError{code: websocket.StatusGoingAway, reason: "connection lost", err: err}
		}
		if !pr.bucket.take() {
			return &closeError{code: websocket.StatusPolicyViolation, reason: fmt.Sprintf("rate limit exceeded (%g frames/s, burst %d)", pr.opts.RateLimit, pr.opts.RateBurst)}
		}
		if typ != websocket.MessageText {
			return &closeError{code: websocket.StatusUnsupportedData, reason: "binary frames are not supported"}
		}
		env, err := DecodeEnvelope(data)
		if err != nil {
			code := websocket.StatusInvalidFramePayloadData
			if errors.Is(err, ErrUnknownVersion) {
				code = websocket.StatusPolicyViolation
			}
			return &closeError{code: code, reason: truncateReason(err.Error()), err: err}
		}
		if !isPeerToCoordinator(env.Type) {
			return &closeError{code: websocket.StatusPolicyViolation, reason: truncateReason(fmt.Sprintf("peers may not send %q", env.Type))}
		}
		if env.Type == TypeUpdateSelf {
			if err := pr.checkNode(env.Node); err != nil {
				return &closeError{code: websocket.StatusPolicyViolation, reason: truncateReason("node refused: " + err.Error()), err: err}
			}
		}
		req := &Request{Type: env.Type, Node: env.Node}
		if env.Dst != nil {
			req.Dst = *env.Dst
		}
		select {
		case reqs <- req:
		case <-ctx.Done():
			return &closeError{code: websocket.StatusGoingAway, reason: "server shutting down", err: ctx.Err()}
		}
		if env.Type == TypeDisconnect {
			return &closeError{code: websocket.StatusNormalClosure, reason: "goodbye"}
		}
	}
}

// truncateReason keeps a close reason within the 123 bytes a close frame
// allows, as valid UTF-8 (RFC 6455 requires it; a reason echoing a peer's
// invalid bytes, or cut inside a character, would make the close frame
// itself invalid). Found by FuzzServeWebsocket.
func truncateReason(s string) string {
	s = strings.ToValidUTF8(s, "?")
	if len(s) <= 120 {
		return s
	}
	cut := 120
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

func responseEnvelope(r *Response) *Envelope {
	if r.Error != "" {
		return &Envelope{Version: ProtocolVersion, Type: TypeError, Message: r.Error}
	}
	return &Envelope{Version: ProtocolVersion, Type: TypePeerUpdate, Updates: r.Updates, Snapshot: r.Snapshot, Epoch: r.Epoch}
}

func writeEnvelope(ctx context.Context, ws *websocket.Conn, env *Envelope) error {
	data, err := json.Marshal(env)
	if err != nil {
		return fmt.Errorf("encode %s: %w", env.Type, err)
	}
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	if err := ws.Write(ctx, websocket.MessageText, data); err != nil {
		return fmt.Errorf("write %s: %w", env.Type, err)
	}
	return nil
}

// checkNode refuses a node that claims an address coderd did not assign to
// this peer (spoofing another peer) or a key other than the peer's.
func (pr *peerReader) checkNode(raw json.RawMessage) error {
	var n tunnel.Node
	if err := json.Unmarshal(raw, &n); err != nil {
		return fmt.Errorf("decode node: %w", err)
	}
	if err := tunnel.CheckAssignedAddresses(pr.opts.ID, &n); err != nil {
		return err
	}
	if !pr.opts.NodeKey.IsZero() && n.Key != pr.opts.NodeKey {
		return fmt.Errorf("node key %s is not the key %s the peer connected with", n.Key.ShortString(), pr.opts.NodeKey.ShortString())
	}
	if !n.Key.IsZero() {
		if err := pr.keys.hold(n.Key); err != nil {
			return err
		}
	}
	return nil
}

// peerKey is the node key one socket holds in a NodeKeys set.
type peerKey struct {
	set     *NodeKeys
	peer    uuid.UUID
	held    key.NodePublic
	release func()
}

// hold registers k for the peer (releasing a different key held before).
func (pk *peerKey) hold(k key.NodePublic) error {
	if pk.set == nil || k == pk.held {
		return nil
	}
	rel, err := pk.set.Register(pk.peer, k)
	if err != nil {
		return err
	}
	if pk.release != nil {
		pk.release()
	}
	pk.held, pk.release = k, rel
	return nil
}

func (pk *peerKey) releaseKey() {
	if pk.release != nil {
		pk.release()
		pk.release = nil
	}
}

// tokenBucket is a per-peer rate limiter: rate tokens per second, at most
// burst stored; each frame takes one.
type tokenBucket struct {
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
	now    func() time.Time
}

func newTokenBucket(rate float64, burst int, now func() time.Time) *tokenBucket {
	return &tokenBucket{rate: rate, burst: float64(burst), tokens: float64(burst), last: now(), now: now}
}

// take reports whether a token was available, and takes it.
func (b *tokenBucket) take() bool {
	t := b.now()
	if el := t.Sub(b.last).Seconds(); el > 0 {
		b.tokens = min(b.burst, b.tokens+el*b.rate)
		b.last = t
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
