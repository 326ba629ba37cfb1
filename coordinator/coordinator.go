package coordinator

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/google/uuid"
)

// Coordinator exchanges nodes between peers that share a tunnel. The
// in-memory implementation serves one coderd; a Postgres-backed one can
// implement the same interface for several replicas.
type Coordinator interface {
	// Coordinate registers the peer id (name is for logs) for as long as
	// the returned request channel stays open and ctx is not done. The
	// caller sends requests and closes the request channel when the peer's
	// connection ends: after a Request of type TypeDisconnect this is a clean
	// goodbye (tunnel peers learn KindDisconnected), otherwise the peer is
	// lost (KindLost) and may resume by calling Coordinate again with the
	// same id. The coordinator closes the response channel when it stops
	// serving this registration (the peer was too slow, the same id
	// registered again, or the coordinator closed); from then on it reads
	// no more requests, so senders must also watch ctx or the response
	// channel. auth authorizes every tunnel the peer adds; nil denies all.
	Coordinate(ctx context.Context, id uuid.UUID, name string, auth TunnelAuth) (chan<- *Request, <-chan *Response)
	// Close disconnects every peer and waits for its goroutines.
	Close() error
}

// TunnelAuth authorizes the tunnels one peer asks for. coderd supplies one
// per peer: a client may add tunnels to the agents its user may reach; an
// agent adds none (it only receives tunnels).
type TunnelAuth interface {
	// AuthorizeTunnel returns nil when src may open a tunnel to dst.
	AuthorizeTunnel(ctx context.Context, src, dst uuid.UUID) error
}

// TunnelAuthFunc adapts a function to TunnelAuth.
type TunnelAuthFunc func(ctx context.Context, src, dst uuid.UUID) error

// AuthorizeTunnel calls f.
func (f TunnelAuthFunc) AuthorizeTunnel(ctx context.Context, src, dst uuid.UUID) error {
	return f(ctx, src, dst)
}

// AllowTunnelsTo authorizes tunnels only to the listed destinations.
func AllowTunnelsTo(dsts ...uuid.UUID) TunnelAuth {
	allowed := make(map[uuid.UUID]struct{}, len(dsts))
	for _, d := range dsts {
		allowed[d] = struct{}{}
	}
	return TunnelAuthFunc(func(_ context.Context, src, dst uuid.UUID) error {
		if _, ok := allowed[dst]; !ok {
			return fmt.Errorf("peer %s may not open a tunnel to %s", src, dst)
		}
		return nil
	})
}

// Request is one message from a peer (see the peer → coordinator types in
// proto.go).
type Request struct {
	// Type is TypeUpdateSelf, TypeAddTunnel, TypeRemoveTunnel or
	// TypeDisconnect.
	Type MessageType
	// Node is the peer's node, for TypeUpdateSelf.
	Node json.RawMessage
	// Dst is the tunnel destination, for TypeAddTunnel and TypeRemoveTunnel.
	Dst uuid.UUID
}

// Response is one message to a peer: peer updates, or an error.
type Response struct {
	// Updates are changes of tunnel peers, in order.
	Updates []PeerUpdate
	// Snapshot marks the first response of every registration: Updates
	// then list every current tunnel peer of the registering peer (a node
	// for each connected one, KindLost for one that is away or has no node
	// yet). A peer the receiver still holds that is not listed is no longer
	// a tunnel peer: it was removed (e.g. revoked) while the receiver's
	// connection was down, so the receiver drops it (see Epoch).
	Snapshot bool
	// Epoch, on a snapshot, names the coordinator state the snapshot comes
	// from. Only a snapshot of the same epoch as the receiver's previous one
	// is authoritative about removals; after a coordinator restart (a new
	// in-memory epoch) the receiver only marks unlisted peers lost, and they
	// expire unless they come back.
	Epoch string
	// Error reports a refused request (e.g. an unauthorized tunnel).
	Error string
}
