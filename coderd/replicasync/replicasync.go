// Package replicasync registers a coderd replica in the replicas table and
// keeps it there with a heartbeat, so every replica sharing the database
// knows the others: their relay URLs (for the DERP mesh), their versions (a
// mismatch is logged) and whether they are alive.
//
// A replica is alive while its row was refreshed within StaleAfter (3 ×
// UpdateInterval) and it did not record a clean stop. Rows older than
// ExpireAfter are deleted by whichever replica notices them. Replicas
// announce their start and stop on the pubsub so the others resynchronise
// at once instead of at their next heartbeat.
package replicasync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/database"
	"github.com/wgmesh/coder/database/pubsub"
)

// Defaults of Options.
const (
	DefaultUpdateInterval = 5 * time.Second
	DefaultExpireAfter    = time.Hour
	// PubsubEvent carries the ID of a replica that started or stopped.
	PubsubEvent = "replica"
)

// Options configures New.
type Options struct {
	// ID identifies this replica; uuid.Nil picks a random one.
	ID uuid.UUID
	// Hostname defaults to os.Hostname.
	Hostname string
	// RegionID is the DERP region of the embedded relay.
	RegionID int
	// RelayAddress is the URL other replicas reach this replica's relay at
	// (--derp-server-relay-url); empty means the relay does not mesh.
	RelayAddress string
	// Version is this replica's build version.
	Version string
	// UpdateInterval is the heartbeat period (default 5s).
	UpdateInterval time.Duration
	// StaleAfter: a replica whose heartbeat is older is dead (default 3 ×
	// UpdateInterval).
	StaleAfter time.Duration
	// ExpireAfter: rows of replicas silent for longer are deleted (default
	// one hour).
	ExpireAfter time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// OnChange is called (from the manager's goroutine) whenever the set of
	// live peers (other replicas) or their relay addresses changed.
	OnChange func(peers []codersdk.Replica)
	// DisableLoop stops the manager from heartbeating by itself; the
	// caller drives it with Sync (tests with an injected clock).
	DisableLoop bool
}

// Manager keeps this replica's row fresh and the list of live replicas.
type Manager struct {
	opts   Options
	logger *slog.Logger
	db     *database.Store
	ps     *pubsub.Pubsub
	self   codersdk.Replica

	ctx    context.Context
	cancel context.CancelFunc
	wake   chan struct{}
	done   chan struct{}
	unsub  func()

	syncMu sync.Mutex // one Sync at a time

	mu     sync.Mutex
	live   []codersdk.Replica // every live replica, self included, by start time
	warned map[uuid.UUID]bool // replicas whose differing version was logged
	closed bool
}

// New registers the replica (inserting its row), reads the others once and
// starts the heartbeat. ps may be nil (no immediate propagation).
func New(ctx context.Context, logger *slog.Logger, db *database.Store, ps *pubsub.Pubsub, opts Options) (*Manager, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if opts.ID == uuid.Nil {
		opts.ID = uuid.New()
	}
	if opts.Hostname == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("replica hostname: %w", err)
		}
		opts.Hostname = h
	}
	if opts.UpdateInterval <= 0 {
		opts.UpdateInterval = DefaultUpdateInterval
	}
	if opts.StaleAfter <= 0 {
		opts.StaleAfter = 3 * opts.UpdateInterval
	}
	if opts.ExpireAfter <= 0 {
		opts.ExpireAfter = DefaultExpireAfter
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	now := dbTime(opts.Now())
	m := &Manager{
		opts:   opts,
		logger: logger.With("component", "replicasync", "replica_id", opts.ID),
		db:     db,
		ps:     ps,
		self: codersdk.Replica{
			ID: opts.ID, Hostname: opts.Hostname, RegionID: opts.RegionID, RelayAddress: opts.RelayAddress,
			Version: opts.Version, StartedAt: now, UpdatedAt: now,
		},
		wake:   make(chan struct{}, 1),
		done:   make(chan struct{}),
		warned: map[uuid.UUID]bool{},
	}
	if err := db.InsertReplica(ctx, database.InsertReplicaParams{
		ID: m.self.ID, Hostname: m.self.Hostname, RegionID: int32(m.self.RegionID), RelayAddress: m.self.RelayAddress,
		Version: m.self.Version, StartedAt: now,
	}); err != nil {
		return nil, fmt.Errorf("register replica: %w", err)
	}
	if ps != nil {
		unsub, err := ps.SubscribeWithErr(PubsubEvent, func(_ context.Context, msg []byte, err error) {
			if err == nil && string(msg) == m.self.ID.String() {
				return // our own announcement
			}
			m.poke()
		})
		if err != nil {
			return nil, fmt.Errorf("subscribe to replica events: %w", err)
		}
		m.unsub = unsub
	}
	if err := m.Sync(ctx); err != nil {
		if m.unsub != nil {
			m.unsub()
		}
		return nil, err
	}
	m.publish(ctx)
	m.ctx, m.cancel = context.WithCancel(context.Background())
	if opts.DisableLoop {
		close(m.done)
	} else {
		go m.loop()
	}
	return m, nil
}

