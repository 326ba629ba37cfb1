package codersdk

import (
	"context"
	"net/http"
)

// BuildInfoResponse describes the server build.
type BuildInfoResponse struct {
	// Version is the server's version.
	Version string `json:"version"`
	// ExternalURL is a link to the source of this build.
	ExternalURL string `json:"external_url"`
	// DashboardURL is the deployment's access URL, where users reach it.
	DashboardURL string `json:"dashboard_url"`
}

// BuildInfo returns the server's build information. It needs no session.
func (c *Client) BuildInfo(ctx context.Context) (BuildInfoResponse, error) {
	var info BuildInfoResponse
	err := c.do(ctx, http.MethodGet, "/api/v2/buildinfo", nil, http.StatusOK, &info)
	return info, err
}
