// Package pubsub is a publish/subscribe bus on PostgreSQL LISTEN/NOTIFY, so
// that several coderd replicas sharing one database see each other's events.
//
// A Pubsub listens on one dedicated connection owned by a background
// goroutine. When that connection drops it reconnects with backoff,
// re-issues LISTEN for every subscribed event and tells every subscriber
// (through SubscribeWithErr) that messages may have been missed, with
// ErrDroppedMessages. Each subscriber has its own bounded queue and
// goroutine: delivery is in order per subscriber, and a slow subscriber
// never blocks the others; when its queue overflows it loses messages and is
// told so with ErrDroppedMessages.
package pubsub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrDroppedMessages is delivered to SubscribeWithErr listeners when messages
// for them may have been lost: after the listener connection was re-established,
// or when the subscriber's queue overflowed.
var ErrDroppedMessages = errors.New("pubsub: messages may have been dropped")

// ErrPayloadTooLarge is returned by Publish for a message PostgreSQL would
// refuse: a NOTIFY payload must be shorter than MaxPayloadBytes.
var ErrPayloadTooLarge = errors.New("pubsub: payload too large")

// ErrInvalidPayload is returned by Publish for a message that is not valid
// UTF-8 text or contains a NUL byte (NOTIFY payloads are text).
var ErrInvalidPayload = errors.New("pubsub: payload must be UTF-8 text without NUL bytes")

// ErrInvalidEvent is returned for an empty event name or one longer than
// MaxEventBytes (PostgreSQL's identifier limit).
var ErrInvalidEvent = errors.New("pubsub: invalid event name")

// ErrClosed is returned when the Pubsub was closed.
var ErrClosed = errors.New("pubsub: closed")

const (
	// MaxPayloadBytes is the largest NOTIFY payload PostgreSQL accepts in its
	// default build (it must be shorter than 8000 bytes).
	MaxPayloadBytes = 7999
	// MaxEventBytes is the longest event (channel) name: PostgreSQL identifiers
	// are at most 63 bytes.
	MaxEventBytes = 63
	// DefaultQueueSize is the per-subscriber queue length used when
	// Options.QueueSize is zero.
	DefaultQueueSize = 1024
	// ApplicationName is the application_name of the listener connection, so
	// it can be told apart in pg_stat_activity.
	ApplicationName = "coder_pubsub_listener"
)

// Listener receives the messages of one event.
type Listener func(ctx context.Context, msg []byte)

// ListenerWithErr receives the messages of one event and, with a nil msg,
// errors such as ErrDroppedMessages.
type ListenerWithErr func(ctx context.Context, msg []byte, err error)

// Options tunes a Pubsub. The zero value is fine.
type Options struct {
	// QueueSize bounds each subscriber's queue (default DefaultQueueSize).
	QueueSize int
	// MinBackoff and MaxBackoff bound the reconnect delay
	// (defaults 50ms and 5s); the delay doubles after each failed attempt.
	MinBackoff, MaxBackoff time.Duration
}

// Pubsub publishes and delivers events through PostgreSQL LISTEN/NOTIFY.
type Pubsub struct {
	logger   *slog.Logger
	pool     *pgxpool.Pool
	ownsPool bool
	connCfg  *pgx.ConnConfig
	opts     Options

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // listener and subscriber goroutines

	mu        sync.Mutex
	closed    bool
	connected bool                     // listener connection is up and LISTENs all channels
	channels  map[string]*channelState // events with at least one subscriber
	dirty     map[string]struct{}      // events whose LISTEN state must be reconciled
	wake      context.CancelFunc       // interrupts the listener's current wait
}

type channelState struct {
	subs  map[*subscriber]struct{}
	ready chan struct{} // closed once LISTEN ran (or the connection is down)
}

// New returns a Pubsub publishing through pool and listening on a dedicated
// connection made from the pool's configuration. The pool stays owned by the
// caller and must outlive the Pubsub. A nil logger discards logs.
func New(ctx context.Context, logger *slog.Logger, pool *pgxpool.Pool, opts Options) (*Pubsub, error) {
	return newPubsub(ctx, logger, pool, false, opts)
}

