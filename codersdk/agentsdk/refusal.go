package agentsdk

import (
	"net/http"

	"github.com/wgmesh/coder/codersdk"
)

// Messages of the 401 responses coderd gives an agent token. They are part
// of the agent API contract: an agent tells a permanent refusal from a
// temporary one by the message (IsTokenRevoked), never by parsing Detail.
const (
	// TokenRevokedMessage is the message of a permanent refusal: the token's
	// workspace was deleted, or a later build of it completed without this
	// agent. Retrying never helps; Detail names the reason.
	TokenRevokedMessage = "Agent token revoked: its workspace was deleted or rebuilt without this agent."
	// TokenInvalidMessage answers a token that matches no agent of any
	// workspace build (yet): the build that creates the agent may still be
	// running, so an agent keeps retrying with backoff.
	TokenInvalidMessage = "Invalid agent token."
	// TokenBuildPendingMessage answers the token of an agent whose workspace
	// has a newer build that is still running and does not (yet) include
	// it; retry with backoff until that build completes.
	TokenBuildPendingMessage = "The workspace's latest build is still running and does not include this agent yet."
)

// IsTokenRevoked reports whether err is coderd's permanent refusal of the
// agent token (401 with TokenRevokedMessage).
func IsTokenRevoked(err error) bool {
	apiErr, ok := codersdk.AsError(err)
	return ok && apiErr.StatusCode() == http.StatusUnauthorized && apiErr.Message == TokenRevokedMessage
}
