package coderd

import (
	"net/http"
	"strings"

	"github.com/coder/websocket"

	"github.com/wgmesh/coder/coderd/httpapi"
	"github.com/wgmesh/coder/coderd/httpmw"
	"github.com/wgmesh/coder/codersdk"
)

// acceptWebsocket upgrades r to a websocket or refuses it with a 4xx: a
// request that is not a websocket upgrade (426), or one a browser sent from
// another origin (403, see httpmw.CrossOriginReason). Every websocket endpoint calls
// it before it touches an agent, a session or anything else with side
// effects, so a cross-site page (a top-level navigation, or a websocket from
// its own origin that carries the victim's cookie) starts nothing.
func (api *API) acceptWebsocket(w http.ResponseWriter, r *http.Request) (*websocket.Conn, bool) {
	ctx := r.Context()
	if !isWebsocketUpgrade(r) {
		w.Header().Set("Connection", "Upgrade")
		w.Header().Set("Upgrade", "websocket")
		httpapi.Write(ctx, w, http.StatusUpgradeRequired, codersdk.Response{
			Message: "This endpoint only serves websocket connections.",
			Detail:  "Open it with a websocket client (Connection: Upgrade, Upgrade: websocket).",
		})
		return nil, false
	}
	if reason := httpmw.CrossOriginReason(r, api.opts.AccessURL); reason != "" {
		api.logger.WarnContext(ctx, "refused cross-origin websocket",
			"path", r.URL.Path, "origin", r.Header.Get("Origin"), "sec_fetch_site", r.Header.Get("Sec-Fetch-Site"), "remote_addr", r.RemoteAddr)
		httpapi.Write(ctx, w, http.StatusForbidden, codersdk.Response{
			Message: "Cross-origin request refused.",
			Detail:  reason,
		})
		return nil, false
	}
	// The origin was checked above against the access URL and the request's
	// host; the library checks it again against the request's host.
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{OriginPatterns: []string{api.opts.AccessURL.Host}})
	if err != nil {
		api.logger.DebugContext(ctx, "accept websocket", "path", r.URL.Path, "error", err)
		return nil, false
	}
	return ws, true
}

// isWebsocketUpgrade reports whether r asks for a websocket upgrade.
func isWebsocketUpgrade(r *http.Request) bool {
	if r.Method != http.MethodGet {
		return false
	}
	return headerHasToken(r.Header, "Connection", "upgrade") && headerHasToken(r.Header, "Upgrade", "websocket")
}

// headerHasToken reports whether the comma-separated header name lists
// token (case-insensitively).
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}
