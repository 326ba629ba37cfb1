package coordinator

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/google/uuid"
	"tailscale.com/types/key"
)

// ErrNodeKeyInUse is returned by NodeKeys.Register when another peer holds
// the key.
var ErrNodeKeyInUse = errors.New("node key is registered by another peer")

// NodeKeys is the set of WireGuard node keys of the peers currently
// registered with the coordinator. The DERP relay admits only these keys, so
// it relays for mesh peers and nobody else. A key belongs to one peer ID at
// a time; the same peer may hold it on several overlapping registrations
// (a reconnection that overlaps the old socket).
type NodeKeys struct {
	mu       sync.Mutex
	observer KeyObserver
	holders  map[key.NodePublic]*keyHolder
	// changed is closed and replaced whenever a key is added.
	changed chan struct{}
}

type keyHolder struct {
	peer uuid.UUID
	refs int
}

// KeyObserver learns every key added to and removed from a NodeKeys set,
// in order (e.g. to publish them to other replicas). Its methods are called
// with the set's lock held and must not block or call back into the set.
type KeyObserver interface {
	KeyAdded(peer uuid.UUID, k key.NodePublic)
	KeyRemoved(peer uuid.UUID, k key.NodePublic)
}

// SetObserver makes o learn the set's changes from now on (nil stops).
func (s *NodeKeys) SetObserver(o KeyObserver) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.observer = o
}

// NewNodeKeys returns an empty set.
func NewNodeKeys() *NodeKeys {
	return &NodeKeys{holders: map[key.NodePublic]*keyHolder{}, changed: make(chan struct{})}
}

// Register records that peer holds k until the returned release function is
// called (release is idempotent). It fails with ErrNodeKeyInUse when another
// peer holds k, and for the zero key.
func (s *NodeKeys) Register(peer uuid.UUID, k key.NodePublic) (release func(), _ error) {
	if k.IsZero() {
		return nil, errors.New("register node key: zero key")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.holders[k]
	switch {
	case h == nil:
		h = &keyHolder{peer: peer}
		s.holders[k] = h
		close(s.changed)
		s.changed = make(chan struct{})
		if s.observer != nil {
			s.observer.KeyAdded(peer, k)
		}
	case h.peer != peer:
		return nil, fmt.Errorf("register node key %s for peer %s: %w", k.ShortString(), peer, ErrNodeKeyInUse)
	}
	h.refs++
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			h.refs--
			if h.refs == 0 && s.holders[k] == h {
				delete(s.holders, k)
				if s.observer != nil {
					s.observer.KeyRemoved(h.peer, k)
				}
			}
		})
	}, nil
}

// Known reports whether a registered peer holds k.
func (s *NodeKeys) Known(k key.NodePublic) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.holders[k]
	return ok
}

// Changed returns a channel closed the next time a key is added.
func (s *NodeKeys) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// Await reports whether k is known, waiting until it is registered or ctx
// ends. A peer connects to the relay and to the coordinator at the same
// time, so the relay waits briefly for the coordinator to learn the key.
func (s *NodeKeys) Await(ctx context.Context, k key.NodePublic) bool {
	for {
		s.mu.Lock()
		_, ok := s.holders[k]
		ch := s.changed
		s.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-ch:
		}
	}
}
