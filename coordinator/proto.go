package coordinator

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"tailscale.com/tailcfg"
)

// ProtocolVersion is the only version of the wire protocol. A frame carrying
// another version closes the websocket.
const ProtocolVersion = 1

// MaxMessageSize bounds one websocket frame (a node or a DERP map); a larger
// frame closes the websocket.
const MaxMessageSize = 256 << 10

// MessageType names a frame on the wire.
type MessageType string

// Peer → coordinator.
const (
	// TypeUpdateSelf publishes the sender's node (Envelope.Node).
	TypeUpdateSelf MessageType = "update_self"
	// TypeAddTunnel asks for a tunnel to Envelope.Dst.
	TypeAddTunnel MessageType = "add_tunnel"
	// TypeRemoveTunnel drops the tunnel to Envelope.Dst.
	TypeRemoveTunnel MessageType = "remove_tunnel"
	// TypeDisconnect is a clean goodbye: tunnel peers learn "disconnected"
	// instead of "lost".
	TypeDisconnect MessageType = "disconnect"
)

// Coordinator → peer.
const (
	// TypePeerUpdate carries Envelope.Updates.
	TypePeerUpdate MessageType = "peer_update"
	// TypeDERPMap carries Envelope.DERPMap.
	TypeDERPMap MessageType = "derp_map"
	// TypeError carries Envelope.Message (e.g. an unauthorized tunnel).
	TypeError MessageType = "error"
)

// UpdateKind says what happened to a peer.
type UpdateKind string

const (
	// KindNode: the peer's current node is in PeerUpdate.Node.
	KindNode UpdateKind = "node"
	// KindDisconnected: the peer left cleanly (or the tunnel was removed);
	// forget it.
	KindDisconnected UpdateKind = "disconnected"
	// KindLost: the peer's connection to the coordinator dropped; it may
	// come back with the same key.
	KindLost UpdateKind = "lost"
)

// PeerUpdate tells a peer about one of its tunnel peers.
type PeerUpdate struct {
	// ID is the tunnel peer's ID (agent ID or client ID).
	ID uuid.UUID `json:"id"`
	// Kind is what happened.
	Kind UpdateKind `json:"kind"`
	// Node is the peer's node (JSON of tunnel.Node) when Kind is KindNode.
	Node json.RawMessage `json:"node,omitempty"`
}

// Envelope is one frame on the wire: {"version":1,"type":"...",...}. Only the
// fields of its Type are set.
type Envelope struct {
	Version int         `json:"version"`
	Type    MessageType `json:"type"`
	// Node is the sender's node (update_self).
	Node json.RawMessage `json:"node,omitempty"`
	// Dst is the tunnel destination (add_tunnel, remove_tunnel).
	Dst *uuid.UUID `json:"dst,omitempty"`
	// Updates are peer updates (peer_update).
	Updates []PeerUpdate `json:"updates,omitempty"`
	// Snapshot marks a peer_update that lists every tunnel peer (the
	// first of each registration; see Response.Snapshot).
	Snapshot bool `json:"snapshot,omitempty"`
	// Epoch names the coordinator state of a snapshot (Response.Epoch).
	Epoch string `json:"epoch,omitempty"`
	// DERPMap is the DERP map (derp_map).
	DERPMap *tailcfg.DERPMap `json:"derp_map,omitempty"`
	// Message is a human-readable error (error).
	Message string `json:"message,omitempty"`
}

// ErrUnknownVersion is returned by DecodeEnvelope for a frame of another
// protocol version.
var ErrUnknownVersion = errors.New("unknown protocol version")

// DecodeEnvelope parses and checks one frame: valid JSON, the supported
// version, a known type with the fields it needs.
func DecodeEnvelope(data []byte) (*Envelope, error) {
	var e Envelope
	if err := json.Unmarshal(data, &e); err != nil {
		return nil, fmt.Errorf("decode frame: %w", err)
	}
	if e.Version != ProtocolVersion {
		return nil, fmt.Errorf("%w %d (want %d)", ErrUnknownVersion, e.Version, ProtocolVersion)
	}
	switch e.Type {
	case TypeUpdateSelf:
		if len(e.Node) == 0 || string(e.Node) == "null" {
			return nil, errors.New("update_self without node")
		}
	case TypeAddTunnel, TypeRemoveTunnel:
		if e.Dst == nil || *e.Dst == uuid.Nil {
			return nil, fmt.Errorf("%s without dst", e.Type)
		}
	case TypeDisconnect:
	case TypePeerUpdate:
		for _, u := range e.Updates {
			switch u.Kind {
			case KindNode:
				if len(u.Node) == 0 || string(u.Node) == "null" {
					return nil, fmt.Errorf("peer_update for %s without node", u.ID)
				}
			case KindDisconnected, KindLost:
			default:
				return nil, fmt.Errorf("peer_update with unknown kind %q", u.Kind)
			}
		}
	case TypeDERPMap:
		if e.DERPMap == nil {
			return nil, errors.New("derp_map without map")
		}
	case TypeError:
	default:
		return nil, fmt.Errorf("unknown frame type %q", e.Type)
	}
	return &e, nil
}

// isPeerToCoordinator reports whether t may be sent by a peer.
func isPeerToCoordinator(t MessageType) bool {
	switch t {
	case TypeUpdateSelf, TypeAddTunnel, TypeRemoveTunnel, TypeDisconnect:
		return true
	}
	return false
}
