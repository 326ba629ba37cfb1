package coderd

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/wgmesh/coder/coderd/apikey"
	"github.com/wgmesh/coder/coderd/httpapi"
	"github.com/wgmesh/coder/coderd/httpmw"
	"github.com/wgmesh/coder/coderd/workspaceapps"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/database"
)

// AppsOptions configures the workspace apps proxy (dev URLs).
type AppsOptions struct {
	// WildcardAccessURL is the subdomain apps host pattern, e.g.
	// "*.apps.example.com"; empty disables subdomain apps.
	WildcardAccessURL string
	// DisablePathApps refuses path-based apps, which share the dashboard
	// origin.
	DisablePathApps bool
	// DangerousAllowPathAppSiteOwnerAccess lets site owners open other
	// users' path-based apps and ports, whose code then runs on the
	// dashboard origin with the site owner's session
	// (workspaceapps.Policy.AllowPathAppSiteOwnerAccess).
	DangerousAllowPathAppSiteOwnerAccess bool
	// DangerousAllowPathAppSharing serves path-based apps shared beyond
	// their owner (authenticated, public) to those they are shared with,
	// whose code then runs on the dashboard origin with their sessions
	// (workspaceapps.Policy.AllowPathAppSharing).
	DangerousAllowPathAppSharing bool
	// AppKeyLifetime bounds the app-scoped keys of the subdomain cookie
	// handshake (default workspaceapps.DefaultAppKeyLifetime).
	AppKeyLifetime time.Duration
	// AuthCacheTTL is how long the proxy remembers a granted request
	// (credential + app) without asking the database: the bound on how
	// long a suspended user, revoked key or stopped workspace keeps
	// access (default workspaceapps.DefaultAuthCacheTTL; negative
	// disables the cache).
	AuthCacheTTL time.Duration
}

// appsState is the API's workspace apps proxy and its mesh connection.
type appsState struct {
	mesh   *workspaceapps.Mesh
	server *workspaceapps.Server
}

func newAppsState(api *API) (*appsState, error) {
	mesh, err := workspaceapps.NewMesh(workspaceapps.MeshOptions{
		Coordinator:    api.agents.coord,
		DERPMaps:       api.agents.derpMaps,
		BlockEndpoints: api.agents.opts.DisableDirectConnections,
		DERPPlainHTTP:  api.opts.AccessURL != nil && api.opts.AccessURL.Scheme == "http",
		DERPWebsockets: api.agents.opts.DERPForceWebSockets,
		NodeKeys:       api.agents.nodeKeys,
		HostKey: func(ctx context.Context, agentID uuid.UUID) (string, error) {
			a, err := api.db.GetWorkspaceAgentByID(ctx, agentID)
			if err != nil {
				return "", fmt.Errorf("look up agent %s: %w", agentID, err)
			}
			return a.SshHostKey, nil
		},
		Logger: api.logger,
	})
	if err != nil {
		return nil, fmt.Errorf("apps mesh: %w", err)
	}
	lifetime := api.opts.Apps.AppKeyLifetime
	if lifetime <= 0 {
		lifetime = workspaceapps.DefaultAppKeyLifetime
	}
	backend := &appsBackend{
		db:          api.db,
		auth:        httpmw.NewAuthenticator(httpmw.APIKeyConfig{DB: api.db, Now: api.opts.Now}),
		now:         api.now,
		keyLifetime: lifetime,
		agentConnected: func(a database.WorkspaceAgent) bool {
			return api.agentStatus(a) == codersdk.WorkspaceAgentConnected
		},
	}
	server, err := workspaceapps.New(workspaceapps.Options{
		Logger: api.logger,
		Authorizer: newAppActivity(&workspaceapps.Policy{
			Identifier: backend, Apps: backend, RBAC: api.authz,
			AllowPathAppSiteOwnerAccess: api.opts.Apps.DangerousAllowPathAppSiteOwnerAccess,
			AllowPathAppSharing:         api.opts.Apps.DangerousAllowPathAppSharing,
		}, api),
		AppKeys:          backend,
		Dialer:           mesh,
		AccessURL:        api.opts.AccessURL,
		WildcardHostname: api.opts.Apps.WildcardAccessURL,
		DisablePathApps:  api.opts.Apps.DisablePathApps,
		AuthCacheTTL:     api.opts.Apps.AuthCacheTTL,
		Now:              api.opts.Now,
		Track:            api.trackAppRequest,
	})
	if err != nil {
		_ = mesh.Close()
		return nil, fmt.Errorf("workspace apps: %w", err)
	}
	return &appsState{mesh: mesh, server: server}, nil
}

