package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"os"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/wgmesh/coder/coderd"
	"github.com/wgmesh/coder/coderd/provisionerdserver"
	"github.com/wgmesh/coder/database"
	"github.com/wgmesh/coder/database/embeddedpg"
	"github.com/wgmesh/coder/database/pubsub"
)

// Environment variables of the server command.
const (
	EnvHTTPAddress        = "CODER_HTTP_ADDRESS"
	EnvAccessURL          = "CODER_ACCESS_URL"
	EnvPostgresURL        = "CODER_PG_CONNECTION_URL"
	EnvProvisionerDaemons = "CODER_PROVISIONER_DAEMONS"
	// EnvProvisionerHeartbeatTimeout is the env twin of --provisioner-heartbeat-timeout.
	EnvProvisionerHeartbeatTimeout = "CODER_PROVISIONER_HEARTBEAT_TIMEOUT"
	// EnvProvisionerDrainTimeout is the env twin of --provisioner-drain-timeout.
	EnvProvisionerDrainTimeout = "CODER_PROVISIONER_DRAIN_TIMEOUT"
	EnvPrometheusAddress       = "CODER_PROMETHEUS_ADDRESS"
	EnvWildcardAccessURL       = "CODER_WILDCARD_ACCESS_URL"
	EnvDisablePathApps         = "CODER_DISABLE_PATH_APPS"
	// EnvDangerousAllowPathAppSiteOwnerAccess is the env twin of
	// --dangerous-allow-path-app-site-owner-access.
	EnvDangerousAllowPathAppSiteOwnerAccess = "CODER_DANGEROUS_ALLOW_PATH_APP_SITE_OWNER_ACCESS"
	// EnvDangerousAllowPathAppSharing is the env twin of
	// --dangerous-allow-path-app-sharing.
	EnvDangerousAllowPathAppSharing = "CODER_DANGEROUS_ALLOW_PATH_APP_SHARING"
	// EnvHTTPReadHeaderTimeout and the two below are the HTTP server's
	// slow-client timeouts.
	EnvHTTPReadHeaderTimeout = "CODER_HTTP_READ_HEADER_TIMEOUT"
	EnvHTTPReadTimeout       = "CODER_HTTP_READ_TIMEOUT"
	EnvHTTPIdleTimeout       = "CODER_HTTP_IDLE_TIMEOUT"
	// EnvLoginRateLimit and the three below bound password logins
	// (coderd.LoginLimitOptions).
	EnvLoginRateLimit           = "CODER_LOGIN_RATE_LIMIT"
	EnvLoginFailureLimit        = "CODER_LOGIN_FAILURE_LIMIT"
	EnvLoginRateLimitWindow     = "CODER_LOGIN_RATE_LIMIT_WINDOW"
	EnvLoginMaxConcurrentHashes = "CODER_LOGIN_MAX_CONCURRENT_HASHES"
)

// DefaultProvisionerDrainTimeout is the default of --provisioner-drain-timeout.
const DefaultProvisionerDrainTimeout = 5 * time.Minute

