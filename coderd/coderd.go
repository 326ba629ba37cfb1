// Package coderd is the coder server: the HTTP API (/api/v2) served by a
// chi router — users, sessions and API keys, templates and template
// versions, workspaces and their builds, provisioner daemons and jobs,
// workspace agents (agent API, coordination, logs, terminal) — plus the
// dashboard, the embedded DERP relay, agent binaries and the workspace apps
// proxy (workspaceapps, backed here by the database). Authentication is
// httpmw's, authorization rbac's.
package coderd

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wgmesh/coder/coderd/buildinfo"
	"github.com/wgmesh/coder/coderd/httpapi"
	"github.com/wgmesh/coder/coderd/httpmw"
	"github.com/wgmesh/coder/coderd/prometheusmetrics"
	"github.com/wgmesh/coder/coderd/rbac"
	"github.com/wgmesh/coder/coderd/replicasync"
	"github.com/wgmesh/coder/coderd/revocation"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/database"
	"github.com/wgmesh/coder/database/pubsub"
	"github.com/wgmesh/coder/site"
)

// Defaults for Options.
const (
	DefaultSessionLifetime   = 24 * time.Hour
	DefaultTokenLifetime     = 30 * 24 * time.Hour
	DefaultMaxTokenLifetime  = 365 * 24 * time.Hour
	DefaultUsersPageLimit    = 50
	DefaultMaxUsersPageLimit = 1000
)

// Options configures the API.
type Options struct {
	// Logger receives structured logs; nil discards.
	Logger *slog.Logger
	// Database is the store; required.
	Database *database.Store
	// Pubsub is the deployment's pubsub; owned by the caller.
	Pubsub *pubsub.Pubsub
	// AccessURL is where users reach the deployment; required.
	AccessURL *url.URL
	// Authorizer decides every action; nil means rbac.NewAuthorizer().
	Authorizer rbac.Authorizer
	// PrometheusRegistry receives the API's metrics; nil means a private registry.
	PrometheusRegistry prometheus.Registerer
	// SessionLifetime is how long a password login lasts without use; 0 means 24h.
	SessionLifetime time.Duration
	// DefaultTokenLifetime applies when a token request names none; 0 means 30 days.
	DefaultTokenLifetime time.Duration
	// MaxTokenLifetime bounds token lifetimes; 0 means 365 days.
	MaxTokenLifetime time.Duration
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Agents configures the agent API, coordinator and DERP (agentapi.go).
	Agents AgentOptions
	// Provisioning configures templates, workspaces and the provisioner daemon
	// protocol (provisionerdaemons.go, coderd/provisionerdserver).
	Provisioning ProvisioningOptions
	// Apps configures the workspace apps proxy (workspaceapps.go).
	Apps AppsOptions
	// LoginLimits bounds password logins per client address and per
	// account, and concurrent password hashing (loginlimit.go).
	LoginLimits LoginLimitOptions
	// Replicas is this replica's registration among the replicas sharing
	// the database (nil for a single node); owned by the caller.
	Replicas *replicasync.Manager
	// Lifecycle configures the workspace lifecycle executor (lifecycle.go).
	Lifecycle LifecycleOptions
}

// API serves the coderd HTTP API.
type API struct {
	opts    Options
	logger  *slog.Logger
	db      *database.Store
	authz   rbac.Authorizer
	router  chi.Router
	metrics *prometheusmetrics.HTTP
	agents  *agentState
	prov    *provisioning
	site    *site.Handler
	apps    *appsState
	health  *healthState
	logins  *loginLimits

	agentBinaryHashes agentBinaryHashes
	conns             *agentConns
	// revocations ends live sessions whose access is revoked (revoke.go).
	revocations *revocation.Registry
	lifecycle   *lifecycleState
}

