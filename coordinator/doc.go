// Package coordinator introduces the peers of the mesh to each other. It
// replaces the Tailscale control plane: every peer (a client or a workspace
// agent) keeps one websocket to coderd on which it publishes its own node
// (keys, addresses, endpoints, home DERP) and the tunnels it wants; it
// receives the nodes of every peer it shares a tunnel with, their departure
// (lost or disconnected) and the DERP map.
//
// The pieces:
//   - proto.go: the JSON wire protocol (versioned envelope).
//   - Coordinator: the interface a coordinator implements (in-memory here,
//     Postgres-backed for high availability later), with a per-peer
//     TunnelAuth hook through which coderd authorizes every tunnel.
//   - ServeWebsocket: the server side of one peer's websocket.
//   - Controller: the client side, keeping a tunnel.Conn in sync.
//
// Every registration starts with a snapshot (a peer_update with
// "snapshot":true and the coordinator's "epoch"): the complete list of the
// peer's tunnel peers. A peer that resumes after its socket was down drops the
// peers the snapshot no longer lists (e.g. a client revoked meanwhile); see
// Response.Snapshot and Controller.
//
// Nodes are relayed opaquely (as JSON): the coordinator never interprets them.
package coordinator
