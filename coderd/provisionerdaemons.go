package coderd

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"

	"github.com/wgmesh/coder/coderd/apikey"
	"github.com/wgmesh/coder/coderd/httpapi"
	"github.com/wgmesh/coder/coderd/provisionerdserver"
	"github.com/wgmesh/coder/coderd/rbac"
	"github.com/wgmesh/coder/coderd/revocation"
	"github.com/wgmesh/coder/coderd/statecrypt"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/database"
)

// ProvisioningOptions configures templates, workspaces and the provisioner
// daemon protocol (served by coderd/provisionerdserver).
type ProvisioningOptions struct {
	// PSK is the pre-shared key provisioner daemons authenticate with
	// (--provisioner-daemon-psk). Empty refuses every daemon.
	PSK string
	// HeartbeatTimeout is how long a running job may go without a heartbeat
	// before it is failed; 0 means provisionerdserver.DefaultHeartbeatTimeout.
	HeartbeatTimeout time.Duration
	// AcquireWait bounds an acquire long poll; 0 means
	// provisionerdserver.DefaultAcquireWait.
	AcquireWait time.Duration
	// AgentBinaryPath is the coder binary served at /bin/coder-<os>-<arch> for
	// the server's platform; empty means the running executable.
	AgentBinaryPath string
	// StateKeys encrypts the stored Terraform state (--state-encryption-key);
	// nil stores it as plaintext.
	StateKeys *statecrypt.Keyring
}

// provisioning is the API's provisioning state: the daemon protocol server
// and the goroutine running its hung-job loop.
type provisioning struct {
	opts   ProvisioningOptions
	srv    *provisionerdserver.Server
	cancel context.CancelFunc
	done   chan struct{}
}

// jobInput is the input column of the provisioner jobs coderd queues.
type jobInput = provisionerdserver.JobInput

func (api *API) startProvisioning() error {
	o := api.opts.Provisioning
	srv, err := provisionerdserver.New(provisionerdserver.Options{
		Database:         api.db,
		AccessURL:        api.opts.AccessURL,
		PSK:              o.PSK,
		HeartbeatTimeout: o.HeartbeatTimeout,
		AcquireWait:      o.AcquireWait,
		Now:              api.opts.Now,
		Logger:           api.logger.With("component", "provisionerdserver"),
		StateKeys:        o.StateKeys,
		BuildDone: func(ctx context.Context, workspaceID uuid.UUID, transition database.WorkspaceTransition) {
			// The agents of a stopped or deleted workspace lose their
			// tokens now: close what they still hold (a start build's
			// agents are the workspace's live ones).
			if transition != database.WorkspaceTransitionStart {
				// Users first (none should remain: they were revoked
				// when the build was queued), so that the agents still
				// hear them removed; then the agents.
				api.revoke(ctx, revocation.Workspace(workspaceID))
				api.revoke(ctx, revocation.WorkspaceAgents(workspaceID))
			}
		},
	})
	if err != nil {
		return fmt.Errorf("create provisioner daemon server: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &provisioning{opts: o, srv: srv, cancel: cancel, done: make(chan struct{})}
	api.prov = p
	go func() {
		defer close(p.done)
		srv.Run(ctx)
	}()
	return nil
}

func (api *API) closeProvisioning() {
	if api.prov == nil {
		return
	}
	api.prov.cancel()
	<-api.prov.done
}

// notifyJobs wakes the acquire long polls after a job was queued.
func (p *provisioning) notifyJobs() { p.srv.NotifyJobs() }

// provisionerDaemonPublicRoutes are the routes authenticated by the daemon
// PSK (not an API key) and the agent binary download.
func provisionerDaemonPublicRoutes() []string {
	return append(provisionerdserver.PublicRoutes("/api/v2/provisionerdaemons"), "GET /bin/{name}", "HEAD /bin/{name}")
}

// provisionerDaemonRoutes mounts the daemon protocol.
func (api *API) provisionerDaemonRoutes(r chi.Router) { api.prov.srv.Routes(r) }

// HashAgentToken is how agent tokens are stored (apikey.HashAgentToken).
func HashAgentToken(token string) []byte { return apikey.HashAgentToken(token) }

// provisionerDaemons lists registered daemons (GET /api/v2/provisionerdaemons).
func (api *API) provisionerDaemons(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if !api.authorize(r, rbac.ActionRead, rbac.Object{Type: rbac.ResourceProvisioner}) {
		httpapi.Forbidden(w, r)
		return
	}
	daemons, err := api.db.GetProvisionerDaemons(ctx)
	if err != nil {
		httpapi.InternalServerError(w, r, "Get provisioner daemons.", err)
		return
	}
	live := api.now().Add(-api.liveDaemonWindow())
	out := make([]codersdk.ProvisionerDaemon, 0, len(daemons))
	for _, d := range daemons {
		tags := map[string]string{}
		_ = json.Unmarshal(d.Tags, &tags)
		sd := codersdk.ProvisionerDaemon{
			ID: d.ID, CreatedAt: d.CreatedAt, Name: d.Name, Version: d.Version,
			TerraformVersion: d.TerraformVersion, Provisioners: d.Provisioners, Tags: tags, Status: "offline",
		}
		if d.LastSeenAt.Valid {
			t := d.LastSeenAt.Time
			sd.LastSeenAt = &t
			if !t.Before(live) {
				sd.Status = "idle"
			}
		}
		out = append(out, sd)
	}
	httpapi.Write(ctx, w, http.StatusOK, out)
}

// liveDaemonWindow is how recently a daemon must have been seen to count as live.
func (api *API) liveDaemonWindow() time.Duration { return api.prov.srv.LiveWindow() }