// NewFromURL is New with its own small pool to the server at url, closed by Close.
func NewFromURL(ctx context.Context, logger *slog.Logger, url string, opts Options) (*Pubsub, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse postgres url: %w", err)
	}
	cfg.MaxConns = 4
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("create publish pool: %w", err)
	}
	ps, err := newPubsub(ctx, logger, pool, true, opts)
	if err != nil {
		pool.Close()
		return nil, err
	}
	return ps, nil
}

func newPubsub(ctx context.Context, logger *slog.Logger, pool *pgxpool.Pool, ownsPool bool, opts Options) (*Pubsub, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = DefaultQueueSize
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 50 * time.Millisecond
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = max(5*time.Second, opts.MinBackoff)
	}
	connCfg := pool.Config().ConnConfig.Copy()
	connCfg.RuntimeParams["application_name"] = ApplicationName
	// A wake-up interrupts WaitForNotification through its context; the
	// deadline handler leaves the connection usable afterwards (a cancel
	// request could hit the next LISTEN instead).
	connCfg.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.DeadlineContextWatcherHandler{Conn: pc.Conn()}
	}

	conn, err := pgx.ConnectConfig(ctx, connCfg)
	if err != nil {
		return nil, fmt.Errorf("connect pubsub listener: %w", err)
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	p := &Pubsub{
		logger:    logger,
		pool:      pool,
		ownsPool:  ownsPool,
		connCfg:   connCfg,
		opts:      opts,
		ctx:       runCtx,
		cancel:    cancel,
		connected: true,
		channels:  make(map[string]*channelState),
		dirty:     make(map[string]struct{}),
	}
	p.wg.Add(1)
	go p.run(conn)
	return p, nil
}

// Publish sends msg to every subscriber of event, on every Pubsub sharing the
// database. It fails with ErrPayloadTooLarge, ErrInvalidPayload or
// ErrInvalidEvent before contacting the server when PostgreSQL would refuse.
func (p *Pubsub) Publish(event string, msg []byte) error {
	return p.PublishContext(p.ctx, event, msg)
}

// PublishContext is Publish bounded by ctx.
func (p *Pubsub) PublishContext(ctx context.Context, event string, msg []byte) error {
	if err := validEvent(event); err != nil {
		return err
	}
	if len(msg) > MaxPayloadBytes {
		return fmt.Errorf("publish %q: %d bytes, limit %d: %w", event, len(msg), MaxPayloadBytes, ErrPayloadTooLarge)
	}
	if !utf8.Valid(msg) || containsNUL(msg) {
		return fmt.Errorf("publish %q: %w", event, ErrInvalidPayload)
	}
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if _, err := p.pool.Exec(ctx, "SELECT pg_notify($1, $2)", event, string(msg)); err != nil {
		return fmt.Errorf("publish %q: %w", event, err)
	}
	return nil
}

// Subscribe calls listener, in order, for each message published to event
// from now on. Errors (ErrDroppedMessages) are logged, not delivered; use
// SubscribeWithErr to learn about them. The returned cancel stops delivery;
// it does not wait for a running listener call to return.
func (p *Pubsub) Subscribe(event string, listener Listener) (cancel func(), err error) {
	return p.subscribe(event, func(ctx context.Context, msg []byte, err error) {
		if err != nil {
			p.logger.Warn("pubsub subscriber missed messages", slog.String("event", event), slog.Any("error", err))
			return
		}
		listener(ctx, msg)
	})
}

// SubscribeWithErr is Subscribe whose listener also receives errors, with a
// nil msg: ErrDroppedMessages after a reconnect or a queue overflow.
func (p *Pubsub) SubscribeWithErr(event string, listener ListenerWithErr) (cancel func(), err error) {
	return p.subscribe(event, listener)
}

