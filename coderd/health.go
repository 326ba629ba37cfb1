package coderd

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
	"tailscale.com/types/key"

	"github.com/wgmesh/coder/coderd/healthcheck"
	"github.com/wgmesh/coder/coderd/httpapi"
	"github.com/wgmesh/coder/coderd/rbac"
	"github.com/wgmesh/coder/codersdk"
)

// Bounds of the /healthz database probe.
const (
	healthzPingTimeout = time.Second
	healthzCacheTTL    = time.Second
)

// healthState backs /healthz and /api/v2/debug/health.
type healthState struct {
	probe *healthcheck.DBProbe

	mu        sync.Mutex
	reachable bool // last /healthz result, to log changes only
	draining  bool // set by Drain: /healthz answers 503 from then on

	// reportMu lets one full report run at a time; concurrent callers
	// wait for it and share its result.
	reportMu sync.Mutex
	report   *codersdk.HealthReport
	reportAt time.Time
}

func newHealthState(api *API) *healthState {
	return &healthState{
		probe:     healthcheck.NewDBProbe(api.db.Pool().Ping, healthzPingTimeout, healthzCacheTTL),
		reachable: true,
	}
}

// healthz answers load balancers: 200 "OK" while the database answers a
// bounded ping (cached for a second), else 503 with the reason. The
// driver's error is logged, not shown to unauthenticated callers.
func (api *API) healthz(w http.ResponseWriter, r *http.Request) {
	api.health.mu.Lock()
	draining := api.health.draining
	api.health.mu.Unlock()
	if draining {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(ErrDraining.Error()))
		return
	}
	err := api.health.probe.Check(r.Context())
	api.health.mu.Lock()
	changed := api.health.reachable != (err == nil)
	api.health.reachable = err == nil
	api.health.mu.Unlock()
	if changed {
		if err != nil {
			api.logger.Error("healthz: database unreachable", "error", err)
		} else {
			api.logger.Info("healthz: database reachable again")
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(healthcheck.ErrDatabaseUnreachable.Error()))
		return
	}
	_, _ = w.Write([]byte("OK"))
}

// ErrDraining is what /healthz answers (503) once Drain was called.
var ErrDraining = errors.New("shutting down: finishing running jobs")

// Drain marks the server as shutting down: /healthz answers 503 from now
// on, so load balancers send new requests to other replicas while this one
// finishes what it runs. Requests that reach it are still served.
func (api *API) Drain() {
	api.health.mu.Lock()
	defer api.health.mu.Unlock()
	if !api.health.draining {
		api.logger.Info("draining: /healthz answers 503 until the server stops")
	}
	api.health.draining = true
}

// healthRoutes mounts the debug health report under /api/v2.
func (api *API) healthRoutes(r chi.Router, apiKey func(http.Handler) http.Handler) {
	r.Route("/debug", func(r chi.Router) {
		r.Use(apiKey)
		r.Get("/health", api.debugHealth)
	})
}

// healthReportReuse is how long a finished report answers later callers.
const healthReportReuse = 2 * time.Second

// debugHealth runs the deployment health checks (owners only).
func (api *API) debugHealth(w http.ResponseWriter, r *http.Request) {
	if !api.authorize(r, rbac.ActionRead, rbac.Object{Type: rbac.ResourceDeployment}) {
		httpapi.Forbidden(w, r)
		return
	}
	h := api.health
	h.reportMu.Lock()
	if h.report == nil || time.Since(h.reportAt) > healthReportReuse {
		var replicas func() []codersdk.Replica
		if m := api.opts.Replicas; m != nil {
			replicas = m.All
		}
		rep := healthcheck.Run(context.WithoutCancel(r.Context()), healthcheck.Options{
			Replicas:           replicas,
			PingDB:             api.db.Pool().Ping,
			DERPMap:            api.agents.derpMaps.Current,
			ProvisionerDaemons: api.healthProvisionerDaemons,
			Now:                api.opts.Now,
			DERPPlainHTTP:      api.opts.AccessURL.Scheme == "http",
			// The embedded relay admits only keys on the coordinator.
			AdmitProbeKey: func(k key.NodePublic) (func(), error) { return api.agents.nodeKeys.Register(uuid.New(), k) },
		})
		h.report, h.reportAt = &rep, time.Now()
	}
	rep := *h.report
	h.reportMu.Unlock()
	httpapi.Write(r.Context(), w, http.StatusOK, rep)
}

func (api *API) healthProvisionerDaemons(ctx context.Context) ([]codersdk.ProvisionerDaemonItem, error) {
	daemons, err := api.db.GetProvisionerDaemons(ctx)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, errors.New("the database did not answer in time")
		}
		return nil, err
	}
	live := api.now().Add(-api.liveDaemonWindow())
	out := make([]codersdk.ProvisionerDaemonItem, 0, len(daemons))
	for _, d := range daemons {
		item := codersdk.ProvisionerDaemonItem{ID: d.ID, Name: d.Name, Tags: map[string]string{}}
		_ = json.Unmarshal(d.Tags, &item.Tags)
		if d.LastSeenAt.Valid {
			t := d.LastSeenAt.Time
			item.LastSeenAt = &t
			item.Live = !t.Before(live)
		}
		out = append(out, item)
	}
	return out, nil
}
