package workspaceapps

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/google/uuid"
)

// The proxy's dependencies. Server needs no database: it asks an
// Authorizer for a Decision on each request it has not decided recently,
// an AppKeys for the subdomain cookie handshake, and an AgentDialer to
// reach the agent. coderd implements the first two with its database
// (Policy over an Identifier and an AppLookup); a regional proxy will
// implement them by asking coderd for signed decisions, which is why
// requests and decisions are plain, serializable values.

// CredentialKind says what a credential is.
type CredentialKind string

const (
	// CredentialSession is a user's API key (dashboard session or API
	// token) of scope "all", from the Coder-Session-Token header or the
	// session cookie.
	CredentialSession CredentialKind = "session"
	// CredentialAppKey is an application_connect key bound to one app
	// origin (Host), from the app origin's cookie or the handshake
	// parameter.
	CredentialAppKey CredentialKind = "app_key"
)

// Credential is what an app request authenticates with. An empty Token is
// an anonymous request.
type Credential struct {
	Kind  CredentialKind `json:"kind"`
	Token string         `json:"token,omitempty"`
	// Host is the app origin (host[:port]) an app key must be bound to.
	Host string `json:"host,omitempty"`
}

// AccessRequest is one app request to decide: who asks, for what, and
// where.
type AccessRequest struct {
	Credential Credential `json:"credential"`
	App        Request    `json:"app"`
	// Path says the request came by path (/@owner/workspace/apps/...), on
	// the dashboard origin, rather than on the app's own subdomain. The
	// app's code then runs with the dashboard's cookies, so only the
	// workspace owner is served unless the deployment opts in.
	Path bool `json:"path,omitempty"`
}

// Grant is a decision to proxy a request: who may reach which app or port
// of which agent, until when.
type Grant struct {
	// UserID is who was granted; uuid.Nil for an anonymous request to a
	// public app.
	UserID uuid.UUID `json:"user_id"`
	// KeyID is the API key the grant rests on; empty when anonymous.
	KeyID         string    `json:"key_id,omitempty"`
	WorkspaceID   uuid.UUID `json:"workspace_id"`
	WorkspaceName string    `json:"workspace_name"`
	AgentID       uuid.UUID `json:"agent_id"`
	AgentName     string    `json:"agent_name"`
	// AppSlug is the app granted; empty for a port.
	AppSlug string `json:"app_slug,omitempty"`
	// Port is the port granted; 0 for an app.
	Port uint16 `json:"port,omitempty"`
	// Upstream is the absolute http(s) URL, with a port, requests are
	// sent to as seen from inside the workspace.
	Upstream string `json:"upstream"`
	// Expires is when the credential the grant rests on expires; a grant
	// is never used past it. Zero for an anonymous grant.
	Expires time.Time `json:"expires,omitzero"`
	// CheckedAt is when the decision was made (real time); set by the
	// Server, for Options.Track.
	CheckedAt time.Time `json:"-"`
}

// Denial is a decision not to proxy a request: an HTTP status and the
// page explaining it.
type Denial struct {
	Status int    `json:"status"`
	Title  string `json:"title"`
	Detail string `json:"detail"`
	// Login asks the visitor to sign in (the request had no identity).
	Login bool `json:"login,omitempty"`
	// Subdomain, on a refused path request, names the app or port (agent
	// included) whose subdomain URL the page points to instead.
	Subdomain *Request `json:"subdomain,omitempty"`
}

// Decision is the answer to an AccessRequest: exactly one of Grant and
// Denial is set.
type Decision struct {
	Grant  *Grant  `json:"grant,omitempty"`
	Denial *Denial `json:"denial,omitempty"`
}

// Authorizer decides app requests. Errors are internal failures; a
// request that may not be served is a Decision with a Denial.
type Authorizer interface {
	Authorize(ctx context.Context, req AccessRequest) (Decision, error)
}

// ErrUnauthenticated means a credential that must identify someone does
// not (missing, invalid, expired, suspended user, wrong origin).
var ErrUnauthenticated = errors.New("workspace apps: not authenticated")

// AppKeys runs the subdomain sign-in handshake: the dashboard origin
// issues a handshake key for one app origin, which that origin redeems,
// once, for an app key it keeps in its own cookie.
type AppKeys interface {
	// IssueHandshake returns a single-use handshake key for the holder of
	// session (a CredentialSession), bound to origin (see AppOrigin) and
	// valid for HandshakeLifetime. It returns ErrUnauthenticated when
	// session does not authenticate.
	IssueHandshake(ctx context.Context, session Credential, origin string) (key string, err error)
	// RedeemHandshake consumes a handshake key issued for origin and
	// returns a new app key bound to the origin's host (a CredentialAppKey
	// token) with its expiry, which is never later than that of the
	// session the handshake key was issued from. A key that is unknown,
	// expired, already redeemed or issued for another origin is
	// ErrUnauthenticated.
	RedeemHandshake(ctx context.Context, key, origin string) (appKey string, expires time.Time, err error)
}

// AgentDialer carries HTTP requests to a workspace agent: requests to
// http://HOST:PORT reach HOST:PORT as seen from inside the workspace.
// *Mesh is one. Errors from its round trips may be a *PortError or wrap
// ErrAgentUnreachable.
type AgentDialer interface {
	Transport(agentID uuid.UUID) http.RoundTripper
}

var _ AgentDialer = (*Mesh)(nil)