// New builds the API. It fails when a required option is missing or the
// metrics cannot be registered.
func New(opts Options) (*API, error) {
	if opts.Database == nil {
		return nil, errors.New("coderd: Options.Database is required")
	}
	if opts.AccessURL == nil {
		return nil, errors.New("coderd: Options.AccessURL is required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Authorizer == nil {
		opts.Authorizer = rbac.NewAuthorizer()
	}
	if opts.PrometheusRegistry == nil {
		opts.PrometheusRegistry = prometheus.NewRegistry()
	}
	if opts.SessionLifetime <= 0 {
		opts.SessionLifetime = DefaultSessionLifetime
	}
	if opts.DefaultTokenLifetime <= 0 {
		opts.DefaultTokenLifetime = DefaultTokenLifetime
	}
	if opts.MaxTokenLifetime <= 0 {
		opts.MaxTokenLifetime = DefaultMaxTokenLifetime
	}
	if opts.DefaultTokenLifetime > opts.MaxTokenLifetime {
		opts.DefaultTokenLifetime = opts.MaxTokenLifetime
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	metrics, err := prometheusmetrics.NewHTTP(opts.PrometheusRegistry)
	if err != nil {
		return nil, fmt.Errorf("register http metrics: %w", err)
	}
	api := &API{
		opts:    opts,
		logger:  opts.Logger,
		db:      opts.Database,
		authz:   opts.Authorizer,
		metrics: metrics,
		logins:  newLoginLimits(opts.LoginLimits, opts.Now),
	}
	if api.site, err = site.New(site.Options{Logger: opts.Logger}); err != nil {
		return nil, fmt.Errorf("load dashboard: %w", err)
	}
	if api.revocations, err = newRevocations(api); err != nil {
		return nil, err
	}
	if api.agents, err = newAgentState(api); err != nil {
		api.revocations.Close()
		return nil, err
	}
	if api.apps, err = newAppsState(api); err != nil {
		_ = api.agents.close()
		api.revocations.Close()
		return nil, err
	}
	api.health = newHealthState(api)
	api.conns = newAgentConns(api)
	api.conns.start(api.agents.opts.ConnReconcileInterval)
	if err := api.startProvisioning(); err != nil {
		api.conns.stop()
		_ = api.apps.close()
		_ = api.agents.close()
		api.revocations.Close()
		return nil, err
	}
	api.startLifecycle()
	api.router = api.routes()
	return api, nil
}

// Options returns the options the API runs with (defaults applied).
func (api *API) Options() Options { return api.opts }

// Handler returns the HTTP handler of the API.
func (api *API) Handler() http.Handler { return api.router }

// Router returns the chi router, for route introspection (chi.Walk).
func (api *API) Router() chi.Routes { return api.router }

// Close releases the API's resources. The database and pubsub belong to
// the caller and stay open.
func (api *API) Close() error {
	api.closeLifecycle()
	api.closeProvisioning()
	appsErr := api.apps.close()
	agentsErr := api.agents.close()
	api.conns.stop()
	api.revocations.Close()
	return errors.Join(agentsErr, appsErr)
}

// PublicRoutes returns the "METHOD pattern" (or "* pattern" for a route
// served for every method) of the routes served without authentication.
// Every other route requires credentials and authorizes its action; a test
// walks the router to keep it so.
func PublicRoutes() map[string]bool {
	m := map[string]bool{
		"GET /healthz":             true,
		"GET /api/v2/":             true,
		"GET /api/v2/buildinfo":    true,
		"GET /api/v2/users/first":  true,
		"POST /api/v2/users/first": true,
		"POST /api/v2/users/login": true,
		"* /derp":                  true,
		"* /derp/latency-check":    true,
	}
	for _, route := range provisionerDaemonPublicRoutes() {
		m[route] = true
	}
	for _, route := range appsPublicRoutes() {
		m[route] = true
	}
	return m
}

func (api *API) routes() chi.Router {
	r := chi.NewRouter()
	r.Use(
		api.metrics.Middleware,
		httpmw.Logger(api.logger),
		recoverer,
		api.appsSubdomain,
	)
	// Paths no route claims are the dashboard's (site/); /api/v2 keeps JSON 404s.
	r.NotFound(api.site.ServeHTTP)
	r.MethodNotAllowed(httpapi.MethodNotAllowedHandler)

	apiKey := httpmw.ExtractAPIKey(httpmw.APIKeyConfig{DB: api.db, Now: api.opts.Now})
	userParam := httpmw.ExtractUserParam(api.db)

	r.Get("/healthz", api.healthz)
	r.HandleFunc("/derp", api.derpHandler)
	r.HandleFunc("/derp/latency-check", api.derpHandler)
	r.Get("/bin/{name}", api.agentBinary)
	r.Head("/bin/{name}", api.agentBinary)
	api.appRoutes(r)
	r.Route("/api/v2", func(r chi.Router) {
		// Cookie-authenticated and unauthenticated state changes must come
		// from the dashboard's origin with a JSON body (cross-site forgery).
		r.Use(httpmw.CSRF(api.opts.AccessURL))
		// Text PostgreSQL cannot store never reaches a query.
		r.Use(httpapi.RejectBadText)
		api.agentRoutes(r, apiKey)
		api.provisioningRoutes(r, apiKey)
		api.appAPIRoutes(r, apiKey)
		api.healthRoutes(r, apiKey)
		api.replicaRoutes(r, apiKey)
		r.NotFound(httpapi.NotFoundHandler)
		r.Get("/", func(w http.ResponseWriter, r *http.Request) {
			httpapi.Write(r.Context(), w, http.StatusOK, codersdk.Response{Message: "👋"})
		})
		r.Get("/buildinfo", api.buildInfo)
		r.Route("/users", func(r chi.Router) {
			r.Get("/first", api.firstUser)
			r.Post("/first", api.postFirstUser)
			r.Post("/login", api.postLogin)
			r.Group(func(r chi.Router) {
				r.Use(apiKey)
				r.Post("/logout", api.postLogout)
				r.Get("/", api.users)
				r.Post("/", api.postUser)
				r.Route("/{user}", func(r chi.Router) {
					r.Use(userParam)
					r.Get("/", api.user)
					r.Delete("/", api.deleteUser)
					r.Put("/status/suspend", api.putUserStatus(database.UserStatusSuspended))
					r.Put("/status/activate", api.putUserStatus(database.UserStatusActive))
					r.Put("/roles", api.putUserRoles)
					api.userWorkspaceRoutes(r)
					r.Route("/keys", func(r chi.Router) {
						r.Post("/tokens", api.postToken)
						r.Get("/tokens", api.tokens)
						r.Get("/tokens/{keyname}", api.apiKeyByName)
						r.Delete("/{keyid}", api.deleteAPIKey)
					})
				})
			})
		})
	})
	return r
}

func (api *API) buildInfo(w http.ResponseWriter, r *http.Request) {
	httpapi.Write(r.Context(), w, http.StatusOK, codersdk.BuildInfoResponse{
		Version:      buildinfo.Version(),
		ExternalURL:  buildinfo.ExternalURL,
		DashboardURL: api.opts.AccessURL.String(),
	})
}

// authorize asks the authorizer whether the request's subject may do action
// on object. It logs denials and returns false; the handler chooses the
// response (404 when the caller may not know the object exists, else 403).
func (api *API) authorize(r *http.Request, action rbac.Action, object rbac.Object) bool {
	auth, ok := httpmw.AuthorizationFromContext(r.Context())
	if !ok {
		return false
	}
	err := api.authz.Authorize(r.Context(), auth.Subject, action, object)
	if err != nil {
		api.logger.DebugContext(r.Context(), "authorization denied",
			"user_id", auth.Subject.ID, "action", action, "object_type", object.Type,
			"object_owner", object.OwnerID, "error", err)
		return false
	}
	return true
}

// recoverer answers a panicking handler with a 500, which
// httpapi.InternalServerError logs with the request's logger.
func recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				httpapi.InternalServerError(w, r, "Internal server error.", fmt.Errorf("panic serving request: %v", v))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// now returns the API clock's current time, truncated to microseconds
// (PostgreSQL's precision) in UTC.
func (api *API) now() time.Time { return api.opts.Now().UTC().Truncate(time.Microsecond) }
