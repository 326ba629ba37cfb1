package workspaceapps

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/wgmesh/coder/coderd/rbac"
)

// Identity is who an authenticated app request comes from.
type Identity struct {
	UserID uuid.UUID
	// KeyID is the ID of the API key (session or app key) the credential
	// is, for ending the connections it opened when it is revoked.
	KeyID string
	// Subject is what owner-level access is decided for.
	Subject rbac.Subject
	// Expires is when the credential expires.
	Expires time.Time
}

// Identifier answers "who is asking".
type Identifier interface {
	// Identify returns the identity a credential proves, or nil for an
	// anonymous request (no token, or one that does not authenticate:
	// invalid, expired, wrong scope or origin, suspended user). Errors
	// are internal failures.
	Identify(ctx context.Context, c Credential) (*Identity, error)
}

// ErrNotFound means a request names no existing owner, workspace, agent or
// app.
var ErrNotFound = errors.New("workspace apps: not found")

// AppLookup answers "what does this request name".
type AppLookup interface {
	// LookupApp resolves the owner, workspace, agent (by name, or the
	// first agent of the latest build when the request names none) and,
	// for an app request, the app (by slug). It returns ErrNotFound when
	// any named part does not exist. A workspace whose latest build has no
	// agent resolves with a nil Agent.
	LookupApp(ctx context.Context, req Request) (*Resolved, error)
}

// Resolved is what a Request names.
type Resolved struct {
	Workspace Workspace
	// Agent is nil when the workspace's latest build has no agent.
	Agent *Agent
	// Starting says, when Agent is nil, that the latest build is a start
	// (an agent is on its way) rather than a stop.
	Starting bool
	// App is the app of an app request; nil for a port request.
	App *App
}

// Workspace is the workspace an app request names.
type Workspace struct {
	ID      uuid.UUID
	OwnerID uuid.UUID
	Name    string
}

// Agent is the agent an app request names.
type Agent struct {
	ID   uuid.UUID
	Name string
	// Connected reports whether the agent is connected to coderd.
	Connected bool
}

// SharingLevel says who may open an app (the values stored for workspace
// apps).
type SharingLevel string

// Sharing levels.
const (
	// SharingLevelOwner: those who may connect to the workspace.
	SharingLevelOwner SharingLevel = "owner"
	// SharingLevelAuthenticated: any signed-in, active user.
	SharingLevelAuthenticated SharingLevel = "authenticated"
	// SharingLevelPublic: anyone, anonymous included.
	SharingLevelPublic SharingLevel = "public"
)

// App is the app an app request names.
type App struct {
	Slug string
	// URL is where the app listens inside the workspace; empty for an app
	// without one.
	URL string
	// External apps are opened by the client (a URL scheme), not proxied.
	External bool
	// SharingLevel: anything but authenticated and public is owner.
	SharingLevel SharingLevel
	// Unhealthy is set when the app fails its health check.
	Unhealthy bool
}

// Policy is an Authorizer built on an Identifier, an AppLookup and an
// rbac.Authorizer: it applies the share levels.
//
//   - owner (and every port): whoever may connect to the workspace
//     (rbac update on it: its owner, or an owner-role user);
//   - authenticated: any signed-in, active user;
//   - public: anyone, anonymous included.
//
// Path requests (AccessRequest.Path) run the app on the dashboard origin,
// where its scripts act with the visitor's dashboard session, so they are
// served only to the workspace's owner: a site owner on someone else's
// path app or port is refused unless AllowPathAppSiteOwnerAccess, and
// anyone else on a shared path app unless AllowPathAppSharing. A refused
// request that its subdomain would serve gets a page pointing there.
//
// Requests that may not open the app get 404 without learning whether it
// exists; anonymous ones are asked to sign in whether it exists or not.
type Policy struct {
	Identifier Identifier
	Apps       AppLookup
	RBAC       rbac.Authorizer
	// AllowPathAppSiteOwnerAccess lets users who may connect to any
	// workspace (site owners) open other users' path apps and ports
	// (--dangerous-allow-path-app-site-owner-access).
	AllowPathAppSiteOwnerAccess bool
	// AllowPathAppSharing serves path apps shared beyond their owner
	// (authenticated, public) to those they are shared with
	// (--dangerous-allow-path-app-sharing).
	AllowPathAppSharing bool
}

var _ Authorizer = (*Policy)(nil)

var notFound = &Denial{Status: http.StatusNotFound, Title: "Application not found", Detail: "There is no such application, or you may not open it."}

var signIn = &Denial{Status: http.StatusUnauthorized, Title: "Sign in required", Detail: "Sign in to open this application.", Login: true}

// pathRefused is the answer to a path request that only the app's subdomain
// may serve; the proxy adds where that is.
var pathRefused = &Denial{Status: http.StatusForbidden, Title: "Path-based app access refused",
	Detail: "Apps opened by path run on the dashboard's origin, with your dashboard session, so this deployment serves them there only to the workspace owner."}

// deny returns a decision carrying a copy of d (callers may change it).
func deny(d *Denial) (Decision, error) {
	c := *d
	return Decision{Denial: &c}, nil
}

