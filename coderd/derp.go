package coderd

import (
	"net/http"

	"github.com/wgmesh/coder/coderd/httpapi"
	"github.com/wgmesh/coder/coderd/httpmw"
	"github.com/wgmesh/coder/coderd/rbac"
	"github.com/wgmesh/coder/codersdk"
)

// derpHandler serves the embedded DERP relay at /derp and
// /derp/latency-check. The relay hijacks connections with a plain
// http.Hijacker type assertion, so the handler hands it the innermost
// response writer (below the logging and metrics recorders) that can hijack.
func (api *API) derpHandler(w http.ResponseWriter, r *http.Request) {
	srv := api.agents.opts.DERPServer
	if srv == nil {
		httpapi.ResourceNotFound(w, r)
		return
	}
	srv.ServeHTTP(hijackableWriter(w), r)
}

// hijackableWriter unwraps w (through Unwrap methods) to a writer that
// implements http.Hijacker, or returns w unchanged.
func hijackableWriter(w http.ResponseWriter) http.ResponseWriter {
	cur := w
	for {
		if _, ok := cur.(http.Hijacker); ok {
			return cur
		}
		u, ok := cur.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return w
		}
		cur = u.Unwrap()
	}
}

// derpMap serves GET /api/v2/derp-map: the DERP map peers use. Every
// authenticated user may read it (it is what any workspace connection
// needs).
func (api *API) derpMap(w http.ResponseWriter, r *http.Request) {
	auth, _ := httpmw.AuthorizationFromContext(r.Context())
	// Reading one's own workspaces is what every connecting user may do.
	if !api.authorize(r, rbac.ActionRead, rbac.Object{Type: rbac.ResourceWorkspace, OwnerID: auth.User.ID}) {
		httpapi.Forbidden(w, r)
		return
	}
	m := api.agents.derpMaps.Current()
	if m == nil {
		httpapi.Write(r.Context(), w, http.StatusNotFound, codersdk.Response{Message: "No DERP map is configured."})
		return
	}
	httpapi.Write(r.Context(), w, http.StatusOK, m)
}

// workspaceAgentConnectionInfo serves GET /api/v2/workspaceagents/connection:
// what a client needs to join the mesh besides its coordinator connection
// (the DERP map and how to reach the relays). Same audience as /derp-map.
func (api *API) workspaceAgentConnectionInfo(w http.ResponseWriter, r *http.Request) {
	auth, _ := httpmw.AuthorizationFromContext(r.Context())
	if !api.authorize(r, rbac.ActionRead, rbac.Object{Type: rbac.ResourceWorkspace, OwnerID: auth.User.ID}) {
		httpapi.Forbidden(w, r)
		return
	}
	m := api.agents.derpMaps.Current()
	if m == nil {
		httpapi.Write(r.Context(), w, http.StatusNotFound, codersdk.Response{Message: "No DERP map is configured."})
		return
	}
	httpapi.Write(r.Context(), w, http.StatusOK, codersdk.AgentConnectionInfo{
		DERPMap:                  m,
		DERPForceWebsockets:      api.agents.opts.DERPForceWebSockets,
		DisableDirectConnections: api.agents.opts.DisableDirectConnections,
	})
}
