package coderd

import (
	"fmt"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/wgmesh/coder/coderd/httpapi"
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
		Logger:         api.logger,
	})
	if err != nil {
		return nil, fmt.Errorf("apps mesh: %w", err)
	}
	server, err := workspaceapps.New(workspaceapps.Options{
		Logger:           api.logger,
		DB:               api.db,
		Authorizer:       api.authz,
		Mesh:             mesh,
		AccessURL:        api.opts.AccessURL,
		WildcardHostname: api.opts.Apps.WildcardAccessURL,
		DisablePathApps:  api.opts.Apps.DisablePathApps,
		AppKeyLifetime:   api.opts.Apps.AppKeyLifetime,
		AuthCacheTTL:     api.opts.Apps.AuthCacheTTL,
		Now:              api.opts.Now,
		AgentConnected: func(a database.WorkspaceAgent) bool {
			return api.agentStatus(a) == codersdk.WorkspaceAgentConnected
		},
	})
	if err != nil {
		_ = mesh.Close()
		return nil, fmt.Errorf("workspace apps: %w", err)
	}
	return &appsState{mesh: mesh, server: server}, nil
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