// ServerConfig configures StartServer.
type ServerConfig struct {
	// HTTPAddress is the API listener address (host:port; port 0 picks one).
	// Several comma-separated addresses each get a listener, e.g.
	// "127.0.0.1:3000,172.17.0.1:3000": loopback for the host and the Docker
	// bridge for workspaces in containers, without listening on every
	// interface. The first one is the default access URL's.
	HTTPAddress string
	// AccessURL is where users reach the deployment; empty means
	// http://<bound HTTP address>.
	AccessURL string
	// PostgresURL is the database; empty starts an embedded cluster in
	// <ConfigDir>/postgres.
	PostgresURL string
	// ConfigDir holds server state (the embedded cluster).
	ConfigDir string
	// ProvisionerDaemons is the number of built-in provisioner daemons.
	ProvisionerDaemons int
	// ProvisionerDaemonPSK authenticates external provisioner daemons; empty
	// refuses them (built-in daemons then use a random in-memory key).
	ProvisionerDaemonPSK string
	// ProvisionerHeartbeatTimeout is how long a running job may go without
	// a heartbeat from its daemon before it is failed (a killed daemon or
	// replica); 0 means coderd's default (20 s, so such a build fails
	// within 25 s).
	ProvisionerHeartbeatTimeout time.Duration
	// ProvisionerDrainTimeout bounds how long a shutdown (SIGTERM) waits for
	// the jobs the built-in daemons run to finish (see Server.Drain).
	ProvisionerDrainTimeout time.Duration
	// Terraform names the binary and CLI configuration of the built-in daemons.
	Terraform TerraformConfig
	// PrometheusAddress serves /metrics when not empty.
	PrometheusAddress string
	// Logger receives structured logs; nil discards.
	Logger *slog.Logger
	// DERP configures the embedded relay, STUN and the DERP map (server_derp.go).
	DERP DERPConfig
	// WildcardAccessURL serves subdomain workspace apps, e.g. "*.apps.example.com".
	WildcardAccessURL string
	// DisablePathApps refuses path-based workspace apps.
	DisablePathApps bool
	// DangerousAllowPathAppSiteOwnerAccess lets site owners open other
	// users' path-based apps and ports (see coderd.AppsOptions).
	DangerousAllowPathAppSiteOwnerAccess bool
	// DangerousAllowPathAppSharing serves shared path-based apps to those
	// they are shared with (see coderd.AppsOptions).
	DangerousAllowPathAppSharing bool
	// StateEncryptionKey encrypts the stored Terraform state (base64 or hex,
	// 32 bytes); empty uses <ConfigDir>/state-encryption-key, generated on
	// first start (server_statekey.go).
	StateEncryptionKey string
	// StateEncryptionOldKeys still decrypt state written before a rotation;
	// new writes always use the current key.
	StateEncryptionOldKeys []string
	// HTTPServer holds the slow-client timeouts of the API listeners.
	HTTPServer coderd.HTTPServerOptions
	// LoginLimits bounds password logins per client address and per
	// account (validated by StartServer; zero fields take coderd's
	// defaults).
	LoginLimits coderd.LoginLimitOptions
	// HA tunes high availability (on with an external PostgreSQL; server_ha.go).
	HA HAConfig
	// AutobuildPollInterval is how often the lifecycle executor runs
	// (autostart, autostop, dormancy, cleanup); 0 means coderd's default.
	AutobuildPollInterval time.Duration
}

// Server is a running coderd with its database, pubsub and listeners.
type Server struct {
	// AccessURL is where users reach the deployment.
	AccessURL *url.URL
	// HTTPAddr is the bound API listener address (the first one).
	HTTPAddr net.Addr
	// HTTPAddrs are all bound API listener addresses.
	HTTPAddrs []net.Addr
	// STUNAddrs are the UDP addresses the embedded STUN server is bound to.
	STUNAddrs []net.Addr
	// PrometheusAddr is the bound metrics listener address (nil when off).
	PrometheusAddr net.Addr

	logger     *slog.Logger
	httpServer *http.Server
	promServer *http.Server
	api        *coderd.API
	ps         *pubsub.Pubsub
	store      *database.Store
	cluster    *embeddedpg.Cluster
	wg         sync.WaitGroup
	stopDERP   func()
	ha         *haState
	serveErr   chan error
	closeOnce  sync.Once
	closeErr   error
	// stopDaemons stops the built-in provisioner daemons (provisioners.go).
	stopDaemons func()
	// drainDaemons stops them acquiring jobs and waits until the running
	// ones finish or ctx ends (provisioners.go).
	drainDaemons func(ctx context.Context) error
}

