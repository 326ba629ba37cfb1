package coderd

import (
	"net/http"
	"net/netip"

	"github.com/google/uuid"
	"tailscale.com/types/key"

	"github.com/wgmesh/coder/coderd/httpapi"
	"github.com/wgmesh/coder/coderd/httpmw"
	"github.com/wgmesh/coder/coderd/rbac"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/tunnel"
)

// tailnetClientPeerID is the coordinator peer ID coderd assigns to the
// tunnel client clientID of user userID. It is a name-based (version 5)
// UUID in the user's namespace: it never equals an agent ID (random,
// version 4) nor another user's client, so a client cannot take over
// another peer's registration or address by choosing its client ID.
func tailnetClientPeerID(userID, clientID uuid.UUID) uuid.UUID {
	return uuid.NewSHA1(userID, clientID[:])
}

// tailnetClientAddress is the tailnet address a client peer may use.
func tailnetClientAddress(peerID uuid.UUID) netip.Prefix {
	return tunnel.PrefixFromUUID(peerID)
}

// workspaceAgentTailnetClient serves GET
// /api/v2/workspaceagents/connection/client?client_id=: the peer ID and
// tailnet address coderd assigns to that client of the caller. A client
// builds its tunnel with that address before it connects to the
// coordinator; the coordinator refuses nodes with any other address.
func (api *API) workspaceAgentTailnetClient(w http.ResponseWriter, r *http.Request) {
	auth, _ := httpmw.AuthorizationFromContext(r.Context())
	if !api.authorize(r, rbac.ActionRead, rbac.Object{Type: rbac.ResourceWorkspace, OwnerID: auth.User.ID}) {
		httpapi.Forbidden(w, r)
		return
	}
	clientID, ok := parseClientID(w, r)
	if !ok {
		return
	}
	if clientID == uuid.Nil {
		httpapi.Write(r.Context(), w, http.StatusBadRequest, codersdk.Response{
			Message:     "Missing client ID.",
			Validations: []codersdk.ValidationError{{Field: "client_id", Detail: "required"}},
		})
		return
	}
	peerID := tailnetClientPeerID(auth.User.ID, clientID)
	httpapi.Write(r.Context(), w, http.StatusOK, codersdk.TailnetClient{
		ClientID: clientID,
		PeerID:   peerID,
		Address:  tailnetClientAddress(peerID),
	})
}

// parseClientID reads the optional client_id query parameter (uuid.Nil when
// absent); a malformed one is answered with 400.
func parseClientID(w http.ResponseWriter, r *http.Request) (uuid.UUID, bool) {
	v := r.URL.Query().Get("client_id")
	if v == "" {
		return uuid.Nil, true
	}
	id, err := uuid.Parse(v)
	if err != nil || id == uuid.Nil {
		httpapi.Write(r.Context(), w, http.StatusBadRequest, codersdk.Response{
			Message:     "Invalid client ID.",
			Validations: []codersdk.ValidationError{{Field: "client_id", Detail: "must be a UUID"}},
		})
		return uuid.Nil, false
	}
	return id, true
}

// parseNodeKey reads the optional node_key query parameter: the WireGuard
// key the peer's tunnel uses, registered for relay admission as soon as
// the coordination socket is up. A malformed one is answered with 400.
func parseNodeKey(w http.ResponseWriter, r *http.Request) (key.NodePublic, bool) {
	v := r.URL.Query().Get("node_key")
	if v == "" {
		return key.NodePublic{}, true
	}
	var k key.NodePublic
	if err := k.UnmarshalText([]byte(v)); err != nil || k.IsZero() {
		httpapi.Write(r.Context(), w, http.StatusBadRequest, codersdk.Response{
			Message:     "Invalid node key.",
			Validations: []codersdk.ValidationError{{Field: "node_key", Detail: `must be a "nodekey:<hex>" public key`}},
		})
		return key.NodePublic{}, false
	}
	return k, true
}