// Authorize implements Authorizer.
func (p *Policy) Authorize(ctx context.Context, req AccessRequest) (Decision, error) {
	id, err := p.Identifier.Identify(ctx, req.Credential)
	if err != nil {
		return Decision{}, fmt.Errorf("identify: %w", err)
	}
	// absent is the answer when nothing by that name may be shown: an
	// anonymous visitor is asked to sign in whether it exists or not.
	absent := notFound
	if id == nil {
		absent = signIn
	}
	res, err := p.Apps.LookupApp(ctx, req.App)
	if errors.Is(err, ErrNotFound) {
		return deny(absent)
	}
	if err != nil {
		return Decision{}, fmt.Errorf("look up app: %w", err)
	}
	ws := res.Workspace
	// ownerOnly is the owner share level: nil when the identity may
	// connect to the workspace.
	ownerOnly := func() *Denial {
		if id == nil {
			return signIn
		}
		obj := rbac.Object{Type: rbac.ResourceWorkspace, OwnerID: ws.OwnerID, ID: ws.ID.String()}
		if p.RBAC.Authorize(ctx, id.Subject, rbac.ActionUpdate, obj) != nil {
			return notFound
		}
		return nil
	}

	agent := res.Agent
	if agent == nil {
		// Nothing to reach: only those who may connect learn why.
		if d := ownerOnly(); d != nil {
			return deny(d)
		}
		if res.Starting {
			return deny(&Denial{Status: http.StatusServiceUnavailable, Title: "Workspace is starting", Detail: fmt.Sprintf("Workspace %q has no running agent yet. Wait for it to start and reload.", ws.Name)})
		}
		return deny(&Denial{Status: http.StatusServiceUnavailable, Title: "Workspace is stopped", Detail: fmt.Sprintf("Workspace %q is not running. Start it, then reload this page.", ws.Name)})
	}

	// isOwner: the identity owns the workspace, the one user a path
	// request serves by default.
	isOwner := id != nil && id.UserID == ws.OwnerID
	// pathAllowed decides a path request that the share level allows:
	// shared says the share level is beyond owner.
	pathAllowed := func(shared bool) *Denial {
		if !req.Path || isOwner {
			return nil
		}
		if shared && p.AllowPathAppSharing {
			return nil
		}
		if id == nil {
			return signIn
		}
		if p.AllowPathAppSiteOwnerAccess && ownerOnly() == nil {
			return nil
		}
		d := *pathRefused
		sub := req.App
		sub.Agent = agent.Name
		d.Subdomain = &sub
		return &d
	}

	var upstream *url.URL
	var unhealthy bool
	if req.App.App != "" {
		app := res.App
		if app == nil {
			return deny(absent)
		}
		switch app.SharingLevel {
		case SharingLevelPublic:
		case SharingLevelAuthenticated:
			if id == nil {
				return deny(signIn)
			}
		default:
			if d := ownerOnly(); d != nil {
				return deny(d)
			}
		}
		if d := pathAllowed(app.SharingLevel == SharingLevelPublic || app.SharingLevel == SharingLevelAuthenticated); d != nil {
			return deny(d)
		}
		if app.URL == "" || app.External {
			return deny(&Denial{Status: http.StatusNotFound, Title: "Not a web application", Detail: fmt.Sprintf("App %q has no URL to proxy to.", app.Slug)})
		}
		upstream, err = url.Parse(app.URL)
		if err != nil || (upstream.Scheme != "http" && upstream.Scheme != "https") || upstream.Host == "" {
			return deny(&Denial{Status: http.StatusBadGateway, Title: "Invalid application URL", Detail: fmt.Sprintf("App %q has an invalid URL.", app.Slug)})
		}
		if upstream.Port() == "" {
			port := "80"
			if upstream.Scheme == "https" {
				port = "443"
			}
			upstream.Host = net.JoinHostPort(upstream.Hostname(), port)
		}
		unhealthy = app.Unhealthy
	} else {
		// Ports are the owner's.
		if d := ownerOnly(); d != nil {
			return deny(d)
		}
		if d := pathAllowed(false); d != nil {
			return deny(d)
		}
		upstream = &url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(int(req.App.Port)))}
	}
	if !agent.Connected {
		return deny(&Denial{Status: http.StatusBadGateway, Title: "Agent disconnected", Detail: fmt.Sprintf("Agent %q of workspace %q is not connected. The workspace may be stopping or its agent may have crashed.", agent.Name, ws.Name)})
	}
	if unhealthy {
		return deny(&Denial{Status: http.StatusBadGateway, Title: "Application unhealthy", Detail: fmt.Sprintf("App %q is failing its health check. Check the app inside the workspace.", req.App.App)})
	}
	g := &Grant{
		WorkspaceID:   ws.ID,
		WorkspaceName: ws.Name,
		AgentID:       agent.ID,
		AgentName:     agent.Name,
		Port:          req.App.Port,
		Upstream:      upstream.String(),
	}
	if res.App != nil {
		g.AppSlug = res.App.Slug
	}
	if id != nil {
		g.UserID, g.Expires, g.KeyID = id.UserID, id.Expires, id.KeyID
	}
	return Decision{Grant: g}, nil
}