// appsBackend answers the apps proxy's questions from the database: who
// holds a credential (workspaceapps.Identifier, through the API's one
// authentication path), what a request names (workspaceapps.AppLookup),
// and the app keys of the subdomain handshake (workspaceapps.AppKeys).
type appsBackend struct {
	db             *database.Store
	auth           *httpmw.Authenticator
	now            func() time.Time // UTC, microseconds
	keyLifetime    time.Duration
	agentConnected func(database.WorkspaceAgent) bool
}

var (
	_ workspaceapps.Identifier = (*appsBackend)(nil)
	_ workspaceapps.AppLookup  = (*appsBackend)(nil)
	_ workspaceapps.AppKeys    = (*appsBackend)(nil)
)

// authenticate validates a credential with httpmw.Authenticator (which
// also records its use). It returns workspaceapps.ErrUnauthenticated when
// the credential does not authenticate.
func (b *appsBackend) authenticate(ctx context.Context, c workspaceapps.Credential) (httpmw.Authorization, error) {
	var want httpmw.KeyRequirement
	switch c.Kind {
	case workspaceapps.CredentialSession:
		want.Scope = codersdk.APIKeyScopeAll
	case workspaceapps.CredentialAppKey:
		want.Scope = codersdk.APIKeyScopeApplicationConnect
		want.TokenNamePrefix = workspaceapps.AppKeyNamePrefix(c.Host)
	default:
		return httpmw.Authorization{}, workspaceapps.ErrUnauthenticated
	}
	a, err := b.auth.Authenticate(ctx, c.Token, want)
	var authErr *httpmw.AuthError
	if errors.As(err, &authErr) {
		return httpmw.Authorization{}, workspaceapps.ErrUnauthenticated
	}
	return a, err
}

// Identify implements workspaceapps.Identifier.
func (b *appsBackend) Identify(ctx context.Context, c workspaceapps.Credential) (*workspaceapps.Identity, error) {
	if c.Token == "" {
		return nil, nil
	}
	a, err := b.authenticate(ctx, c)
	if errors.Is(err, workspaceapps.ErrUnauthenticated) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &workspaceapps.Identity{UserID: a.User.ID, KeyID: a.Key.ID, Subject: a.Subject, Expires: a.Key.ExpiresAt}, nil
}

// IssueHandshake implements workspaceapps.AppKeys: a handshake key is an
// application_connect key whose token name binds it to the app origin
// (workspaceapps.HandshakeKeyNamePrefix, never an app key's prefix), that
// expires after workspaceapps.HandshakeLifetime and whose lifetime_seconds
// records how long the app key it is redeemed for may live (keyLifetime,
// or less when the session expires sooner).
func (b *appsBackend) IssueHandshake(ctx context.Context, session workspaceapps.Credential, origin string) (string, error) {
	if session.Kind != workspaceapps.CredentialSession {
		return "", workspaceapps.ErrUnauthenticated
	}
	from, err := b.authenticate(ctx, session)
	if err != nil {
		return "", err
	}
	now := b.now()
	appKeyExpires := now.Add(b.keyLifetime)
	if from.Key.ExpiresAt.Before(appKeyExpires) {
		appKeyExpires = from.Key.ExpiresAt
	}
	expires := now.Add(workspaceapps.HandshakeLifetime)
	if appKeyExpires.Before(expires) {
		expires = appKeyExpires
	}
	token, err := b.insertAppConnectKey(ctx, from.User.ID, workspaceapps.HandshakeKeyNamePrefix(origin), now, expires, int64(appKeyExpires.Sub(now)/time.Second))
	if err != nil {
		return "", fmt.Errorf("insert handshake key: %w", err)
	}
	return token, nil
}

