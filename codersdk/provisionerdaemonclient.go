package codersdk

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/google/uuid"
)

// The provisioner daemon protocol is plain HTTP + JSON under
// /api/v2/provisionerdaemons, authenticated by the pre-shared key header:
//
//	POST /register                 ProvisionerDaemonRegisterRequest -> ProvisionerDaemonRegisterResponse
//	POST /{daemon}/acquire         long poll: 200 AcquiredJob, or 204 when no job came in time
//	POST /{daemon}/jobs/{job}/logs ProvisionerLogsRequest
//	POST /{daemon}/jobs/{job}/heartbeat -> ProvisionerJobHeartbeatResponse (409 once the job is over)
//	POST /{daemon}/jobs/{job}/complete  CompletedJob
//	POST /{daemon}/jobs/{job}/fail      FailedJob

// ProvisionerDaemonPSKHeader carries the provisioner daemon pre-shared key.
const ProvisionerDaemonPSKHeader = "Coder-Provisioner-Daemon-PSK"

// ProvisionerDaemonRegisterRequest announces a daemon.
type ProvisionerDaemonRegisterRequest struct {
	Name             string            `json:"name"`
	Tags             map[string]string `json:"tags"`
	Provisioners     []string          `json:"provisioners"`
	Version          string            `json:"version"`
	TerraformFlavor  string            `json:"terraform_flavor"`
	TerraformVersion string            `json:"terraform_version"`
}

// ProvisionerDaemonRegisterResponse identifies a registered daemon.
type ProvisionerDaemonRegisterResponse struct {
	ID uuid.UUID `json:"id"`
	// Tags are the daemon's effective tags (scope=organization added when unset).
	Tags map[string]string `json:"tags"`
	// HeartbeatIntervalMillis is how often the daemon must heartbeat a running job.
	HeartbeatIntervalMillis int64 `json:"heartbeat_interval_ms"`
}

// ProvisionerJobHeartbeatResponse answers a heartbeat.
type ProvisionerJobHeartbeatResponse struct {
	// Canceled is true once a user canceled the job: the daemon interrupts
	// terraform and reports the job failed.
	Canceled bool `json:"canceled"`
}

// ProvisionerDaemonClient is the client a provisioner daemon uses: every call
// carries the pre-shared key. It never needs a user session.
type ProvisionerDaemonClient struct {
	// URL is the coderd deployment URL.
	URL *url.URL
	// PSK is the pre-shared key (server flag --provisioner-daemon-psk).
	PSK string
	// HTTPClient performs requests; nil means http.DefaultClient.
	HTTPClient *http.Client
}

func (c *ProvisionerDaemonClient) request(ctx context.Context, path string, body any, out any) (int, error) {
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
		reader = strings.NewReader(string(buf))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL.ResolveReference(ref).String(), reader)
	if err != nil {
		return 0, fmt.Errorf("create request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(ProvisionerDaemonPSKHeader, c.PSK)
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
		return res.StatusCode, ReadBodyAsError(res)
	}
	if out != nil {
		if err := json.NewDecoder(res.Body).Decode(out); err != nil {
			return res.StatusCode, fmt.Errorf("decode %s response: %w", path, err)
		}
	}
	return res.StatusCode, nil
}

// Register announces the daemon and returns its ID.
func (c *ProvisionerDaemonClient) Register(ctx context.Context, req ProvisionerDaemonRegisterRequest) (ProvisionerDaemonRegisterResponse, error) {
	var out ProvisionerDaemonRegisterResponse
	_, err := c.request(ctx, "/register", req, &out)
	return out, err
}

// AcquireJob waits (up to a server-chosen time) for a job matching the daemon's
// tags. It returns nil without error when none came.
func (c *ProvisionerDaemonClient) AcquireJob(ctx context.Context, daemon uuid.UUID) (*AcquiredJob, error) {
	var job AcquiredJob
	status, err := c.request(ctx, "/"+daemon.String()+"/acquire", struct{}{}, &job)
	if err != nil {
		return nil, err
	}
	if status == http.StatusNoContent {
		return nil, nil
	}
	return &job, nil
}

// SendLogs streams a batch of job logs.
func (c *ProvisionerDaemonClient) SendLogs(ctx context.Context, daemon uuid.UUID, req ProvisionerLogsRequest) error {
	_, err := c.request(ctx, fmt.Sprintf("/%s/jobs/%s/logs", daemon, req.JobID), req, nil)
	return err
}

// Heartbeat keeps a running job alive and reports whether it was canceled.
func (c *ProvisionerDaemonClient) Heartbeat(ctx context.Context, daemon, job uuid.UUID) (ProvisionerJobHeartbeatResponse, error) {
	var out ProvisionerJobHeartbeatResponse
	_, err := c.request(ctx, fmt.Sprintf("/%s/jobs/%s/heartbeat", daemon, job), struct{}{}, &out)
	return out, err
}

// CompleteJob reports a successful job.
func (c *ProvisionerDaemonClient) CompleteJob(ctx context.Context, daemon uuid.UUID, req CompletedJob) error {
	_, err := c.request(ctx, fmt.Sprintf("/%s/jobs/%s/complete", daemon, req.JobID), req, nil)
	return err
}

// FailJob reports a failed job.
func (c *ProvisionerDaemonClient) FailJob(ctx context.Context, daemon uuid.UUID, req FailedJob) error {
	_, err := c.request(ctx, fmt.Sprintf("/%s/jobs/%s/fail", daemon, req.JobID), req, nil)
	return err
}

// DefaultProvisionerHeartbeatInterval is used when the server names none.
const DefaultProvisionerHeartbeatInterval = 5 * time.Second
