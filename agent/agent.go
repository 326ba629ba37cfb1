// Package agent is the workspace agent: it authenticates to coderd with its
// token, fetches its manifest, joins the mesh with the address derived from
// its ID and serves, on its tailnet address only, the services whose wire
// contract is codersdk/agentproto: SSH on ports 1 and 22, the reconnecting
// PTY on 2, a speed test on 3, a small HTTP API on 4 and a UDP relay to the
// workspace's loopback on 5.
// It runs the manifest's scripts and reports the lifecycle
// (created → starting → ready | start_error | start_timeout, then
// shutting_down → off | shutdown_error | shutdown_timeout), streams script
// output to coderd as logs (ordered, bounded, retried until acknowledged),
// and reports stats, metadata and app health. Log lines coderd has not
// acknowledged are spooled to the data dir while coderd is unreachable and
// resent by the next run, so a killed agent does not lose them.
//
// The agent survives coderd restarts: existing SSH sessions keep running on
// the mesh, the coordinator connection is re-established with backoff and
// the node re-sent, and queued logs and lifecycle changes are delivered
// once coderd answers again.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	gossh "golang.org/x/crypto/ssh"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"

	"github.com/wgmesh/coder/agent/agentscripts"
	"github.com/wgmesh/coder/agent/agentssh"
	"github.com/wgmesh/coder/agent/reconnectingpty"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/codersdk/agentproto"
	"github.com/wgmesh/coder/codersdk/agentsdk"
	"github.com/wgmesh/coder/coordinator"
	"github.com/wgmesh/coder/derp"
	"github.com/wgmesh/coder/tunnel"
)

// Defaults of Options.
const (
	DefaultBackoffMin      = 250 * time.Millisecond
	DefaultBackoffMax      = 30 * time.Second
	DefaultShutdownTimeout = 5 * time.Minute
	DefaultFlushTimeout    = 15 * time.Second
)

// Options configures an Agent.
type Options struct {
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
	// Client talks to coderd with the agent token. Required.
	Client *agentsdk.Client
	// DataDir holds the agent's persistent state: the mesh node key, the
	// SSH host key (both survive agent restarts) and the spool of log
	// lines coderd has not acknowledged yet (resent on the next start).
	// Required.
	DataDir string
	// Version is reported to coderd.
	Version string
	// Shell overrides the user's login shell for sessions and scripts.
	Shell string
	// BackoffMin and BackoffMax bound the jittered backoff of every retry
	// loop (defaults 250ms and 30s); the coordinator connection caps its
	// backoff at coordinator.DefaultBackoffMax (2s) so that clients can
	// reach the agent again right after a coderd restart.
	BackoffMin, BackoffMax time.Duration
	// LogQueueLines bounds the log lines kept while coderd is unreachable
	// (default 10000); past it the oldest lines are dropped with a marker.
	LogQueueLines int
	// FlushTimeout bounds how long the agent tries to deliver queued logs
	// and lifecycle changes after shutdown (default 15s).
	FlushTimeout time.Duration
	// ShutdownTimeout bounds the shutdown scripts as a whole (default 5m;
	// each script also has its own timeout).
	ShutdownTimeout time.Duration
	// TunnelListenPort is the UDP port of the mesh (0: random).
	TunnelListenPort uint16
	// TokenRefusedAttempts and TokenRefusedPeriod bound how long the agent
	// lives while coderd refuses its token: after at least that many 401s
	// in a row spanning at least that period, Run stops and returns
	// ErrTokenRefused (defaults DefaultTokenRefusedAttempts and
	// DefaultTokenRefusedPeriod). A negative period disables the check.
	TokenRefusedAttempts int
	TokenRefusedPeriod   time.Duration
}

// Agent is the workspace agent.
type Agent struct {
	opts   Options
	logger *slog.Logger
	logs   *logQueue
	life   *lifecycleReporter
	runs   *scriptRunReporter
	// hostKey is the SSH host key, loaded by Run before anything is served.
	hostKey gossh.Signer

	mu       sync.Mutex
	manifest *agentsdk.Manifest
	conn     *tunnel.Conn
	ssh      *agentssh.Server
	rpty     *reconnectingpty.Server
	rptyOpen int64
	state    codersdk.WorkspaceAgentLifecycle
	stateCh  chan struct{}
	// refused is closed when coderd has kept refusing the token.
	refused     chan struct{}
	refusedOnce sync.Once
}