// RedeemHandshake implements workspaceapps.AppKeys: the handshake key
// must authenticate for origin; it is then deleted (of concurrent
// redemptions exactly one wins) and an app key bound to the origin's host
// is issued, expiring when the handshake recorded.
func (b *appsBackend) RedeemHandshake(ctx context.Context, key, origin string) (string, time.Time, error) {
	a, err := b.auth.Authenticate(ctx, key, httpmw.KeyRequirement{
		Scope:           codersdk.APIKeyScopeApplicationConnect,
		TokenNamePrefix: workspaceapps.HandshakeKeyNamePrefix(origin),
	})
	var authErr *httpmw.AuthError
	if errors.As(err, &authErr) {
		return "", time.Time{}, workspaceapps.ErrUnauthenticated
	}
	if err != nil {
		return "", time.Time{}, err
	}
	used, err := b.db.ConsumeAPIKeyByID(ctx, a.Key.ID)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", time.Time{}, workspaceapps.ErrUnauthenticated
	}
	if err != nil {
		return "", time.Time{}, fmt.Errorf("consume handshake key: %w", err)
	}
	now := b.now()
	expires := used.CreatedAt.Add(time.Duration(used.LifetimeSeconds) * time.Second).UTC().Truncate(time.Microsecond)
	if !expires.After(now) {
		return "", time.Time{}, workspaceapps.ErrUnauthenticated
	}
	_, host, _ := strings.Cut(origin, "://")
	token, err := b.insertAppConnectKey(ctx, used.UserID, workspaceapps.AppKeyNamePrefix(host), now, expires, int64(expires.Sub(now)/time.Second))
	if err != nil {
		return "", time.Time{}, fmt.Errorf("insert app key: %w", err)
	}
	return token, expires, nil
}

// insertAppConnectKey stores a new application_connect key of user whose
// token name starts with prefix and returns its token.
func (b *appsBackend) insertAppConnectKey(ctx context.Context, user uuid.UUID, prefix string, now, expires time.Time, lifetimeSeconds int64) (string, error) {
	key, err := apikey.Generate()
	if err != nil {
		return "", fmt.Errorf("generate key: %w", err)
	}
	_, err = b.db.InsertAPIKey(ctx, database.InsertAPIKeyParams{
		ID:              key.ID,
		HashedSecret:    key.HashedSecret,
		UserID:          user,
		LastUsed:        now,
		ExpiresAt:       expires.UTC().Truncate(time.Microsecond),
		CreatedAt:       now,
		UpdatedAt:       now,
		LoginType:       database.LoginTypePassword,
		LifetimeSeconds: lifetimeSeconds,
		TokenName:       prefix + strings.ReplaceAll(uuid.NewString(), "-", "")[:12],
		Scope:           string(codersdk.APIKeyScopeApplicationConnect),
	})
	if err != nil {
		return "", err
	}
	return key.Token(), nil
}

