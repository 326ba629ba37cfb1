// Package provisionerdserver is coderd's side of the provisioner daemon
// protocol (codersdk/provisionersdk): daemons register, acquire queued jobs
// matching their tags (FOR UPDATE SKIP LOCKED), stream logs, heartbeat, and
// complete or fail jobs, all authenticated by the pre-shared key. Completion
// stores what a job found (parameters, resources with their metadata, agents
// with hashed tokens, scripts, apps, metadata definitions) and a workspace's
// Terraform state. A background loop fails running jobs whose heartbeat
// lapsed, so a daemon that dies mid-job never leaves its job running.
//
// coderd owns a Server: it mounts Routes under /api/v2/provisionerdaemons,
// runs Run in a goroutine it stops, and calls NotifyJobs when it queues a job.
package provisionerdserver

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"

	"github.com/wgmesh/coder/coderd/httpapi"
	"github.com/wgmesh/coder/coderd/statecrypt"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/codersdk/provisionersdk"
	"github.com/wgmesh/coder/database"
)

// Defaults of Options.
const (
	DefaultHeartbeatTimeout = 20 * time.Second
	DefaultAcquireWait      = 10 * time.Second
)

// HungJobError is the error of a job whose daemon stopped heartbeating.
const HungJobError = "provisioner daemon stopped heartbeating"

// JobInput is the input column of a provisioner job: which template version
// an import or dry run parses, or which workspace build a build applies.
// coderd writes it when it queues a job; the server reads it on acquisition.
type JobInput struct {
	TemplateVersionID uuid.UUID `json:"template_version_id,omitempty"`
	WorkspaceBuildID  uuid.UUID `json:"workspace_build_id,omitempty"`
}

// Options configures a Server.
type Options struct {
	// Database is the store; required.
	Database *database.Store
	// AccessURL is the deployment URL passed to templates (CODER_AGENT_URL); required.
	AccessURL *url.URL
	// PSK is the pre-shared key daemons authenticate with. Empty refuses every daemon.
	PSK string
	// HeartbeatTimeout is how long a running job may go without a heartbeat
	// before it is failed; 0 means DefaultHeartbeatTimeout.
	HeartbeatTimeout time.Duration
	// AcquireWait bounds an acquire long poll; 0 means DefaultAcquireWait.
	AcquireWait time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives operational logs; nil discards.
	Logger *slog.Logger
	// StateKeys encrypts the Terraform state stored per build (it holds the
	// agent tokens); nil stores it as plaintext. Plaintext rows are always
	// read, and sealed on the next write when StateKeys is set.
	StateKeys *statecrypt.Keyring
	// BuildDone, when set, is called after a workspace build's job
	// completed or failed, with the build's workspace and transition.
	// coderd ends the sessions of a stopped or deleted workspace's agents,
	// whose tokens stop working then.
	BuildDone func(ctx context.Context, workspaceID uuid.UUID, transition database.WorkspaceTransition)
}

// Server serves the provisioner daemon protocol.
type Server struct {
	opts   Options
	db     *database.Store
	logger *slog.Logger

	mu     sync.Mutex
	signal chan struct{} // closed (and replaced) by NotifyJobs
}

// New returns a Server; it fails when a required option is missing.
func New(opts Options) (*Server, error) {
	if opts.Database == nil {
		return nil, errors.New("provisionerdserver: Options.Database is required")
	}
	if opts.AccessURL == nil {
		return nil, errors.New("provisionerdserver: Options.AccessURL is required")
	}
	if opts.HeartbeatTimeout <= 0 {
		opts.HeartbeatTimeout = DefaultHeartbeatTimeout
	}
	if opts.AcquireWait <= 0 {
		opts.AcquireWait = DefaultAcquireWait
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Server{opts: opts, db: opts.Database, logger: opts.Logger, signal: make(chan struct{})}, nil
}

// sealState encrypts a workspace's state for storage (StateKeys).
func (s *Server) sealState(state []byte, workspaceID uuid.UUID) ([]byte, error) {
	if s.opts.StateKeys == nil {
		return state, nil
	}
	return s.opts.StateKeys.Encrypt(state, workspaceID)
}

// openState decrypts a stored state for a provisioner. Encrypted state
// without a keyring fails (never empty state: terraform would then create
// the workspace's resources a second time).
func (s *Server) openState(stored []byte, workspaceID uuid.UUID) ([]byte, error) {
	if s.opts.StateKeys == nil {
		if statecrypt.IsEncrypted(stored) {
			return nil, fmt.Errorf("terraform state is encrypted (key ID %s) but no state encryption key is configured", statecrypt.StoredKeyID(stored))
		}
		return stored, nil
	}
	return s.opts.StateKeys.Decrypt(stored, workspaceID)
}

// now returns the clock's time in UTC, truncated to PostgreSQL's precision.
// buildDone reports a finished workspace build job to Options.BuildDone.
func (s *Server) buildDone(ctx context.Context, job database.ProvisionerJob) {
	if s.opts.BuildDone == nil || job.Type != database.ProvisionerJobTypeWorkspaceBuild {
		return
	}
	build, err := s.db.GetWorkspaceBuildByJobID(ctx, job.ID)
	if err != nil {
		s.logger.WarnContext(ctx, "get finished build", "job_id", job.ID, "error", err)
		return
	}
	s.opts.BuildDone(ctx, build.WorkspaceID, build.Transition)
}

func (s *Server) now() time.Time { return s.opts.Now().UTC().Truncate(time.Microsecond) }

// NotifyJobs wakes every acquire long poll of this server; call it after
// queueing a job. (Polls also re-check the queue every second, which covers
// jobs queued by other replicas.)
func (s *Server) NotifyJobs() {
	s.mu.Lock()
	defer s.mu.Unlock()
	close(s.signal)
	s.signal = make(chan struct{})
}

func (s *Server) wait() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.signal
}