// dbTime truncates to PostgreSQL's precision.
func dbTime(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

func (m *Manager) poke() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

func (m *Manager) publish(ctx context.Context) {
	if m.ps == nil {
		return
	}
	if err := m.ps.PublishContext(ctx, PubsubEvent, []byte(m.self.ID.String())); err != nil {
		m.logger.Warn("announce replica", "error", err)
	}
}

func (m *Manager) loop() {
	defer close(m.done)
	t := time.NewTicker(m.opts.UpdateInterval)
	defer t.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-t.C:
		case <-m.wake:
		}
		ctx, cancel := context.WithTimeout(m.ctx, max(m.opts.UpdateInterval, time.Second))
		if err := m.Sync(ctx); err != nil && m.ctx.Err() == nil {
			m.logger.Warn("replica heartbeat failed", "error", err)
		}
		cancel()
	}
}

// Sync refreshes this replica's heartbeat, deletes expired rows and reloads
// the live replicas. It is called by the heartbeat loop; tests with an
// injected clock call it directly.
func (m *Manager) Sync(ctx context.Context) error {
	m.syncMu.Lock()
	defer m.syncMu.Unlock()
	now := dbTime(m.opts.Now())
	m.mu.Lock()
	selfErr := m.self.Error
	m.mu.Unlock()
	// The row may have been expired by another replica while this one
	// could not reach the database: upsert it.
	if err := m.db.UpsertReplicaHeartbeat(ctx, database.UpsertReplicaHeartbeatParams{
		ID: m.self.ID, Hostname: m.self.Hostname, RegionID: int32(m.self.RegionID), RelayAddress: m.self.RelayAddress,
		Version: m.self.Version, StartedAt: m.self.StartedAt, UpdatedAt: now, Error: selfErr,
	}); err != nil {
		return fmt.Errorf("replica heartbeat: %w", err)
	}
	if err := m.db.DeleteReplicasUpdatedBefore(ctx, now.Add(-m.opts.ExpireAfter)); err != nil {
		return fmt.Errorf("expire replicas: %w", err)
	}
	rows, err := m.db.GetLiveReplicas(ctx, now.Add(-m.opts.StaleAfter))
	if err != nil {
		return fmt.Errorf("list replicas: %w", err)
	}
	live := make([]codersdk.Replica, 0, len(rows))
	for _, r := range rows {
		live = append(live, codersdk.Replica{
			ID: r.ID, Hostname: r.Hostname, RegionID: int(r.RegionID), RelayAddress: r.RelayAddress, Version: r.Version,
			StartedAt: r.StartedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC(), Error: r.Error,
		})
	}
	m.mu.Lock()
	oldPeers := peersOf(m.live, m.self.ID)
	m.live = live
	newPeers := peersOf(live, m.self.ID)
	for _, r := range newPeers {
		if r.Version != m.self.Version && !m.warned[r.ID] {
			m.warned[r.ID] = true
			m.logger.Warn("replica runs another version: upgrade every replica to the same version",
				"other_replica_id", r.ID, "other_hostname", r.Hostname, "other_version", r.Version, "version", m.self.Version)
		}
	}
	m.mu.Unlock()
	if m.opts.OnChange != nil && !samePeers(oldPeers, newPeers) {
		m.opts.OnChange(newPeers)
	}
	return nil
}

func peersOf(all []codersdk.Replica, self uuid.UUID) []codersdk.Replica {
	var out []codersdk.Replica
	for _, r := range all {
		if r.ID != self {
			out = append(out, r)
		}
	}
	return out
}

func samePeers(a, b []codersdk.Replica) bool {
	return slices.EqualFunc(a, b, func(x, y codersdk.Replica) bool {
		return x.ID == y.ID && x.RelayAddress == y.RelayAddress && x.RegionID == y.RegionID
	})
}

// Self returns this replica.
func (m *Manager) Self() codersdk.Replica {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.self
}

// All returns the live replicas, this one included, oldest first.
func (m *Manager) All() []codersdk.Replica {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.live)
}

// Peers returns the other live replicas.
func (m *Manager) Peers() []codersdk.Replica {
	m.mu.Lock()
	defer m.mu.Unlock()
	return peersOf(m.live, m.self.ID)
}

// SetError records a problem of this replica (shown to owners); empty
// clears it. It is written at the next heartbeat.
func (m *Manager) SetError(msg string) {
	m.mu.Lock()
	changed := m.self.Error != msg
	m.self.Error = msg
	m.mu.Unlock()
	if changed {
		m.poke()
	}
}

// Close stops the heartbeat and records a clean stop, so the other replicas
// stop meshing with this one at once.
func (m *Manager) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	m.mu.Unlock()
	m.cancel()
	<-m.done
	if m.unsub != nil {
		m.unsub()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := m.db.UpdateReplicaStopped(ctx, database.UpdateReplicaStoppedParams{
		ID: m.self.ID, StoppedAt: pgtype.Timestamptz{Time: dbTime(m.opts.Now()), Valid: true},
	})
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("record replica stop: %w", err)
	}
	m.publish(ctx)
	return nil
}