// LookupApp implements workspaceapps.AppLookup.
func (b *appsBackend) LookupApp(ctx context.Context, req workspaceapps.Request) (*workspaceapps.Resolved, error) {
	db := b.db
	owner, err := db.GetUserByUsername(ctx, req.Owner)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, workspaceapps.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get owner: %w", err)
	}
	ws, err := db.GetWorkspaceByOwnerIDAndName(ctx, database.GetWorkspaceByOwnerIDAndNameParams{OwnerID: owner.ID, Name: req.Workspace, Deleted: false})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, workspaceapps.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get workspace: %w", err)
	}
	res := &workspaceapps.Resolved{Workspace: workspaceapps.Workspace{ID: ws.ID, OwnerID: ws.OwnerID, Name: ws.Name}}
	agents, err := db.GetWorkspaceAgentsInLatestBuildByWorkspaceID(ctx, ws.ID)
	if err != nil {
		return nil, fmt.Errorf("get workspace agents: %w", err)
	}
	if len(agents) == 0 {
		build, err := db.GetLatestWorkspaceBuildByWorkspaceID(ctx, ws.ID)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return nil, fmt.Errorf("get latest build: %w", err)
		}
		res.Starting = err == nil && build.Transition == database.WorkspaceTransitionStart
		return res, nil
	}
	agent := agents[0]
	if req.Agent != "" {
		found := false
		for _, a := range agents {
			if strings.EqualFold(a.Name, req.Agent) {
				agent, found = a, true
				break
			}
		}
		if !found {
			return nil, workspaceapps.ErrNotFound
		}
	}
	res.Agent = &workspaceapps.Agent{ID: agent.ID, Name: agent.Name, Connected: b.agentConnected(agent)}
	if req.App == "" {
		return res, nil
	}
	app, err := db.GetWorkspaceAppByAgentIDAndSlug(ctx, database.GetWorkspaceAppByAgentIDAndSlugParams{AgentID: agent.ID, Slug: strings.ToLower(req.App)})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, workspaceapps.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get app: %w", err)
	}
	res.App = &workspaceapps.App{
		Slug:         app.Slug,
		URL:          app.Url.String,
		External:     app.External,
		SharingLevel: workspaceapps.SharingLevel(app.SharingLevel),
		Unhealthy:    app.Health == database.WorkspaceAppHealthUnhealthy,
	}
	return res, nil
}

func (s *appsState) close() error { return s.mesh.Close() }

// appsPublicRoutes are the app routes that authenticate by themselves
// (share levels allow anonymous access; the auth redirect sends visitors
// without a session to the login page).
func appsPublicRoutes() []string {
	return []string{
		"* /@{user}/{workspaceagent}/apps/*",
		"* /@{user}/{workspaceagent}/ports/*",
		"GET " + workspaceapps.AuthRedirectPath,
		"GET /api/v2/applications/host",
	}
}

// appsSubdomain is the root middleware serving subdomain app hosts.
func (api *API) appsSubdomain(next http.Handler) http.Handler {
	return api.apps.server.SubdomainMiddleware(next)
}

// appRoutes mounts the path-based app routes on the root router.
func (api *API) appRoutes(r chi.Router) {
	r.HandleFunc("/@{user}/{workspaceagent}/apps/*", api.apps.server.ServePathApp)
	r.HandleFunc("/@{user}/{workspaceagent}/ports/*", api.apps.server.ServePathApp)
}

// appAPIRoutes mounts the apps and terminal API under /api/v2.
func (api *API) appAPIRoutes(r chi.Router, apiKey func(http.Handler) http.Handler) {
	r.Get("/applications/auth-redirect", api.apps.server.ServeAuthRedirect)
	r.Get("/applications/host", api.appHost)
	_, connectAgent := api.workspaceAgentParams()
	r.With(apiKey, connectAgent).Get("/workspaceagents/{workspaceagent}/pty", api.workspaceAgentPTY)
}

// appHost serves GET /api/v2/applications/host: the subdomain apps host
// pattern ("" when subdomain apps are disabled). It is public: app URLs
// are not secret.
func (api *API) appHost(w http.ResponseWriter, r *http.Request) {
	httpapi.Write(r.Context(), w, http.StatusOK, AppHostResponse{Host: api.apps.server.WildcardHostname()})
}

// AppHostResponse is the body of GET /api/v2/applications/host.
type AppHostResponse struct {
	// Host is the wildcard pattern, e.g. "*.apps.example.com"; empty when
	// subdomain apps are disabled.
	Host string `json:"host"`
}