// New returns an agent; Run starts it.
func New(opts Options) (*Agent, error) {
	if opts.Client == nil {
		return nil, errors.New("agent: Options.Client is required")
	}
	if opts.DataDir == "" {
		return nil, errors.New("agent: Options.DataDir is required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.BackoffMin <= 0 {
		opts.BackoffMin = DefaultBackoffMin
	}
	if opts.BackoffMax <= 0 {
		opts.BackoffMax = DefaultBackoffMax
	}
	if opts.BackoffMax < opts.BackoffMin {
		opts.BackoffMax = opts.BackoffMin
	}
	if opts.FlushTimeout <= 0 {
		opts.FlushTimeout = DefaultFlushTimeout
	}
	if opts.ShutdownTimeout <= 0 {
		opts.ShutdownTimeout = DefaultShutdownTimeout
	}
	a := &Agent{
		opts:    opts,
		logger:  opts.Logger,
		logs:    newLogQueue(opts.Logger.With("component", "logs"), opts.LogQueueLines),
		state:   codersdk.WorkspaceAgentLifecycleCreated,
		stateCh: make(chan struct{}),
	}
	a.life = newLifecycleReporter(opts.Logger.With("component", "lifecycle"))
	a.runs = newScriptRunReporter(opts.Logger.With("component", "script-runs"))
	a.refused = make(chan struct{})
	if opts.TokenRefusedPeriod >= 0 {
		a.watchRefusals()
	}
	return a, nil
}

// Lifecycle returns the agent's current lifecycle state and a channel
// closed at the next change.
func (a *Agent) Lifecycle() (codersdk.WorkspaceAgentLifecycle, <-chan struct{}) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.state, a.stateCh
}

// TunnelConn returns the agent's mesh connection once Run created it.
func (a *Agent) TunnelConn() *tunnel.Conn {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.conn
}

func (a *Agent) setLifecycle(state codersdk.WorkspaceAgentLifecycle) {
	now := time.Now()
	a.mu.Lock()
	a.state = state
	close(a.stateCh)
	a.stateCh = make(chan struct{})
	a.mu.Unlock()
	a.logger.Info("lifecycle", "state", state)
	a.life.report(agentsdk.PostLifecycleRequest{State: state, ChangedAt: now})
}

func (a *Agent) newBackoff() *backoff { return newBackoff(a.opts.BackoffMin, a.opts.BackoffMax) }

// watchRefusals wraps the client's transport so that every coderd answer
// feeds the refusal tracker (the websocket dials of the coordinator use
// the same HTTP client).
func (a *Agent) watchRefusals() {
	attempts, period := a.opts.TokenRefusedAttempts, a.opts.TokenRefusedPeriod
	if attempts <= 0 {
		attempts = DefaultTokenRefusedAttempts
	}
	if period == 0 {
		period = DefaultTokenRefusedPeriod
	}
	tracker := &refusalTracker{attempts: attempts, period: period, now: time.Now, onRefuse: func() {
		a.refusedOnce.Do(func() {
			a.logger.Error("coderd keeps refusing the agent token; exiting", "attempts", attempts, "period", period)
			close(a.refused)
		})
	}}
	sdk := a.opts.Client.SDK
	hc := &http.Client{}
	if sdk.HTTPClient != nil {
		*hc = *sdk.HTTPClient
	}
	base := hc.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	hc.Transport = &refusalTransport{base: base, tracker: tracker}
	sdk.HTTPClient = hc
}

