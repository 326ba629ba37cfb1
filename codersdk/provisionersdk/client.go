package provisionersdk

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/google/uuid"

	"github.com/wgmesh/coder/codersdk"
)

// Client is the client a provisioner daemon uses: every call carries the
// pre-shared key. It never needs a user session.
type Client struct {
	// URL is the coderd deployment URL.
	URL *url.URL
	// PSK is the pre-shared key (server flag --provisioner-daemon-psk).
	PSK string
	// HTTPClient performs requests; nil means http.DefaultClient.
	HTTPClient *http.Client
}

// post sends body as JSON to /api/v2/provisionerdaemons<path> and decodes a
// 200/201 answer into out. A 204 leaves out untouched; any other status is a
// *codersdk.Error.
func (c *Client) post(ctx context.Context, path string, body any, out any) (int, error) {
	ref, err := url.Parse("/api/v2/provisionerdaemons" + path)
	if err != nil {
		return 0, fmt.Errorf("parse path: %w", err)
	}
	var reader io.Reader
	if body != nil {
		buf, err := json.Marshal(body)
		if err != nil {
			return 0, fmt.Errorf("encode request: %w", err)
		}
		reader = bytes.NewReader(buf)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL.ResolveReference(ref).String(), reader)
	if err != nil {
		return 0, fmt.Errorf("create request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(PSKHeader, c.PSK)
	hc := c.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	res, err := hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("POST %s: %w", path, err)
	}
	defer res.Body.Close()
	if res.StatusCode == http.StatusNoContent {
		return res.StatusCode, nil
	}
	if res.StatusCode != http.StatusOK && res.StatusCode != http.StatusCreated {
		return res.StatusCode, codersdk.ReadBodyAsError(res)
	}
	if out != nil {
		if err := json.NewDecoder(res.Body).Decode(out); err != nil {
			return res.StatusCode, fmt.Errorf("decode %s response: %w", path, err)
		}
	}
	return res.StatusCode, nil
}

// Register announces the daemon and returns its ID.
func (c *Client) Register(ctx context.Context, req RegisterRequest) (RegisterResponse, error) {
	var out RegisterResponse
	_, err := c.post(ctx, "/register", req, &out)
	return out, err
}

// AcquireJob waits (up to a server-chosen time) for a job matching the daemon's
// tags. It returns nil without error when none came.
func (c *Client) AcquireJob(ctx context.Context, daemon uuid.UUID) (*AcquiredJob, error) {
	var job AcquiredJob
	status, err := c.post(ctx, "/"+daemon.String()+"/acquire", struct{}{}, &job)
	if err != nil {
		return nil, err
	}
	if status == http.StatusNoContent {
		return nil, nil
	}
	return &job, nil
}

// SendLogs streams a batch of job logs.
func (c *Client) SendLogs(ctx context.Context, daemon uuid.UUID, req LogsRequest) error {
	_, err := c.post(ctx, fmt.Sprintf("/%s/jobs/%s/logs", daemon, req.JobID), req, nil)
	return err
}

// Heartbeat keeps a running job alive and reports whether it was canceled.
func (c *Client) Heartbeat(ctx context.Context, daemon, job uuid.UUID) (HeartbeatResponse, error) {
	var out HeartbeatResponse
	_, err := c.post(ctx, fmt.Sprintf("/%s/jobs/%s/heartbeat", daemon, job), struct{}{}, &out)
	return out, err
}

// CompleteJob reports a successful job.
func (c *Client) CompleteJob(ctx context.Context, daemon uuid.UUID, req CompletedJob) error {
	_, err := c.post(ctx, fmt.Sprintf("/%s/jobs/%s/complete", daemon, req.JobID), req, nil)
	return err
}

// FailJob reports a failed job.
func (c *Client) FailJob(ctx context.Context, daemon uuid.UUID, req FailedJob) error {
	_, err := c.post(ctx, fmt.Sprintf("/%s/jobs/%s/fail", daemon, req.JobID), req, nil)
	return err
}

// UpdateState stores the partial Terraform state of a running workspace build.
func (c *Client) UpdateState(ctx context.Context, daemon uuid.UUID, req StateRequest) error {
	_, err := c.post(ctx, fmt.Sprintf("/%s/jobs/%s/state", daemon, req.JobID), req, nil)
	return err
}