// StartServer connects to (or starts) PostgreSQL, migrates it and serves
// coderd. Close stops everything it started.
func StartServer(ctx context.Context, cfg ServerConfig) (_ *Server, err error) {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{logger: logger, serveErr: make(chan error, 2)}
	defer func() {
		if err != nil {
			_ = s.Close(context.WithoutCancel(ctx))
		}
	}()

	pgURL := cfg.PostgresURL
	if pgURL == "" {
		if cfg.ConfigDir == "" {
			return nil, errors.New("either a PostgreSQL URL or a config directory (for the embedded cluster) is required")
		}
		dataDir := filepath.Join(cfg.ConfigDir, "postgres")
		logger.Info("starting embedded PostgreSQL", "data_dir", dataDir)
		cluster, err := embeddedpg.Start(ctx, embeddedpg.Options{DataDir: dataDir, Logger: logger.With("component", "embeddedpg"), Exclusive: true})
		if err != nil {
			return nil, fmt.Errorf("start embedded PostgreSQL: %w", err)
		}
		s.cluster = cluster
		pgURL = cluster.URL()
	}
	if err := database.Migrate(ctx, pgURL); err != nil {
		return nil, fmt.Errorf("migrate database: %w", err)
	}
	pool, err := database.Open(ctx, pgURL)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	s.store = database.NewStore(pool)
	if s.cluster != nil {
		// A killed postmaster is restarted on the same URL; the pool then
		// drops its connections to the dead server instead of failing one
		// request per stale connection.
		if err := s.cluster.Supervise(embeddedpg.SuperviseOptions{OnRestart: pool.Reset}); err != nil {
			return nil, err
		}
	}
	s.ps, err = pubsub.New(ctx, logger.With("component", "pubsub"), pool, pubsub.Options{})
	if err != nil {
		return nil, fmt.Errorf("start pubsub: %w", err)
	}

	lns, err := listenHTTP(cfg.HTTPAddress)
	if err != nil {
		return nil, err
	}
	closeListeners := func() {
		for _, ln := range lns {
			_ = ln.Close()
		}
	}
	for _, ln := range lns {
		s.HTTPAddrs = append(s.HTTPAddrs, ln.Addr())
	}
	s.HTTPAddr = lns[0].Addr()
	accessURL := cfg.AccessURL
	if accessURL == "" {
		accessURL = "http://" + s.HTTPAddr.String()
	}
	s.AccessURL, err = parseURL(accessURL)
	if err != nil {
		closeListeners()
		return nil, fmt.Errorf("access URL: %w", err)
	}

	agentOpts, stunAddrs, stopDERP, err := startDERP(ctx, cfg.DERP, s.AccessURL, s.HTTPAddrs, logger)
	if err != nil {
		closeListeners()
		return nil, err
	}
	s.stopDERP = stopDERP
	s.STUNAddrs = stunAddrs
	if s.cluster == nil {
		// An external database: this server is one replica of possibly
		// several.
		s.ha, err = startHA(ctx, cfg, pool, s.ps, &agentOpts, logger)
		if err != nil {
			closeListeners()
			return nil, err
		}
	}

	warnDangerousAppFlags(logger, cfg)
	stateKeys, err := stateKeyring(&cfg, logger)
	if err != nil {
		closeListeners()
		return nil, err
	}
	registry := prometheus.NewRegistry()
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s.api, err = coderd.New(coderd.Options{
		Logger:             logger.With("component", "coderd"),
		Database:           s.store,
		Pubsub:             s.ps,
		AccessURL:          s.AccessURL,
		PrometheusRegistry: registry,
		Provisioning:       coderd.ProvisioningOptions{PSK: serverPSK(&cfg), StateKeys: stateKeys, HeartbeatTimeout: cfg.ProvisionerHeartbeatTimeout},
		Agents:             agentOpts,
		Replicas:           s.ha.replicaManager(),
		Lifecycle:          coderd.LifecycleOptions{Interval: cfg.AutobuildPollInterval},
		LoginLimits:        cfg.LoginLimits,
		Apps: coderd.AppsOptions{
			WildcardAccessURL:                    cfg.WildcardAccessURL,
			DisablePathApps:                      cfg.DisablePathApps,
			DangerousAllowPathAppSiteOwnerAccess: cfg.DangerousAllowPathAppSiteOwnerAccess,
			DangerousAllowPathAppSharing:         cfg.DangerousAllowPathAppSharing,
		},
	})
	if err != nil {
		closeListeners()
		return nil, fmt.Errorf("create coderd: %w", err)
	}
	httpOpts := cfg.HTTPServer
	httpOpts.BaseContext = func(net.Listener) context.Context { return context.WithoutCancel(ctx) }
	s.httpServer = coderd.NewHTTPServer(s.api.Handler(), httpOpts)
	for _, ln := range lns {
		s.serve(s.httpServer, ln)
	}
	s.startBuiltinDaemons(ctx, cfg)

	if cfg.PrometheusAddress != "" {
		promLn, err := net.Listen("tcp", cfg.PrometheusAddress)
		if err != nil {
			return nil, fmt.Errorf("listen for prometheus on %s: %w", cfg.PrometheusAddress, err)
		}
		s.PrometheusAddr = promLn.Addr()
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{}))
		s.promServer = &http.Server{Handler: mux, ReadHeaderTimeout: 30 * time.Second}
		s.serve(s.promServer, promLn)
	}
	return s, nil
}

