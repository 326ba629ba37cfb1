package coderd

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Agent connection state after a crash.
//
// A coderd records an agent as connected (last_connected_at, refreshed
// every heartbeat, with last_connected_replica_id = its instance ID) and
// records the disconnect when the connection ends. A coderd that is killed
// records no disconnect, so its agents would look connected until their
// heartbeat lapses. To tell a live holder from a dead one, every coderd
// holds a PostgreSQL session-level advisory lock named after its instance
// ID for as long as it runs: the lock disappears with the process (its
// database session ends with it). The connection reconciler looks at the
// instances that agents are recorded as connected to and, when an
// instance's lock is free, records those agents disconnected. It runs when
// coderd starts (before it serves anything) and periodically after, so it
// is safe with any number of replicas: a live replica's agents are never
// touched.

// agentConnLockClass is the first key of the instance advisory locks (the
// second is derived from the instance ID).
const agentConnLockClass = 0x636f6472 // "codr"

// DefaultAgentConnReconcileInterval is how often coderd looks for agents
// recorded as connected to a coderd instance that is gone.
const DefaultAgentConnReconcileInterval = 10 * time.Second

func instanceLockKey(id uuid.UUID) int32 {
	return int32(binary.BigEndian.Uint32(id[:4]) ^ binary.BigEndian.Uint32(id[12:]))
}

// agentConns holds this instance's lock and reconciles connection state.
type agentConns struct {
	api  *API
	id   uuid.UUID
	pool *pgxpool.Pool

	mu   sync.Mutex
	conn *pgxpool.Conn // holds the instance lock

	cancel context.CancelFunc
	done   chan struct{}
}

func newAgentConns(api *API) *agentConns {
	return &agentConns{api: api, id: uuid.New(), pool: api.db.Pool(), done: make(chan struct{})}
}

// start takes the instance lock, reconciles once (bounded) and keeps
// reconciling in the background until stop.
func (c *agentConns) start(interval time.Duration) {
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	first, firstCancel := context.WithTimeout(ctx, 10*time.Second)
	if err := c.reconcile(first); err != nil {
		c.api.logger.Warn("reconcile agent connection state", "error", err)
	}
	firstCancel()
	go func() {
		defer close(c.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if err := c.reconcile(ctx); err != nil && ctx.Err() == nil {
				c.api.logger.Warn("reconcile agent connection state", "error", err)
			}
		}
	}()
}

func (c *agentConns) stop() {
	if c.cancel == nil {
		return
	}
	c.cancel()
	<-c.done
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil {
		_, _ = c.conn.Exec(context.Background(), "SELECT pg_advisory_unlock($1, $2)", agentConnLockClass, instanceLockKey(c.id))
		c.conn.Release()
		c.conn = nil
	}
}

// holdLock makes sure this instance's lock is held on a live session (it
// is lost when the database restarts) and returns that session.
func (c *agentConns) holdLock(ctx context.Context) (*pgxpool.Conn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil {
		if err := c.conn.Ping(ctx); err == nil {
			return c.conn, nil
		}
		c.conn.Release()
		c.conn = nil
	}
	conn, err := c.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("acquire a connection for the instance lock: %w", err)
	}
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1, $2)", agentConnLockClass, instanceLockKey(c.id)); err != nil {
		conn.Release()
		return nil, fmt.Errorf("take the instance lock: %w", err)
	}
	c.conn = conn
	return conn, nil
}

// connectedLooking matches agents whose row says "connected".
const connectedLooking = `last_connected_at IS NOT NULL AND (disconnected_at IS NULL OR disconnected_at < last_connected_at)`

// reconcile records as disconnected the agents recorded as connected to a
// coderd instance that no longer runs (its lock is free), and those
// recorded by a coderd that did not name its instance.
func (c *agentConns) reconcile(ctx context.Context) error {
	conn, err := c.holdLock(ctx)
	if err != nil {
		return err
	}
	rows, err := conn.Query(ctx, `SELECT DISTINCT last_connected_replica_id FROM workspace_agents
		WHERE `+connectedLooking+` AND last_connected_replica_id IS DISTINCT FROM $1`, c.id)
	if err != nil {
		return fmt.Errorf("list agent connection holders: %w", err)
	}
	var holders []uuid.NullUUID
	for rows.Next() {
		var h uuid.NullUUID
		if err := rows.Scan(&h); err != nil {
			rows.Close()
			return fmt.Errorf("scan holder: %w", err)
		}
		holders = append(holders, h)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("list agent connection holders: %w", err)
	}
	now := c.api.now()
	for _, h := range holders {
		if h.Valid {
			var free bool
			key := instanceLockKey(h.UUID)
			if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1, $2)", agentConnLockClass, key).Scan(&free); err != nil {
				return fmt.Errorf("probe instance %s: %w", h.UUID, err)
			}
			if !free {
				continue // that coderd runs: its connections are its own to record
			}
			_, unlockErr := conn.Exec(ctx, "SELECT pg_advisory_unlock($1, $2)", agentConnLockClass, key)
			if unlockErr != nil {
				return fmt.Errorf("release probe of instance %s: %w", h.UUID, unlockErr)
			}
		}
		tag, err := conn.Exec(ctx, `UPDATE workspace_agents SET disconnected_at = $1, updated_at = $1
			WHERE `+connectedLooking+` AND last_connected_replica_id IS NOT DISTINCT FROM $2 AND last_connected_at <= $1`, now, h)
		if err != nil {
			return fmt.Errorf("record agents of a gone coderd disconnected: %w", err)
		}
		if n := tag.RowsAffected(); n > 0 {
			c.api.logger.Info("agents recorded connected to a coderd that is gone are now disconnected",
				"instance", h, "agents", n)
		}
	}
	return nil
}
