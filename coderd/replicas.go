package coderd

import (
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/wgmesh/coder/coderd/httpapi"
	"github.com/wgmesh/coder/coderd/rbac"
	"github.com/wgmesh/coder/codersdk"
)

// replicaRoutes mounts GET /api/v2/replicas.
func (api *API) replicaRoutes(r chi.Router, apiKey func(http.Handler) http.Handler) {
	r.With(apiKey).Get("/replicas", api.replicas)
}

// replicas lists the live replicas of the deployment (owners only). A
// single-node deployment (embedded PostgreSQL) registers none and answers
// an empty list.
func (api *API) replicas(w http.ResponseWriter, r *http.Request) {
	if !api.authorize(r, rbac.ActionRead, rbac.Object{Type: rbac.ResourceDeployment}) {
		httpapi.Forbidden(w, r)
		return
	}
	out := []codersdk.Replica{}
	if m := api.opts.Replicas; m != nil {
		out = append(out, m.All()...)
	}
	httpapi.Write(r.Context(), w, http.StatusOK, out)
}