// Run runs the agent until ctx is cancelled (SIGTERM in `coder agent`):
// then it runs the shutdown scripts, reports the final lifecycle state,
// flushes logs and returns nil. It returns an error only when the agent
// could not start (ctx cancelled before a manifest arrived is not an error).
func (a *Agent) Run(ctx context.Context) (err error) {
	// A token coderd keeps refusing ends the agent like a SIGTERM would,
	// and Run says why.
	ctx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	go func() {
		select {
		case <-a.refused:
			cancelRun()
		case <-ctx.Done():
		}
	}()
	defer func() {
		select {
		case <-a.refused:
			if err == nil {
				err = ErrTokenRefused
			}
		default:
		}
	}()
	// Lines a previous run could not deliver go out first.
	if err := a.logs.loadSpool(filepath.Join(a.opts.DataDir, logSpoolFile)); err != nil {
		a.logger.Warn("restore unsent logs", "error", err)
	} else if n := a.logs.pending(); n > 0 {
		a.logger.Info("resending log lines a previous run could not deliver", "lines", n)
	}
	// Background work that must stop only after shutdown reporting is done.
	bgCtx, bgCancel := context.WithCancel(context.WithoutCancel(ctx))
	var bg sync.WaitGroup
	defer func() {
		bgCancel()
		bg.Wait()
	}()
	bg.Add(3)
	go func() {
		defer bg.Done()
		a.logs.send(bgCtx, a.opts.Client, DefaultLogSendInterval, a.newBackoff())
	}()
	go func() {
		defer bg.Done()
		a.runs.run(bgCtx, a.opts.Client, a.newBackoff())
	}()
	go func() {
		defer bg.Done()
		a.life.run(bgCtx, a.opts.Client, a.newBackoff())
	}()

	manifest, ok := a.fetchManifest(ctx)
	if !ok {
		return nil
	}
	a.mu.Lock()
	a.manifest = &manifest
	a.mu.Unlock()
	logger := a.logger.With("agent_id", manifest.AgentID, "workspace", manifest.WorkspaceName)

	// The host key is loaded first: the agent reports it at startup so
	// coderd and clients can pin it before anyone connects over SSH.
	hostKey, err := agentssh.LoadOrCreateHostKey(filepath.Join(a.opts.DataDir, "ssh_host_ed25519_key"))
	if err != nil {
		return fmt.Errorf("load ssh host key: %w", err)
	}
	a.hostKey = hostKey
	startup := a.startupRequest(manifest)
	// One synchronous attempt (coderd just answered the manifest), so the
	// key is stored before the agent joins the mesh; retries continue in
	// the background.
	firstCtx, firstCancel := context.WithTimeout(ctx, 10*time.Second)
	posted := a.opts.Client.PostStartup(firstCtx, startup) == nil
	firstCancel()
	if !posted {
		bg.Add(1)
		go func() {
			defer bg.Done()
			a.postStartup(bgCtx, startup)
		}()
	}

	services, err := a.startServices(ctx, manifest)
	if err != nil {
		return err
	}
	defer services.close()

	// Loops that run while the agent is up.
	loopCtx, loopCancel := context.WithCancel(ctx)
	var loops sync.WaitGroup
	loops.Add(3)
	go func() { defer loops.Done(); a.statsLoop(loopCtx) }()
	go func() { defer loops.Done(); a.metadataLoop(loopCtx, manifest) }()
	go func() { defer loops.Done(); a.appHealthLoop(loopCtx, manifest) }()

	runner := a.scriptRunner(manifest, logger)
	a.setLifecycle(codersdk.WorkspaceAgentLifecycleStarting)
	start := runner.RunStart(ctx)
	if ctx.Err() == nil {
		// Their output reaches coderd before their end is reported.
		sentCtx, sentCancel := context.WithTimeout(ctx, DefaultLogsSentWait)
		if !a.logs.awaitSent(sentCtx) && ctx.Err() == nil {
			logger.Warn("start script output not yet delivered to coderd; reporting the lifecycle anyway", "pending", a.logs.pending())
		}
		sentCancel()
		switch start.Outcome {
		case agentscripts.OutcomeOK:
			a.setLifecycle(codersdk.WorkspaceAgentLifecycleReady)
		case agentscripts.OutcomeTimedOut:
			a.setLifecycle(codersdk.WorkspaceAgentLifecycleStartTimeout)
		default:
			a.setLifecycle(codersdk.WorkspaceAgentLifecycleStartError)
		}
		cronCtx, cronCancel := context.WithCancel(ctx)
		if err := runner.StartCron(cronCtx); err != nil {
			logger.Warn("start cron scripts", "error", err)
		}
		<-ctx.Done()
		cronCancel()
	}
	loopCancel()
	loops.Wait()

	// Shutdown: run the stop scripts with a fresh context.
	a.setLifecycle(codersdk.WorkspaceAgentLifecycleShuttingDown)
	stopCtx, stopCancel := context.WithTimeout(context.WithoutCancel(ctx), a.opts.ShutdownTimeout)
	stop := runner.RunStop(stopCtx)
	stopCancel()
	switch stop.Outcome {
	case agentscripts.OutcomeOK:
		a.setLifecycle(codersdk.WorkspaceAgentLifecycleOff)
	case agentscripts.OutcomeTimedOut:
		a.setLifecycle(codersdk.WorkspaceAgentLifecycleShutdownTimeout)
	default:
		a.setLifecycle(codersdk.WorkspaceAgentLifecycleShutdownError)
	}
	if err := runner.Close(); err != nil {
		logger.Warn("close script runner", "error", err)
	}

	// Deliver what is queued (bounded), then stop the background senders.
	bgCancel()
	bg.Wait()
	select {
	case <-a.refused:
		// coderd no longer knows this agent: nothing can be delivered.
		return ErrTokenRefused
	default:
	}
	flushCtx, flushCancel := context.WithTimeout(context.WithoutCancel(ctx), a.opts.FlushTimeout)
	defer flushCancel()
	a.life.flush(flushCtx, a.opts.Client, a.newBackoff())
	a.logs.flush(flushCtx, a.opts.Client, a.newBackoff())
	a.runs.flush(flushCtx, a.opts.Client, a.newBackoff())
	if n := a.logs.pending(); n > 0 {
		a.logs.saveSpool()
		logger.Warn("log lines not delivered before exit; spooled for the next start", "lines", n,
			"path", filepath.Join(a.opts.DataDir, logSpoolFile))
	}
	return nil
}