// warnDangerousAppFlags logs a warning for each path-app boundary the
// configuration weakens.
func warnDangerousAppFlags(logger *slog.Logger, cfg ServerConfig) {
	if cfg.DangerousAllowPathAppSiteOwnerAccess {
		logger.Warn("--dangerous-allow-path-app-site-owner-access is on: site owners can open other users' path-based apps and ports, " +
			"whose code then runs on the dashboard origin with the site owner's session and can act as them (e.g. mint API tokens)")
	}
	if cfg.DangerousAllowPathAppSharing {
		logger.Warn("--dangerous-allow-path-app-sharing is on: path-based apps shared with other users (authenticated, public) are served to them, " +
			"and the app's code runs on the dashboard origin with their session and can act as them (e.g. mint API tokens)")
	}
}

// listenHTTP listens on each of the comma-separated addresses.
func listenHTTP(addresses string) ([]net.Listener, error) {
	var lns []net.Listener
	for _, addr := range strings.Split(addresses, ",") {
		addr = strings.TrimSpace(addr)
		if addr == "" {
			continue
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			for _, l := range lns {
				_ = l.Close()
			}
			return nil, fmt.Errorf("listen on %s: %w", addr, err)
		}
		lns = append(lns, ln)
	}
	if len(lns) == 0 {
		return nil, fmt.Errorf("no HTTP address to listen on (got %q)", addresses)
	}
	return lns, nil
}

func (s *Server) serve(srv *http.Server, ln net.Listener) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.logger.Error("http server stopped", "addr", ln.Addr().String(), "error", err)
			s.serveErr <- err
		}
	}()
}

// EmbeddedPostgres returns the embedded cluster, nil with --postgres-url.
func (s *Server) EmbeddedPostgres() *embeddedpg.Cluster { return s.cluster }

// Err delivers an error when a listener stops unexpectedly.
func (s *Server) Err() <-chan error { return s.serveErr }

// Drain begins a graceful stop: /healthz answers 503 so load balancers
// route around this server, and the built-in provisioner daemons take no
// new job while the jobs they run finish and report (their builds succeed
// or fail on their own merits, nothing is cut off). It returns when they
// are done, or with ctx's error when ctx ends first; Close then interrupts
// what still runs (reported failed: "provisioner daemon shutting down").
// Everything else keeps serving until Close.
func (s *Server) Drain(ctx context.Context) error {
	s.api.Drain()
	if s.drainDaemons == nil {
		return nil
	}
	if err := s.drainDaemons(ctx); err != nil {
		return fmt.Errorf("drain built-in provisioner daemons: %w", err)
	}
	return nil
}

