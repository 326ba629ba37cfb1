package codersdk

import (
	"context"
	"net/http"
	"time"

	"github.com/google/uuid"
)

// Replica is one coderd process of a deployment sharing one PostgreSQL.
type Replica struct {
	// ID identifies the replica (new at every start).
	ID uuid.UUID `json:"id"`
	// Hostname is the host the replica runs on.
	Hostname string `json:"hostname"`
	// RegionID is the DERP region of the replica's embedded relay.
	RegionID int `json:"region_id"`
	// RelayAddress is the URL other replicas mesh with its relay at
	// (--derp-server-relay-url); empty when it does not mesh.
	RelayAddress string `json:"relay_address"`
	// Version is the replica's build version.
	Version string `json:"version"`
	// StartedAt is when the replica started.
	StartedAt time.Time `json:"started_at"`
	// UpdatedAt is the replica's last heartbeat.
	UpdatedAt time.Time `json:"updated_at"`
	// Error is the last problem the replica reported about itself (e.g. a
	// relay it cannot mesh with); empty when healthy.
	Error string `json:"error,omitempty"`
}

// Replicas lists the live replicas of the deployment (owners only).
func (c *Client) Replicas(ctx context.Context) ([]Replica, error) {
	var out []Replica
	err := c.do(ctx, http.MethodGet, "/api/v2/replicas", nil, http.StatusOK, &out)
	return out, err
}