func (p *Pubsub) subscribe(event string, fn ListenerWithErr) (func(), error) {
	if err := validEvent(event); err != nil {
		return nil, err
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrClosed
	}
	ctx, cancel := context.WithCancel(p.ctx)
	s := &subscriber{
		event:  event,
		fn:     fn,
		ctx:    ctx,
		cancel: cancel,
		limit:  p.opts.QueueSize,
		signal: make(chan struct{}, 1),
	}
	ch, ok := p.channels[event]
	if !ok {
		ch = &channelState{subs: make(map[*subscriber]struct{}), ready: make(chan struct{})}
		p.channels[event] = ch
		if p.connected {
			p.markDirtyLocked(event)
		} else {
			// Reconnecting: the reconnect LISTENs every channel and
			// reports ErrDroppedMessages to everyone.
			close(ch.ready)
		}
	}
	ch.subs[s] = struct{}{}
	ready := ch.ready
	p.wg.Add(1)
	go s.run(&p.wg)
	p.mu.Unlock()

	select {
	case <-ready:
	case <-p.ctx.Done():
		cancel()
		return nil, ErrClosed
	}

	var once sync.Once
	return func() {
		once.Do(func() { p.unsubscribe(s) })
	}, nil
}

func (p *Pubsub) unsubscribe(s *subscriber) {
	s.cancel()
	p.mu.Lock()
	defer p.mu.Unlock()
	ch, ok := p.channels[s.event]
	if !ok {
		return
	}
	delete(ch.subs, s)
	if len(ch.subs) == 0 {
		delete(p.channels, s.event)
		if p.connected && !p.closed {
			p.markDirtyLocked(s.event)
		}
	}
}

func (p *Pubsub) markDirtyLocked(event string) {
	p.dirty[event] = struct{}{}
	if p.wake != nil {
		p.wake()
	}
}

// Close stops listening, cancels every subscription and waits for all
// goroutines of the Pubsub to return (listener calls in progress included).
func (p *Pubsub) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	p.cancel()
	p.wg.Wait()
	if p.ownsPool {
		p.pool.Close()
	}
	return nil
}

// run owns the listener connection: it waits for notifications, applies
// LISTEN/UNLISTEN changes and reconnects when the connection is lost.
func (p *Pubsub) run(conn *pgx.Conn) {
	defer p.wg.Done()
	listening := make(map[string]struct{})
	for {
		err := p.serve(conn, listening)
		_ = conn.Close(context.WithoutCancel(p.ctx))
		if p.ctx.Err() != nil {
			return
		}
		p.logger.Warn("pubsub listener connection lost; reconnecting", slog.Any("error", err))
		conn = p.reconnect()
		if conn == nil {
			return
		}
		clear(listening)
		if err := p.listenAll(conn, listening); err != nil {
			p.logger.Warn("pubsub re-listen failed", slog.Any("error", err))
			// serve will notice the broken connection immediately.
		}
	}
}

// reconnect dials until it succeeds or the Pubsub closes (nil).
func (p *Pubsub) reconnect() *pgx.Conn {
	p.mu.Lock()
	p.connected = false
	p.wake = nil
	clear(p.dirty)
	for _, ch := range p.channels {
		closeOnce(ch.ready)
	}
	p.mu.Unlock()

	delay := p.opts.MinBackoff
	for {
		timer := time.NewTimer(delay)
		select {
		case <-p.ctx.Done():
			timer.Stop()
			return nil
		case <-timer.C:
		}
		conn, err := pgx.ConnectConfig(p.ctx, p.connCfg)
		if err == nil {
			return conn
		}
		p.logger.Warn("pubsub reconnect failed", slog.Any("error", err), slog.Duration("retry_in", delay))
		delay = min(delay*2, p.opts.MaxBackoff)
	}
}