// LiveWindow is how recently a daemon must have been seen to count as live:
// long enough to cover an acquire long poll and a heartbeat interval.
func (s *Server) LiveWindow() time.Duration {
	w := 2 * s.opts.AcquireWait
	if s.opts.HeartbeatTimeout > w {
		w = s.opts.HeartbeatTimeout
	}
	return w
}

// PublicRoutes returns the "METHOD pattern" of every route Routes serves,
// prefixed with where it is mounted. They are authenticated by the
// pre-shared key, not an API key.
func PublicRoutes(prefix string) []string {
	routes := []string{
		"POST /register",
		"POST /{daemon}/acquire",
		"POST /{daemon}/jobs/{job}/logs",
		"POST /{daemon}/jobs/{job}/heartbeat",
		"POST /{daemon}/jobs/{job}/state",
		"POST /{daemon}/jobs/{job}/complete",
		"POST /{daemon}/jobs/{job}/fail",
	}
	for i, r := range routes {
		method, pattern, _ := strings.Cut(r, " ")
		routes[i] = method + " " + prefix + pattern
	}
	return routes
}

// Routes registers the protocol's routes on r (coderd mounts them under
// /api/v2/provisionerdaemons), behind the pre-shared key check.
func (s *Server) Routes(r chi.Router) {
	r.Use(s.requirePSK)
	r.Post("/register", s.postRegister)
	r.Route("/{daemon}", func(r chi.Router) {
		r.Post("/acquire", s.postAcquire)
		r.Route("/jobs/{job}", func(r chi.Router) {
			r.Post("/logs", s.postLogs)
			r.Post("/heartbeat", s.postHeartbeat)
			r.Post("/state", s.postState)
			r.Post("/complete", s.postComplete)
			r.Post("/fail", s.postFail)
		})
	})
}

// requirePSK authenticates provisioner daemons by pre-shared key, in
// constant time.
func (s *Server) requirePSK(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := r.Header.Get(provisionersdk.PSKHeader)
		want := s.opts.PSK
		gh, wh := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
		if want == "" || got == "" || subtle.ConstantTimeCompare(gh[:], wh[:]) != 1 {
			httpapi.Write(r.Context(), w, http.StatusUnauthorized, codersdk.Response{
				Message: "Invalid or missing provisioner daemon pre-shared key.",
				Detail:  "Set --psk (CODER_PROVISIONER_DAEMON_PSK) to the server's --provisioner-daemon-psk.",
			})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Run fails hung jobs (see FailHungJobs) every quarter heartbeat timeout
// until ctx ends. After the database was unreachable (a check failed) it
// waits one heartbeat timeout before failing anything again: during the
// outage no daemon could heartbeat either, so a stale heartbeat then says
// nothing about the daemon (a PostgreSQL restart must not fail the builds
// that ran across it).
func (s *Server) Run(ctx context.Context) {
	interval := s.opts.HeartbeatTimeout / 4
	if interval < 100*time.Millisecond {
		interval = 100 * time.Millisecond
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	var lastFailure time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !lastFailure.IsZero() {
			if err := s.db.Pool().Ping(ctx); err != nil {
				lastFailure = s.now()
				continue
			}
			if s.now().Sub(lastFailure) < s.opts.HeartbeatTimeout {
				continue
			}
			lastFailure = time.Time{}
		}
		if err := s.FailHungJobs(ctx); err != nil && ctx.Err() == nil {
			s.logger.Warn("fail hung provisioner jobs; waiting a heartbeat timeout before the next attempt", "error", err)
			lastFailure = s.now()
		}
	}
}