// fetchManifest retries until a manifest arrives or ctx ends. A rejected
// token (401) is logged as such and retried with the same bounded backoff:
// the token may be fixed by a new build, and the agent must not spin.
func (a *Agent) fetchManifest(ctx context.Context) (agentsdk.Manifest, bool) {
	bo := a.newBackoff()
	for {
		m, err := a.opts.Client.Manifest(ctx)
		if err == nil {
			if m.DERPMap == nil {
				err = errors.New("manifest has no DERP map")
			} else {
				return m, true
			}
		}
		if ctx.Err() != nil {
			return agentsdk.Manifest{}, false
		}
		if apiErr, ok := codersdk.AsError(err); ok && apiErr.StatusCode() == http.StatusUnauthorized {
			a.logger.Error("coderd rejected the agent token (401); check CODER_AGENT_TOKEN; retrying with backoff", "error", err)
		} else {
			a.logger.Warn("fetch manifest failed; retrying", "error", err)
		}
		if !bo.wait(ctx) {
			return agentsdk.Manifest{}, false
		}
	}
}

// startupRequest is what the agent reports at startup.
func (a *Agent) startupRequest(m agentsdk.Manifest) agentsdk.PostStartupRequest {
	return agentsdk.PostStartupRequest{
		Version: a.opts.Version, ExpandedDirectory: expandDir(m.Directory), Subsystems: []string{},
		SSHHostKey: strings.TrimSpace(string(gossh.MarshalAuthorizedKey(a.hostKey.PublicKey()))),
	}
}

func (a *Agent) postStartup(ctx context.Context, req agentsdk.PostStartupRequest) {
	bo := a.newBackoff()
	for {
		err := a.opts.Client.PostStartup(ctx, req)
		if err == nil || ctx.Err() != nil {
			return
		}
		a.logger.Debug("post startup failed; retrying", "error", err)
		if !bo.wait(ctx) {
			return
		}
	}
}

// expandDir expands ~ and environment variables of the manifest directory;
// empty means the home directory.
func expandDir(dir string) string {
	home, _ := os.UserHomeDir()
	if dir == "" {
		return home
	}
	if dir == "~" {
		return home
	}
	if len(dir) > 1 && dir[:2] == "~/" {
		dir = filepath.Join(home, dir[2:])
	}
	return os.ExpandEnv(dir)
}

// env returns the environment of sessions and scripts: the agent's own
// environment without its secrets (ScrubEnv: the token never reaches a
// session, terminal or script), the manifest's variables and the workspace
// identity.
func (a *Agent) env(m agentsdk.Manifest) []string {
	env := ScrubEnv(os.Environ())
	for k, v := range m.EnvironmentVariables {
		env = append(env, k+"="+v)
	}
	env = append(env,
		"CODER=true",
		"CODER_WORKSPACE_NAME="+m.WorkspaceName,
		"CODER_WORKSPACE_OWNER_NAME="+m.OwnerName,
		"CODER_WORKSPACE_AGENT_NAME="+m.AgentName,
		"CODER_WORKSPACE_ID="+m.WorkspaceID.String(),
		"CODER_AGENT_ID="+m.AgentID.String(),
	)
	if m.VSCodePortProxyURI != "" {
		env = append(env, "VSCODE_PROXY_URI="+m.VSCodePortProxyURI)
	}
	return env
}

func (a *Agent) shell() string {
	if a.opts.Shell != "" {
		return a.opts.Shell
	}
	return agentssh.UserShell(currentUser())
}

func currentUser() string {
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return "root"
}

