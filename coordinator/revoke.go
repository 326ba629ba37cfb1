package coordinator

import (
	"context"
	"errors"
	"fmt"

	"github.com/coder/websocket"
	"github.com/google/uuid"
)

// ErrRevoked is the cancellation cause (context.WithCancelCause) with which
// coderd ends a peer's ServeWebsocket when the peer's access was revoked:
// the socket is closed with StatusPolicyViolation and reason "access
// revoked" instead of a shutdown status.
var ErrRevoked = errors.New("access revoked")

// RevokedReason is the close reason of a revoked peer's socket (status
// StatusPolicyViolation). A Controller that reads it drops every tunnel
// peer at once: its connections through them end instead of hanging.
const RevokedReason = "access revoked"

// IsRevoked reports whether err is the close of a socket whose access was
// revoked.
func IsRevoked(err error) bool {
	var ce websocket.CloseError
	return errors.As(err, &ce) && ce.Code == websocket.StatusPolicyViolation && ce.Reason == RevokedReason
}

// Disconnect removes peer id from c as though it had said goodbye: its
// tunnel peers learn KindDisconnected at once (they drop it, which ends the
// WireGuard session and every connection through it), and the tunnels it
// asked for are forgotten instead of being kept for it to resume. A live
// registration of id is replaced, which closes its socket. Only the
// Coordinate contract is used, so every Coordinator supports it. coderd
// calls it when a client's credentials, its user or its workspace are
// revoked, and for the agents of a stopped workspace.
func Disconnect(ctx context.Context, c Coordinator, id uuid.UUID) error {
	reqs, resps := c.Coordinate(ctx, id, "revoked", nil)
	select {
	case reqs <- &Request{Type: TypeDisconnect}:
	case <-ctx.Done():
		close(reqs)
		return fmt.Errorf("disconnect peer %s: %w", id, ctx.Err())
	}
	close(reqs)
	// The coordinator closes resps once it processed the goodbye.
	for {
		select {
		case _, ok := <-resps:
			if !ok {
				return nil
			}
		case <-ctx.Done():
			return fmt.Errorf("disconnect peer %s: %w", id, ctx.Err())
		}
	}
}
