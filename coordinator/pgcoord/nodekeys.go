package pgcoord

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
	"tailscale.com/types/key"

	"github.com/wgmesh/coder/coordinator"
)

// KeyDirectory publishes the node keys of this coordinator's peers (a
// coordinator.NodeKeys set it observes) to the tailnet_node_keys table, so
// that every replica's DERP relay admits them: a peer's relay connection
// and its coordinator connection may reach different replicas behind a
// load balancer. Rows go with the coordinator's row when it expires.
type KeyDirectory struct {
	c    *Coordinator
	wake chan struct{}
	done chan struct{}

	mu  sync.Mutex
	ops []keyOp
}

type keyOp struct {
	add  bool
	peer uuid.UUID
	key  key.NodePublic
}

var _ coordinator.KeyObserver = (*KeyDirectory)(nil)

// NewKeyDirectory starts the directory of c's keys; observe a NodeKeys set
// with it (NodeKeys.SetObserver). It stops with c.
func NewKeyDirectory(c *Coordinator) *KeyDirectory {
	d := &KeyDirectory{c: c, wake: make(chan struct{}, 1), done: make(chan struct{})}
	c.wg.Add(1)
	go d.run()
	return d
}

// KeyAdded implements coordinator.KeyObserver.
func (d *KeyDirectory) KeyAdded(peer uuid.UUID, k key.NodePublic) { d.queue(keyOp{true, peer, k}) }

// KeyRemoved implements coordinator.KeyObserver.
func (d *KeyDirectory) KeyRemoved(peer uuid.UUID, k key.NodePublic) { d.queue(keyOp{false, peer, k}) }

func (d *KeyDirectory) queue(op keyOp) {
	d.mu.Lock()
	d.ops = append(d.ops, op)
	d.mu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

func (d *KeyDirectory) run() {
	defer d.c.wg.Done()
	defer close(d.done)
	for {
		select {
		case <-d.c.ctx.Done():
			return
		case <-d.wake:
		}
		d.mu.Lock()
		ops := d.ops
		d.ops = nil
		d.mu.Unlock()
		for _, op := range ops {
			text, _ := op.key.MarshalText()
			err := d.c.retry(d.c.ctx, "publish node key", func(ctx context.Context) error {
				var err error
				if op.add {
					_, err = d.c.pool.Exec(ctx, `INSERT INTO tailnet_node_keys (node_key, coordinator_id, peer_id) VALUES ($1, $2, $3)
						ON CONFLICT (node_key, coordinator_id) DO UPDATE SET peer_id = $3`, string(text), d.c.id, op.peer)
				} else {
					_, err = d.c.pool.Exec(ctx, `DELETE FROM tailnet_node_keys WHERE node_key = $1 AND coordinator_id = $2 AND peer_id = $3`,
						string(text), d.c.id, op.peer)
				}
				return err
			})
			if err != nil {
				return
			}
		}
	}
}

// Known reports whether any coordinator's peer holds k.
func (d *KeyDirectory) Known(ctx context.Context, k key.NodePublic) (bool, error) {
	text, err := k.MarshalText()
	if err != nil {
		return false, fmt.Errorf("encode node key: %w", err)
	}
	var ok bool
	err = d.c.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM tailnet_node_keys WHERE node_key = $1)`, string(text)).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("look up node key: %w", err)
	}
	return ok, nil
}

// firstAdmitPoll is the first pause of AdmitFunc's lookups; it doubles up
// to the caller's poll interval.
const firstAdmitPoll = 10 * time.Millisecond

// AdmitFunc returns a relay admission function: a key the local set holds
// is admitted at once; another is looked up in the directory until ctx
// ends (the peer may be registering on another replica right now), first
// after 10 ms, the pause doubling up to poll. The quick first lookups
// matter: the peer's first WireGuard handshake goes out right after it
// dialed the relay, and if admission is still pending then, WireGuard
// retries only after 5 s (a 250 ms fixed poll stalled 11 of 30 new
// `coder ssh` sessions through a load balancer by 5 s).
func (d *KeyDirectory) AdmitFunc(local *coordinator.NodeKeys, poll time.Duration) func(ctx context.Context, k key.NodePublic) bool {
	return func(ctx context.Context, k key.NodePublic) bool {
		wait := min(firstAdmitPoll, poll)
		for {
			changed := local.Changed()
			if local.Known(k) {
				return true
			}
			if ok, err := d.Known(ctx, k); err == nil && ok {
				return true
			}
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return false
			case <-changed:
			case <-t.C:
			}
			t.Stop()
			wait = min(2*wait, poll)
		}
	}
}