func (a *Agent) scriptRunner(m agentsdk.Manifest, logger *slog.Logger) *agentscripts.Runner {
	scripts := make([]agentscripts.Script, 0, len(m.Scripts))
	for _, s := range m.Scripts {
		scripts = append(scripts, agentscripts.Script{
			ID: s.ID, LogSourceID: s.LogSourceID, DisplayName: s.DisplayName, Script: s.Script,
			RunOnStart: s.RunOnStart, RunOnStop: s.RunOnStop, StartBlocksLogin: s.StartBlocksLogin,
			Timeout: s.Timeout(), Cron: s.Cron,
		})
	}
	dir := expandDir(m.Directory)
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		dir = ""
	}
	return &agentscripts.Runner{
		Logger:  logger.With("component", "scripts"),
		Scripts: scripts,
		Env:     a.env(m),
		Dir:     dir,
		Shell:   a.shell(),
		OnRun:   a.runs.observe,
		LogSink: func(_ context.Context, source uuid.UUID, l agentscripts.Log) {
			level := codersdk.LogLevelInfo
			switch l.Level {
			case agentscripts.LevelWarn: // the script's stderr
				level = codersdk.LogLevelWarn
			case agentscripts.LevelError:
				level = codersdk.LogLevelError
			}
			a.logs.add(source, agentsdk.Log{CreatedAt: l.CreatedAt, Output: l.Output, Level: level})
		},
	}
}

// services are the mesh connection and the servers on it.
type services struct {
	conn    *tunnel.Conn
	ctrl    *coordinator.Controller
	closers []func() error
	wg      sync.WaitGroup
}

func (s *services) close() {
	// Servers first (they close their listeners), then the mesh.
	for i := len(s.closers) - 1; i >= 0; i-- {
		_ = s.closers[i]()
	}
	s.wg.Wait()
}