// Close shuts the HTTP listeners down (waiting for in-flight requests until
// ctx ends), then closes coderd, pubsub, the database pool and the embedded
// cluster.
func (s *Server) Close(ctx context.Context) error {
	s.closeOnce.Do(func() {
		var errs []error
		if s.stopDaemons != nil {
			s.stopDaemons()
		}
		for _, srv := range []*http.Server{s.httpServer, s.promServer} {
			if srv == nil {
				continue
			}
			if err := srv.Shutdown(ctx); err != nil {
				errs = append(errs, fmt.Errorf("shut down http server: %w", err))
				_ = srv.Close()
			}
		}
		s.wg.Wait()
		if s.api != nil {
			if err := s.api.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close coderd: %w", err))
			}
		}
		if err := s.ha.close(); err != nil {
			errs = append(errs, fmt.Errorf("stop replica: %w", err))
		}
		if s.stopDERP != nil {
			s.stopDERP()
		}
		if s.ps != nil {
			if err := s.ps.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close pubsub: %w", err))
			}
		}
		if s.store != nil {
			s.store.Pool().Close()
		}
		if s.cluster != nil {
			if err := s.cluster.Stop(ctx); err != nil {
				errs = append(errs, fmt.Errorf("stop embedded PostgreSQL: %w", err))
			}
		}
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

func (r *root) serverCommand() *cobra.Command {
	var cfg ServerConfig
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Start a coder server (coderd)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if cfg.ConfigDir == "" {
				home, err := r.homeDir()
				if err != nil {
					return err
				}
				cfg.ConfigDir = filepath.Join(home, ".config", "coderv2")
			}
			cfg.Logger = r.logger()
			if err := validateLoginLimits(cfg.LoginLimits); err != nil {
				return err
			}
			if err := cfg.Terraform.resolve(r.env); err != nil {
				return err
			}
			srv, err := StartServer(ctx, cfg)
			if err != nil {
				return err
			}
			for _, addr := range srv.HTTPAddrs {
				fmt.Fprintf(r.stdout, "Started HTTP listener at http://%s\n", addr)
			}
			if srv.PrometheusAddr != nil {
				fmt.Fprintf(r.stdout, "Prometheus metrics at http://%s/metrics\n", srv.PrometheusAddr)
			}
			fmt.Fprintf(r.stdout, "\nView the Web UI: %s\n", srv.AccessURL)
			fmt.Fprintf(r.stdout, "Log in from a terminal: coder login %s\n", srv.AccessURL)

			var serveErr error
			select {
			case <-ctx.Done():
				stop()
				fmt.Fprintln(r.stdout, "\nShutting down...")
				if cfg.ProvisionerDaemons > 0 {
					fmt.Fprintf(r.stdout, "Waiting up to %s for running provisioner jobs to finish (interrupt again to stop them now)...\n", cfg.ProvisionerDrainTimeout)
				}
				// A second signal ends the wait.
				drainCtx, stopDrain := signal.NotifyContext(context.WithoutCancel(cmd.Context()), os.Interrupt, syscall.SIGTERM)
				drainCtx, cancelDrain := context.WithTimeout(drainCtx, cfg.ProvisionerDrainTimeout)
				if err := srv.Drain(drainCtx); err != nil {
					cfg.Logger.Warn("shutdown: running provisioner jobs are interrupted", "error", err)
				}
				cancelDrain()
				stopDrain()
			case serveErr = <-srv.Err():
			}
			shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(cmd.Context()), 15*time.Second)
			defer cancel()
			closeErr := srv.Close(shutdownCtx)
			if err := errors.Join(serveErr, closeErr); err != nil {
				return err
			}
			fmt.Fprintln(r.stdout, "Stopped.")
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&cfg.HTTPAddress, "http-address", "127.0.0.1:3000", "HTTP bind address of the server; several comma-separated addresses each get a listener (e.g. loopback plus the Docker bridge).")
	envFlag(fs, "http-address", EnvHTTPAddress)
	fs.StringVar(&cfg.AccessURL, "access-url", "", "URL users and workspaces reach the server at. Default http://<http-address>.")
	envFlag(fs, "access-url", EnvAccessURL)
	fs.StringVar(&cfg.PostgresURL, "postgres-url", "", "PostgreSQL connection URL. Empty starts an embedded cluster in <config-dir>/postgres.")
	envFlag(fs, "postgres-url", EnvPostgresURL)
	fs.StringVar(&cfg.ConfigDir, "config-dir", "", "Directory of server state. Default ~/.config/coderv2.")
	envFlag(fs, "config-dir", EnvConfigDir)
	fs.IntVar(&cfg.ProvisionerDaemons, "provisioner-daemons", 3, "Number of built-in provisioner daemons.")
	envFlag(fs, "provisioner-daemons", EnvProvisionerDaemons)
	fs.StringVar(&cfg.ProvisionerDaemonPSK, "provisioner-daemon-psk", "", "Pre-shared key external provisioner daemons authenticate with.")
	envFlag(fs, "provisioner-daemon-psk", EnvProvisionerDaemonPSK)
	fs.DurationVar(&cfg.ProvisionerHeartbeatTimeout, "provisioner-heartbeat-timeout", provisionerdserver.DefaultHeartbeatTimeout, "How long a running provisioner job may go without a heartbeat from its daemon before it is failed (a killed daemon or replica).")
	envFlag(fs, "provisioner-heartbeat-timeout", EnvProvisionerHeartbeatTimeout)
	fs.DurationVar(&cfg.ProvisionerDrainTimeout, "provisioner-drain-timeout", DefaultProvisionerDrainTimeout, "On shutdown (SIGTERM, interrupt), how long to wait for the jobs the built-in provisioner daemons run to finish before interrupting them.")
	envFlag(fs, "provisioner-drain-timeout", EnvProvisionerDrainTimeout)
	addTerraformFlags(fs, &cfg.Terraform)
	fs.StringVar(&cfg.PrometheusAddress, "prometheus-address", "", "Address to serve Prometheus metrics on (off when empty).")
	envFlag(fs, "prometheus-address", EnvPrometheusAddress)
	fs.StringVar(&cfg.WildcardAccessURL, "wildcard-access-url", "", "Host pattern of subdomain workspace apps, e.g. *.apps.example.com (off when empty).")
	envFlag(fs, "wildcard-access-url", EnvWildcardAccessURL)
	fs.BoolVar(&cfg.DisablePathApps, "disable-path-apps", false, "Refuse path-based workspace apps (they share the dashboard origin).")
	envFlag(fs, "disable-path-apps", EnvDisablePathApps)
	fs.BoolVar(&cfg.DangerousAllowPathAppSiteOwnerAccess, "dangerous-allow-path-app-site-owner-access", false, "Let site owners open other users' path-based apps and ports. Their code runs on the dashboard origin with the owner's session: only for trusted workspaces.")
	envFlag(fs, "dangerous-allow-path-app-site-owner-access", EnvDangerousAllowPathAppSiteOwnerAccess)
	fs.BoolVar(&cfg.DangerousAllowPathAppSharing, "dangerous-allow-path-app-sharing", false, "Serve path-based apps shared beyond their owner (authenticated, public) to those users. The app's code runs on the dashboard origin with their session: only for trusted workspaces.")
	envFlag(fs, "dangerous-allow-path-app-sharing", EnvDangerousAllowPathAppSharing)
	fs.StringVar(&cfg.StateEncryptionKey, "state-encryption-key", "", "Key (32 bytes, base64 or hex) that encrypts the stored Terraform state. Default: generated into <config-dir>/"+StateKeyFile+".")
	envFlag(fs, "state-encryption-key", EnvStateEncryptionKey)
	fs.StringSliceVar(&cfg.StateEncryptionOldKeys, "state-encryption-old-keys", nil, "Comma-separated previous state encryption keys, accepted for decryption only (key rotation).")
	envFlag(fs, "state-encryption-old-keys", EnvStateEncryptionOldKeys)
	fs.DurationVar(&cfg.HTTPServer.ReadHeaderTimeout, "http-read-header-timeout", coderd.DefaultHTTPReadHeaderTimeout, "Time a client has to send a request's headers.")
	envFlag(fs, "http-read-header-timeout", EnvHTTPReadHeaderTimeout)
	fs.DurationVar(&cfg.HTTPServer.ReadTimeout, "http-read-timeout", coderd.DefaultHTTPReadTimeout, "Time a client has to send a request's body (websockets and streamed responses are not limited).")
	envFlag(fs, "http-read-timeout", EnvHTTPReadTimeout)
	fs.DurationVar(&cfg.HTTPServer.IdleTimeout, "http-idle-timeout", coderd.DefaultHTTPIdleTimeout, "Time an idle keep-alive connection stays open.")
	envFlag(fs, "http-idle-timeout", EnvHTTPIdleTimeout)
	fs.IntVar(&cfg.LoginLimits.AttemptsPerIP, "login-rate-limit", coderd.DefaultLoginAttemptsPerIP, "Password login attempts allowed from one client address per --login-rate-limit-window; more get 429 with Retry-After.")
	envFlag(fs, "login-rate-limit", EnvLoginRateLimit)
	fs.IntVar(&cfg.LoginLimits.FailuresPerAccount, "login-failure-limit", coderd.DefaultLoginFailuresPerAccount, "Failed password logins allowed for one account per --login-rate-limit-window, from any address; a success clears the count.")
	envFlag(fs, "login-failure-limit", EnvLoginFailureLimit)
	fs.DurationVar(&cfg.LoginLimits.Window, "login-rate-limit-window", coderd.DefaultLoginLimitWindow, "Window of --login-rate-limit and --login-failure-limit.")
	envFlag(fs, "login-rate-limit-window", EnvLoginRateLimitWindow)
	fs.IntVar(&cfg.LoginLimits.MaxConcurrentHashes, "login-max-concurrent-hashes", 0, "Password hashes (bcrypt) computed at once; further logins wait. 0 means the number of CPUs.")
	envFlag(fs, "login-max-concurrent-hashes", EnvLoginMaxConcurrentHashes)
	fs.DurationVar(&cfg.AutobuildPollInterval, "autobuild-poll-interval", coderd.DefaultLifecycleInterval, "How often workspaces are checked for autostart, autostop, dormancy and cleanup.")
	envFlag(fs, "autobuild-poll-interval", "CODER_AUTOBUILD_POLL_INTERVAL")
	addDERPFlags(fs, &cfg.DERP)
	return cmd
}

// validateLoginLimits checks the login flags: the limits and the window must
// be positive (a zero would silently mean coderd's default), the hashing
// bound 0 (the number of CPUs) or more.
func validateLoginLimits(o coderd.LoginLimitOptions) error {
	var errs []error
	if o.AttemptsPerIP < 1 {
		errs = append(errs, fmt.Errorf("--login-rate-limit %d: must be at least 1 (attempts per client address per window)", o.AttemptsPerIP))
	}
	if o.FailuresPerAccount < 1 {
		errs = append(errs, fmt.Errorf("--login-failure-limit %d: must be at least 1 (failed logins per account per window)", o.FailuresPerAccount))
	}
	if o.Window <= 0 {
		errs = append(errs, fmt.Errorf("--login-rate-limit-window %s: must be positive", o.Window))
	}
	if o.MaxConcurrentHashes < 0 {
		errs = append(errs, fmt.Errorf("--login-max-concurrent-hashes %d: must be 0 (the number of CPUs) or more", o.MaxConcurrentHashes))
	}
	return errors.Join(errs...)
}