// listenAll LISTENs every subscribed event on a fresh connection, then marks
// the Pubsub connected and tells every subscriber it may have missed messages.
func (p *Pubsub) listenAll(conn *pgx.Conn, listening map[string]struct{}) error {
	for {
		p.mu.Lock()
		var todo []string
		for event := range p.channels {
			if _, ok := listening[event]; !ok {
				todo = append(todo, event)
			}
		}
		if len(todo) == 0 {
			// Everything subscribed is listened to: from here on
			// subscribe/unsubscribe go through the dirty set.
			p.connected = true
			clear(p.dirty)
			for event := range listening {
				if _, ok := p.channels[event]; !ok {
					p.dirty[event] = struct{}{}
				}
			}
			var subs []*subscriber
			for _, ch := range p.channels {
				for s := range ch.subs {
					subs = append(subs, s)
				}
			}
			p.mu.Unlock()
			for _, s := range subs {
				s.enqueue(item{err: ErrDroppedMessages})
			}
			return nil
		}
		p.mu.Unlock()
		for _, event := range todo {
			if _, err := conn.Exec(p.ctx, "LISTEN "+pgx.Identifier{event}.Sanitize()); err != nil {
				return fmt.Errorf("listen %q: %w", event, err)
			}
			listening[event] = struct{}{}
		}
	}
}

// serve handles one connection until it fails or the Pubsub closes.
func (p *Pubsub) serve(conn *pgx.Conn, listening map[string]struct{}) error {
	for {
		p.mu.Lock()
		type change struct {
			event  string
			listen bool
			ready  chan struct{}
		}
		var changes []change
		for event := range p.dirty {
			ch, want := p.channels[event]
			_, have := listening[event]
			c := change{event: event, listen: want}
			if want {
				c.ready = ch.ready
			}
			if want != have {
				changes = append(changes, c)
			} else if want {
				closeOnce(ch.ready)
			}
		}
		clear(p.dirty)
		waitCtx, wake := context.WithCancel(p.ctx)
		p.wake = wake
		p.mu.Unlock()

		for _, c := range changes {
			stmt := "UNLISTEN " + pgx.Identifier{c.event}.Sanitize()
			if c.listen {
				stmt = "LISTEN " + pgx.Identifier{c.event}.Sanitize()
			}
			if _, err := conn.Exec(p.ctx, stmt); err != nil {
				wake()
				return fmt.Errorf("%s: %w", stmt, err)
			}
			if c.listen {
				listening[c.event] = struct{}{}
				p.mu.Lock()
				closeOnce(c.ready)
				p.mu.Unlock()
			} else {
				delete(listening, c.event)
			}
		}

		n, err := conn.WaitForNotification(waitCtx)
		wake()
		if err != nil {
			if p.ctx.Err() != nil {
				return p.ctx.Err()
			}
			if waitCtx.Err() != nil && !conn.IsClosed() && !isFatal(err) {
				continue // woken up to apply subscription changes
			}
			return fmt.Errorf("wait for notification: %w", err)
		}
		p.dispatch(n)
	}
}

func (p *Pubsub) dispatch(n *pgconn.Notification) {
	p.mu.Lock()
	ch, ok := p.channels[n.Channel]
	var subs []*subscriber
	if ok {
		subs = make([]*subscriber, 0, len(ch.subs))
		for s := range ch.subs {
			subs = append(subs, s)
		}
	}
	p.mu.Unlock()
	for _, s := range subs {
		s.enqueue(item{msg: []byte(n.Payload)})
	}
}

func isFatal(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Severity == "FATAL" || pgErr.Severity == "PANIC")
}

func closeOnce(c chan struct{}) {
	select {
	case <-c:
	default:
		close(c)
	}
}

func validEvent(event string) error {
	if event == "" || len(event) > MaxEventBytes || containsNUL([]byte(event)) || !utf8.ValidString(event) {
		return fmt.Errorf("%w: %q (1 to %d bytes of UTF-8)", ErrInvalidEvent, event, MaxEventBytes)
	}
	return nil
}

func containsNUL(b []byte) bool {
	for _, c := range b {
		if c == 0 {
			return true
		}
	}
	return false
}