// loadNodeKey returns the node key persisted in the data dir, creating it
// (mode 0600) on first use.
func loadNodeKey(dataDir string) (key.NodePrivate, error) {
	path := filepath.Join(dataDir, "node.key")
	data, err := os.ReadFile(path)
	if err == nil {
		var k key.NodePrivate
		if err := k.UnmarshalText(data); err != nil {
			return key.NodePrivate{}, fmt.Errorf("parse node key %s: %w", path, err)
		}
		return k, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return key.NodePrivate{}, fmt.Errorf("read node key: %w", err)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return key.NodePrivate{}, fmt.Errorf("create data dir: %w", err)
	}
	k := key.NewNode()
	text, err := k.MarshalText()
	if err != nil {
		return key.NodePrivate{}, fmt.Errorf("encode node key: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, text, 0o600); err != nil {
		return key.NodePrivate{}, fmt.Errorf("write node key: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return key.NodePrivate{}, fmt.Errorf("store node key: %w", err)
	}
	return k, nil
}

func (a *Agent) startServices(ctx context.Context, m agentsdk.Manifest) (_ *services, err error) {
	s := &services{}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	nodeKey, err := loadNodeKey(a.opts.DataDir)
	if err != nil {
		return nil, err
	}
	conn, err := tunnel.NewConn(tunnel.Options{
		NodePrivateKey: nodeKey,
		Addresses:      []netip.Prefix{tunnel.AgentPrefix(m.AgentID)},
		// Loopback relay nodes mean coderd's host; from here they are reached at
		// the host we reach coderd at (e.g. host.docker.internal in a container).
		DERPMap:        derp.ForPeerAt(m.DERPMap, a.opts.Client.SDK.URL),
		Logger:         a.logger.With("component", "tunnel"),
		ListenPort:     a.opts.TunnelListenPort,
		BlockEndpoints: m.DisableDirectConnections,
		DERPPlainHTTP:  a.opts.Client.SDK.URL.Scheme == "http",
		DERPWebsockets: m.DERPForceWebSockets,
	})
	if err != nil {
		return nil, fmt.Errorf("create tunnel: %w", err)
	}
	s.conn = conn
	s.closers = append(s.closers, conn.Close)
	a.mu.Lock()
	a.conn = conn
	a.mu.Unlock()

	dir := expandDir(m.Directory)
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		dir = ""
	}
	sshSrv, err := agentssh.New(agentssh.Options{
		Logger:      a.logger.With("component", "ssh"),
		HostSigner:  a.hostKey,
		Env:         func() []string { return a.env(m) },
		Dir:         dir,
		Shell:       a.opts.Shell,
		DisableSFTP: m.DisableSFTP,
	})
	if err != nil {
		return nil, fmt.Errorf("create ssh server: %w", err)
	}
	s.closers = append(s.closers, sshSrv.Close)
	a.mu.Lock()
	a.ssh = sshSrv
	a.mu.Unlock()
	for _, port := range []int{agentproto.SSHPort, agentproto.SSHPortAlias} {
		ln, err := conn.Listen("tcp", fmt.Sprintf(":%d", port))
		if err != nil {
			return nil, fmt.Errorf("listen ssh on tailnet port %d: %w", port, err)
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := sshSrv.Serve(ln); err != nil && !errors.Is(err, agentssh.ErrServerClosed) {
				a.logger.Warn("ssh server stopped", "port", port, "error", err)
			}
		}()
	}

	rpty := &reconnectingpty.Server{
		Logger: a.logger.With("component", "reconnecting-pty"),
		Env:    func() []string { return a.env(m) },
		Dir:    dir,
		Shell:  a.shell(),
	}
	s.closers = append(s.closers, rpty.Close)
	a.mu.Lock()
	a.rpty = rpty
	a.mu.Unlock()
	if err := a.serveTailnet(s, conn, agentproto.ReconnectingPTYPort, func(c net.Conn) {
		a.mu.Lock()
		a.rptyOpen++
		a.mu.Unlock()
		defer func() {
			a.mu.Lock()
			a.rptyOpen--
			a.mu.Unlock()
		}()
		_ = rpty.Handle(c)
	}); err != nil {
		return nil, err
	}
	if err := a.serveTailnet(s, conn, agentproto.SpeedtestPort, serveSpeedtest); err != nil {
		return nil, err
	}
	relay := &udpRelay{logger: a.logger.With("component", "udp-relay")}
	if err := a.serveTailnet(s, conn, agentproto.UDPRelayPort, relay.serve); err != nil {
		return nil, err
	}
	apiLn, err := conn.Listen("tcp", fmt.Sprintf(":%d", agentproto.HTTPAPIPort))
	if err != nil {
		return nil, fmt.Errorf("listen http api: %w", err)
	}
	httpSrv := &http.Server{Handler: a.httpAPI(), ReadHeaderTimeout: 10 * time.Second}
	s.closers = append(s.closers, httpSrv.Close)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_ = httpSrv.Serve(apiLn)
	}()

	ctrl, err := coordinator.NewController(coordinator.ControllerOptions{
		Conn:       peerDERPMaps{Conn: conn, coderURL: a.opts.Client.SDK.URL},
		Dial:       a.opts.Client.CoordinatorDialer(conn.NodeKey()),
		Logger:     a.logger.With("component", "coordinator"),
		BackoffMin: a.opts.BackoffMin,
		// Clients reach the agent only while it is on the coordinator: it
		// must be back within seconds of coderd, whatever the API loops'
		// backoff.
		BackoffMax: min(a.opts.BackoffMax, coordinator.DefaultBackoffMax),
	})
	if err != nil {
		return nil, fmt.Errorf("start coordinator controller: %w", err)
	}
	s.ctrl = ctrl
	s.closers = append(s.closers, ctrl.Close)
	_ = ctx
	return s, nil
}

// peerDERPMaps applies the DERP maps the coordinator pushes as seen from
// where this agent reaches coderd (derp.ForPeerAt), like the manifest's.
type peerDERPMaps struct {
	*tunnel.Conn
	coderURL *url.URL
}

func (p peerDERPMaps) SetDERPMap(m *tailcfg.DERPMap) error {
	return p.Conn.SetDERPMap(derp.ForPeerAt(m, p.coderURL))
}

// serveTailnet accepts TCP connections on a tailnet port and hands each to
// handle in its own goroutine (owned by s).
func (a *Agent) serveTailnet(s *services, conn *tunnel.Conn, port int, handle func(net.Conn)) error {
	ln, err := conn.Listen("tcp", fmt.Sprintf(":%d", port))
	if err != nil {
		return fmt.Errorf("listen on tailnet port %d: %w", port, err)
	}
	var mu sync.Mutex
	open := map[net.Conn]struct{}{}
	closed := false
	s.closers = append(s.closers, func() error {
		err := ln.Close()
		mu.Lock()
		closed = true
		for c := range open {
			_ = c.Close()
		}
		mu.Unlock()
		return err
	})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			if closed {
				mu.Unlock()
				_ = c.Close()
				return
			}
			open[c] = struct{}{}
			mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer func() {
					mu.Lock()
					delete(open, c)
					mu.Unlock()
					_ = c.Close()
				}()
				handle(c)
			}()
		}
	}()
	return nil
}
