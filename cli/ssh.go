package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"
	gossh "golang.org/x/crypto/ssh"
	sshagent "golang.org/x/crypto/ssh/agent"
	"golang.org/x/term"

	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/codersdk/workspacesdk"
)

// Environment twins of the reaching-workspace flags.
const (
	EnvSSHConnectTimeout = "CODER_SSH_CONNECT_TIMEOUT"
	EnvSSHLogDir         = "CODER_SSH_LOG_DIR"
	EnvSSHWait           = "CODER_SSH_WAIT"
)

// exitCodeError carries a remote command's exit status to Run, which
// returns it as the process exit code without printing anything.
type exitCodeError struct{ code int }

func (e *exitCodeError) Error() string { return "exit status " + strconv.Itoa(e.code) }

// ExitCode is the exit code Run returns.
func (e *exitCodeError) ExitCode() int { return e.code }

// statusLine shows one transient progress line on a terminal stderr
// (nothing otherwise) and erases it when done.
type statusLine struct {
	w       io.Writer
	enabled bool
	logger  *slog.Logger
	mu      sync.Mutex
	shown   bool
}

func (r *root) newStatusLine(logger *slog.Logger, quiet bool) *statusLine {
	s := &statusLine{w: r.stderr, logger: logger}
	if f, ok := r.stderr.(*os.File); ok && !quiet {
		s.enabled = term.IsTerminal(int(f.Fd()))
	}
	return s
}

// Set replaces the status text.
func (s *statusLine) Set(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	s.logger.Debug("status", "msg", msg)
	if !s.enabled {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintf(s.w, "\r\033[K%s", msg)
	s.shown = true
}

// Clear erases the line.
func (s *statusLine) Clear() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shown {
		fmt.Fprint(s.w, "\r\033[K")
		s.shown = false
	}
}

// waitMode is the --wait flag: whether to wait for the startup script.
type waitMode string

const (
	waitYes  waitMode = "yes"
	waitNo   waitMode = "no"
	waitAuto waitMode = "auto"
)

// reachOptions are the shared flags of the commands that reach an agent.
type reachOptions struct {
	yes            bool
	wait           string
	connectTimeout time.Duration
	logDir         string
	quiet          bool // no status line (--stdio)
	noStart        bool // never start a stopped workspace (--disable-autostart)
	autoStart      bool // start a stopped workspace without asking (coder ssh, its ProxyCommand)
}

// reached is a connected agent and the workspace it belongs to.
type reached struct {
	ws     codersdk.Workspace
	agent  codersdk.WorkspaceAgent
	conn   *workspacesdk.AgentConn
	logger *slog.Logger
	status *statusLine
	close  func()
}

// splitWorkspaceAgent splits "[owner/]workspace[.agent]".
func splitWorkspaceAgent(arg string) (wsRef, agentName string) {
	owner, rest := "", arg
	if o, n, ok := strings.Cut(arg, "/"); ok {
		owner, rest = o+"/", n
	}
	if w, a, ok := strings.Cut(rest, "."); ok {
		return owner + w, a
	}
	return owner + rest, ""
}

// workspaceAgents lists the agents of a workspace's latest build.
func workspaceAgents(ws codersdk.Workspace) []codersdk.WorkspaceAgent {
	var out []codersdk.WorkspaceAgent
	for _, res := range ws.LatestBuild.Resources {
		out = append(out, res.Agents...)
	}
	return out
}

// lookupWorkspace resolves a workspace reference; an unknown name yields one
// line naming it and listing the user's workspaces.
func (r *root) lookupWorkspace(ctx context.Context, client *codersdk.Client, ref string) (codersdk.Workspace, error) {
	owner, name, err := workspaceRef(ref)
	if err != nil {
		return codersdk.Workspace{}, err
	}
	ws, err := client.WorkspaceByOwnerAndName(ctx, owner, name)
	if err == nil {
		return ws, nil
	}
	if apiErr, ok := codersdk.AsError(err); ok && apiErr.StatusCode() == 404 {
		list, lerr := client.Workspaces(ctx, owner)
		if lerr != nil {
			return ws, fmt.Errorf("workspace %q not found", ref)
		}
		names := make([]string, 0, len(list.Workspaces))
		for _, w := range list.Workspaces {
			n := w.Name
			if owner != codersdk.Me {
				n = w.OwnerName + "/" + w.Name
			}
			names = append(names, n)
		}
		sort.Strings(names)
		if len(names) == 0 {
			return ws, fmt.Errorf("workspace %q not found; you have no workspaces (create one with 'coder create')", ref)
		}
		return ws, fmt.Errorf("workspace %q not found; your workspaces: %s", ref, strings.Join(names, ", "))
	}
	return ws, fmt.Errorf("workspace %q: %w", ref, err)
}

// pickAgent chooses the agent by name, or the only one.
func pickAgent(ws codersdk.Workspace, name string) (codersdk.WorkspaceAgent, error) {
	agents := workspaceAgents(ws)
	if len(agents) == 0 {
		return codersdk.WorkspaceAgent{}, fmt.Errorf("workspace %q has no agents (status %s)", ws.Name, ws.LatestBuild.Status)
	}
	names := make([]string, 0, len(agents))
	for _, a := range agents {
		if name == "" && len(agents) == 1 || a.Name == name {
			return a, nil
		}
		names = append(names, a.Name)
	}
	if name == "" {
		return codersdk.WorkspaceAgent{}, fmt.Errorf("workspace %q has several agents, pick one as %s.AGENT: %s", ws.Name, ws.Name, strings.Join(names, ", "))
	}
	return codersdk.WorkspaceAgent{}, fmt.Errorf("workspace %q has no agent %q; agents: %s", ws.Name, name, strings.Join(names, ", "))
}

// openLogger returns the logger for a reaching command: -v logs to stderr,
// --log-dir to a file per invocation; the closer flushes the file.
func (r *root) openLogger(logDir, command string) (*slog.Logger, func(), error) {
	level := slog.LevelInfo
	if r.verbose {
		level = slog.LevelDebug
	}
	var w io.Writer = io.Discard
	if r.verbose {
		w = r.stderr
	}
	closer := func() {}
	if logDir != "" {
		if err := os.MkdirAll(logDir, 0o700); err != nil {
			return nil, nil, fmt.Errorf("create log dir: %w", err)
		}
		name := fmt.Sprintf("coder-%s-%s-%d.log", command, time.Now().UTC().Format("20060102T150405.000"), os.Getpid())
		f, err := os.OpenFile(filepath.Join(logDir, name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return nil, nil, fmt.Errorf("open log file: %w", err)
		}
		level = slog.LevelDebug
		if r.verbose {
			w = io.MultiWriter(r.stderr, f)
		} else {
			w = f
		}
		closer = func() { _ = f.Close() }
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level})), closer, nil
}

func addReachFlags(cmd *cobra.Command, o *reachOptions, withWait bool) {
	fs := cmd.Flags()
	fs.BoolVarP(&o.yes, "yes", "y", false, "Start a stopped workspace without asking.")
	fs.DurationVar(&o.connectTimeout, "connect-timeout", 5*time.Minute, "How long to wait for the workspace build, the agent and the tunnel.")
	envFlag(fs, "connect-timeout", EnvSSHConnectTimeout)
	fs.StringVar(&o.logDir, "log-dir", "", "Write a debug log of the connection (tunnel, coordinator, SSH) to a file in this directory.")
	envFlag(fs, "log-dir", EnvSSHLogDir)
	if withWait {
		fs.StringVar(&o.wait, "wait", string(waitAuto), "Wait for the startup script to finish: yes, no, or auto (only when it blocks login).")
		envFlag(fs, "wait", EnvSSHWait)
	}
}

// reach resolves "[owner/]workspace[.agent]", starts the workspace when
// stopped, waits for the agent and opens a tunnel to it. The tunnel and the
// DERP map fetch start as soon as the agent ID is known, in parallel with
// waiting for the agent.
func (r *root) reach(ctx context.Context, arg string, o reachOptions, command string) (_ *reached, err error) {
	switch waitMode(o.wait) {
	case "", waitYes, waitNo, waitAuto:
	default:
		return nil, fmt.Errorf("--wait %q: want yes, no or auto", o.wait)
	}
	logger, closeLog, err := r.openLogger(o.logDir, command)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			closeLog()
		}
	}()
	status := r.newStatusLine(logger, o.quiet)
	defer func() {
		if err != nil {
			status.Clear()
		}
	}()
	client, err := r.client()
	if err != nil {
		return nil, err
	}
	timeout := o.connectTimeout
	if timeout <= 0 {
		timeout = 5 * time.Minute
	}
	deadline := time.Now().Add(timeout)
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()

	// The DERP map is needed for the tunnel; fetch it while resolving.
	type derpResult struct {
		info *codersdk.AgentConnectionInfo
		err  error
	}
	derpCh := make(chan derpResult, 1)
	go func() {
		info, err := client.AgentConnectionInfo(ctx)
		derpCh <- derpResult{&info, err}
	}()
	defer func() {
		if err != nil {
			cancel()
			<-derpCh
		}
	}()

	status.Set("Resolving workspace %s...", arg)
	wsRef, agentName := splitWorkspaceAgent(arg)
	if _, _, err := workspaceRef(wsRef); err != nil {
		return nil, fmt.Errorf("%w (argument %q, expected [owner/]workspace[.agent])", err, arg)
	}
	ws, err := r.lookupWorkspace(ctx, client, wsRef)
	if err != nil {
		return nil, err
	}
	logger.Debug("resolved workspace", "workspace", ws.Name, "id", ws.ID, "status", ws.LatestBuild.Status)
	ws, err = r.ensureStarted(ctx, client, ws, o, status)
	if err != nil {
		return nil, err
	}
	ag, err := pickAgent(ws, agentName)
	if err != nil {
		return nil, err
	}
	dr := <-derpCh
	derpCh <- dr // keep the deferred drain non-blocking
	if dr.err != nil {
		return nil, fmt.Errorf("get mesh connection info: %w", dr.err)
	}

	// Dial in parallel with waiting for the agent.
	type dialResult struct {
		conn *workspacesdk.AgentConn
		err  error
	}
	dialCh := make(chan dialResult, 1)
	agentID := ag.ID // ag is reassigned by waitAgent below
	go func() {
		c, err := workspacesdk.DialAgent(ctx, client, agentID, &workspacesdk.DialAgentOptions{ConnectionInfo: dr.info, Logger: logger})
		dialCh <- dialResult{c, err}
	}()
	stopLogs := r.startWaitLogs(ctx, client, ag, waitMode(o.wait), status) // cli/ssh_wait_logs.go
	ag, err = r.waitAgent(ctx, client, ag, waitMode(o.wait), timeout, status)
	stopLogs()
	if err != nil {
		cancel()
		if d := <-dialCh; d.conn != nil {
			_ = d.conn.Close()
		}
		return nil, err
	}
	status.Set("Connecting to agent %s...", ag.Name)
	d := <-dialCh
	if d.err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("agent %q (status %s) did not answer over the tunnel within %s: %w", ag.Name, ag.Status, timeout, d.err)
		}
		return nil, d.err
	}
	path := "via DERP"
	if pr, err := d.conn.Ping(ctx); err == nil {
		if pr.Direct {
			path = "direct " + pr.Endpoint
		} else if pr.DERPRegionCode != "" {
			path = "via DERP(" + pr.DERPRegionCode + ")"
		}
	}
	status.Set("Connected to %s %s", ag.Name, path)
	logger.Debug("connected", "agent", ag.ID, "path", path)
	return &reached{ws: ws, agent: ag, conn: d.conn, logger: logger, status: status, close: func() {
		_ = d.conn.Close()
		closeLog()
	}}, nil
}

// ensureStarted starts a stopped workspace (after asking, unless -y) and
// waits for a build in progress to finish.
func (r *root) ensureStarted(ctx context.Context, client *codersdk.Client, ws codersdk.Workspace, o reachOptions, status *statusLine) (codersdk.Workspace, error) {
	for {
		switch ws.LatestBuild.Status {
		case codersdk.WorkspaceStatusRunning:
			return ws, nil
		case codersdk.WorkspaceStatusPending, codersdk.WorkspaceStatusStarting, codersdk.WorkspaceStatusStopping, codersdk.WorkspaceStatusCanceling:
			status.Set("Waiting for the %s build of %s...", ws.LatestBuild.Transition, ws.Name)
			if err := r.waitBuild(ctx, client, ws.LatestBuild.ID); err != nil {
				return ws, err
			}
		case codersdk.WorkspaceStatusStopped, codersdk.WorkspaceStatusCanceled, codersdk.WorkspaceStatusFailed:
			if o.noStart {
				return ws, fmt.Errorf("workspace %q is %s: start it with 'coder start %s'", ws.Name, ws.LatestBuild.Status, ws.Name)
			}
			if !o.yes && !o.autoStart {
				if o.quiet {
					return ws, fmt.Errorf("workspace %q is %s: start it with 'coder start %s' (or pass -y)", ws.Name, ws.LatestBuild.Status, ws.Name)
				}
				status.Clear()
				ok, err := r.confirm(fmt.Sprintf("Workspace %q is %s. Start it?", ws.Name, ws.LatestBuild.Status))
				if err != nil {
					return ws, err
				}
				if !ok {
					return ws, errors.New("canceled")
				}
			}
			status.Set("Starting workspace %s...", ws.Name)
			b, err := client.CreateWorkspaceBuild(ctx, ws.ID, codersdk.CreateWorkspaceBuildRequest{Transition: codersdk.WorkspaceTransitionStart})
			if err != nil {
				return ws, fmt.Errorf("start workspace %q: %w", ws.Name, err)
			}
			if err := r.waitBuild(ctx, client, b.ID); err != nil {
				return ws, err
			}
		default:
			return ws, fmt.Errorf("workspace %q is %s", ws.Name, ws.LatestBuild.Status)
		}
		var err error
		ws, err = client.Workspace(ctx, ws.ID)
		if err != nil {
			return ws, fmt.Errorf("refresh workspace %q: %w", ws.Name, err)
		}
		if ws.LatestBuild.Transition == codersdk.WorkspaceTransitionStart && ws.LatestBuild.Job.Status == codersdk.ProvisionerJobFailed {
			return ws, fmt.Errorf("workspace %q failed to start: %s", ws.Name, ws.LatestBuild.Job.Error)
		}
	}
}

// waitBuild polls a build until its job is no longer active.
func (r *root) waitBuild(ctx context.Context, client *codersdk.Client, id uuid.UUID) error {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		b, err := client.WorkspaceBuild(ctx, id)
		if err != nil {
			return fmt.Errorf("workspace build: %w", err)
		}
		if !b.Job.Status.Active() {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("workspace build still %s: %w", b.Job.Status, ctx.Err())
		case <-t.C:
		}
	}
}

// waitAgent polls the agent until it is connected (and ready when the
// wait mode asks). On timeout the error names its status and last logs.
func (r *root) waitAgent(ctx context.Context, client *codersdk.Client, ag codersdk.WorkspaceAgent, mode waitMode, timeout time.Duration, status *statusLine) (codersdk.WorkspaceAgent, error) {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	notice := &waitNotice{w: r.stderr, status: status, started: time.Now()}
	if dl, ok := ctx.Deadline(); ok {
		notice.deadline = dl
	}
	for {
		wantReady := waitsForReady(mode, ag)
		switch {
		case ag.Status == codersdk.WorkspaceAgentConnected && !wantReady:
			return ag, nil
		case ag.Status == codersdk.WorkspaceAgentConnected:
			switch ag.LifecycleState {
			case codersdk.WorkspaceAgentLifecycleReady:
				return ag, nil
			case codersdk.WorkspaceAgentLifecycleStartError, codersdk.WorkspaceAgentLifecycleStartTimeout:
				// The script failed; the workspace is still usable.
				status.Clear()
				fmt.Fprintf(r.stderr, "warning: the startup script of agent %q ended with %s\n", ag.Name, ag.LifecycleState)
				return ag, nil
			}
			notice.show(ag, true, fmt.Sprintf("waiting for the startup script of agent %q (lifecycle: %s)", ag.Name, ag.LifecycleState))
		default:
			notice.show(ag, ag.Status == codersdk.WorkspaceAgentConnecting,
				fmt.Sprintf("waiting for agent %q (status: %s, %s)", ag.Name, ag.Status, agentLastSeen(ag)))
		}
		select {
		case <-ctx.Done():
			return ag, r.agentTimeoutError(client, ag, timeout)
		case <-t.C:
		}
		next, err := client.WorkspaceAgent(ctx, ag.ID)
		if err != nil {
			if ctx.Err() != nil {
				return ag, r.agentTimeoutError(client, ag, timeout)
			}
			return ag, fmt.Errorf("agent %q: %w", ag.Name, err)
		}
		ag = next
	}
}

// Pacing of the waiting notices of waitAgent.
const (
	// waitNoticeGrace delays the first notice for states that normally pass
	// quickly (an agent connecting, a startup script running).
	waitNoticeGrace = 2 * time.Second
	// waitNoticeInterval separates notices.
	waitNoticeInterval = 5 * time.Second
)

// waitNotice tells the user what waitAgent waits for: on a terminal in the
// status line, otherwise as a line on stderr every few seconds (at once for
// an agent that is disconnected or timed out), so a wait of minutes is
// never silent.
type waitNotice struct {
	w        io.Writer
	status   *statusLine
	started  time.Time
	deadline time.Time
	last     time.Time
}

func (n *waitNotice) show(ag codersdk.WorkspaceAgent, transient bool, msg string) {
	now := time.Now()
	if !n.deadline.IsZero() {
		msg += fmt.Sprintf("; giving up in %s", n.deadline.Sub(now).Round(time.Second))
	}
	if n.status.enabled {
		n.status.Set("%s...", msg)
		return
	}
	n.status.logger.Debug("status", "msg", msg, "agent", ag.ID)
	switch {
	case n.last.IsZero() && transient && now.Sub(n.started) < waitNoticeGrace:
		return
	case !n.last.IsZero() && now.Sub(n.last) < waitNoticeInterval:
		return
	}
	n.last = now
	fmt.Fprintln(n.w, msg)
}

// agentLastSeen describes when coderd last heard from the agent.
func agentLastSeen(ag codersdk.WorkspaceAgent) string {
	if ag.LastConnectedAt == nil || ag.LastConnectedAt.IsZero() {
		return "never connected"
	}
	return "last seen " + ago(time.Since(*ag.LastConnectedAt)) + " ago"
}

// ago renders an age coarsely: 45s, 3m, 2h, 4d.
func ago(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", max(0, int(d.Seconds())))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	default:
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	}
}

// agentTimeoutError describes an agent that did not become usable in time,
// with its last log lines.
func (r *root) agentTimeoutError(client *codersdk.Client, ag codersdk.WorkspaceAgent, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var b strings.Builder
	fmt.Fprintf(&b, "agent %q is not ready after %s: status %s, lifecycle %s", ag.Name, timeout, ag.Status, ag.LifecycleState)
	if ag.TroubleshootingURL != "" {
		fmt.Fprintf(&b, " (troubleshooting: %s)", ag.TroubleshootingURL)
	}
	logs, err := client.WorkspaceAgentLogsAfter(ctx, ag.ID, 0)
	switch {
	case err != nil:
		fmt.Fprintf(&b, "\n(could not fetch agent logs: %v)", err)
	case len(logs) == 0:
		b.WriteString("\nthe agent has sent no logs")
	default:
		const keep = 10
		if len(logs) > keep {
			logs = logs[len(logs)-keep:]
		}
		b.WriteString("\nlast agent logs:")
		for _, l := range logs {
			fmt.Fprintf(&b, "\n  %s %s", l.CreatedAt.Local().Format("15:04:05"), l.Output)
		}
	}
	return errors.New(b.String())
}

func (r *root) sshCommand() *cobra.Command {
	var (
		o            reachOptions
		stdio        bool
		forwardAgent bool
		remoteFwds   []string
		envs         []string
		hostPrefix   string
		extras       sshExtras
	)
	cmd := &cobra.Command{
		Use:   "ssh [owner/]WORKSPACE[.AGENT] [-- command...]",
		Short: "Start a shell or run a command in a workspace",
		Long: "Start a shell or run a command in a workspace over the mesh. The exit code of the command is\n" +
			"returned. With --stdio, stdin/stdout carry the raw SSH protocol (for OpenSSH's ProxyCommand).",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			o.quiet = stdio
			if hostPrefix != "" {
				args[0] = strings.TrimPrefix(args[0], hostPrefix)
			}
			var env []string
			for _, e := range envs {
				k, _, ok := strings.Cut(e, "=")
				if !ok || k == "" {
					return fmt.Errorf("--env %q: want KEY=VALUE", e)
				}
				env = append(env, e)
			}
			if stdio && (len(args) > 1 || forwardAgent || len(remoteFwds) > 0 || len(env) > 0) {
				return errors.New("--stdio carries the SSH protocol: a command, -A, -R and -e belong to the SSH client")
			}
			fwds, err := parseRemoteForwards(remoteFwds)
			if err != nil {
				return err
			}
			if err := extras.validate(); err != nil {
				return err
			}
			rc, err := r.reach(ctx, args[0], o, "ssh")
			if err != nil {
				return err
			}
			defer rc.close()
			defer r.startSSHExtras(ctx, rc, extras)()
			if stdio {
				return r.sshStdio(ctx, rc)
			}
			return r.sshSession(ctx, rc, args[1:], env, forwardAgent, fwds)
		},
	}
	addReachFlags(cmd, &o, true)
	o.autoStart = true
	fs := cmd.Flags()
	fs.BoolVar(&o.noStart, "disable-autostart", false, "Do not start a stopped workspace (by default coder ssh and its ProxyCommand start it).")
	envFlag(fs, "disable-autostart", "CODER_SSH_DISABLE_AUTOSTART")
	fs.BoolVar(&stdio, "stdio", false, "Carry the SSH protocol on stdin/stdout instead of starting a session (for ProxyCommand).")
	fs.BoolVarP(&forwardAgent, "forward-agent", "A", false, "Forward the local SSH agent ($SSH_AUTH_SOCK) to the workspace.")
	fs.StringArrayVarP(&remoteFwds, "remote-forward", "R", nil, "Forward a workspace port to a local address: [BIND:]REMOTE_PORT:LOCAL_HOST:LOCAL_PORT (repeatable).")
	fs.StringArrayVarP(&envs, "env", "e", nil, "Set an environment variable KEY=VALUE in the session (repeatable).")
	fs.StringVar(&hostPrefix, "ssh-host-prefix", "", "Strip this prefix from the workspace argument (used by config-ssh).")
	_ = fs.MarkHidden("ssh-host-prefix")
	addSSHExtrasFlags(fs, &extras)
	return cmd
}

// sshStdio pipes stdin/stdout to the agent's SSH port. OpenSSH (run by
// config-ssh without known_hosts checks) cannot know the agent's key, so the
// key is verified here first: a short handshake must present the host key
// the agent reported to coderd, over the same tunnel the stream then uses.
func (r *root) sshStdio(ctx context.Context, rc *reached) error {
	if err := rc.conn.VerifyHostKey(ctx); err != nil {
		return fmt.Errorf("verify the agent's SSH host key: %w", err)
	}
	nc, err := rc.conn.SSH(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	rc.status.Clear()
	remoteDone := make(chan error, 1)
	go func() {
		_, err := io.Copy(r.stdout, nc)
		remoteDone <- err
	}()
	// stdin is read by a goroutine that may stay blocked in Read after the
	// remote side ends (a terminal or pipe cannot be interrupted); the
	// process exits right after, which ends it.
	stdinDone := make(chan struct{})
	go func() {
		defer close(stdinDone)
		_, _ = io.Copy(nc, r.stdin)
		if cw, ok := nc.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
	}()
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	agentGone := make(chan error, 1)
	go func() { agentGone <- watchAgent(wctx, rc.conn, defaultAgentWatch) }()
	remoteEnded := func(err error) error {
		if err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, io.EOF) {
			return fmt.Errorf("ssh stream: %w", err)
		}
		return nil
	}
	select {
	case err := <-remoteDone:
		return remoteEnded(err)
	case <-stdinDone:
		// The SSH client closed our stdin: it is done or it died (a
		// killed ssh never stops its ProxyCommand otherwise). Let the
		// agent finish its side briefly, then exit: an agent that is gone
		// would never answer and this process would be left behind.
		t := time.NewTimer(stdioDrainTimeout)
		defer t.Stop()
		select {
		case err := <-remoteDone:
			return remoteEnded(err)
		case <-t.C:
			rc.logger.Debug("stdin closed and the agent did not close its side; exiting", "waited", stdioDrainTimeout)
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	case err := <-agentGone:
		if ctx.Err() != nil {
			return ctx.Err()
		}
		_ = nc.Close()
		return fmt.Errorf("workspace %s: agent %q is unreachable, closing the SSH connection: %w", rc.ws.Name, rc.agent.Name, err)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// stdioDrainTimeout is how long coder ssh --stdio waits, after its stdin
// closed, for the agent to close the stream.
const stdioDrainTimeout = 5 * time.Second

// agentWatch tunes how a long-lived stream notices that its agent died
// (killed, its host gone): the coordinator reports the agent lost, and the
// agent does not answer Failures pings over the tunnel in a row, one every
// Interval, each given PingTimeout. An agent that only lost coderd (a
// coderd restart, a network blip between agent and coderd) still answers
// pings peer to peer, and the stream stays.
type agentWatch struct {
	Interval    time.Duration
	PingTimeout time.Duration
	Failures    int
}

// defaultAgentWatch declares an agent gone about 10 s after it stopped
// answering.
var defaultAgentWatch = agentWatch{Interval: 2 * time.Second, PingTimeout: 2 * time.Second, Failures: 3}

// watchAgent returns an error once the agent of conn is gone (see
// agentWatch), or ctx's error.
func watchAgent(ctx context.Context, conn *workspacesdk.AgentConn, w agentWatch) error {
	if w.Interval <= 0 {
		w = defaultAgentWatch
	}
	t := time.NewTicker(w.Interval)
	defer t.Stop()
	failed := 0
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		if !agentLost(conn) {
			failed = 0
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, w.PingTimeout)
		_, err := conn.Ping(pctx)
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err == nil {
			failed = 0
			continue
		}
		failed++
		if failed >= w.Failures {
			return fmt.Errorf("coderd reports the agent's connection lost and it did not answer %d pings over the tunnel (last: %v)", failed, err)
		}
	}
}

// agentLost reports whether the coordinator told us the agent is lost (or
// the agent's peer is gone from the tunnel).
func agentLost(conn *workspacesdk.AgentConn) bool {
	for _, p := range conn.TunnelConn().Status().Peers {
		if p.ID == conn.AgentID() {
			return p.Lost
		}
	}
	return true
}

// remoteForward is one -R flag.
type remoteForward struct {
	remote string // listen address in the workspace
	local  string // address dialed locally
}

func parseRemoteForwards(raw []string) ([]remoteForward, error) {
	var out []remoteForward
	for _, s := range raw {
		parts := strings.Split(s, ":")
		var f remoteForward
		switch len(parts) {
		case 3:
			f = remoteForward{remote: net.JoinHostPort("127.0.0.1", parts[0]), local: net.JoinHostPort(parts[1], parts[2])}
		case 4:
			f = remoteForward{remote: net.JoinHostPort(parts[0], parts[1]), local: net.JoinHostPort(parts[2], parts[3])}
		default:
			return nil, fmt.Errorf("--remote-forward %q: want [BIND:]REMOTE_PORT:LOCAL_HOST:LOCAL_PORT", s)
		}
		for _, p := range []string{f.remote, f.local} {
			_, port, _ := net.SplitHostPort(p)
			if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
				return nil, fmt.Errorf("--remote-forward %q: bad port %q", s, port)
			}
		}
		out = append(out, f)
	}
	return out, nil
}

// sshSession runs a shell (with a local PTY when stdin is a terminal) or a
// command, and returns its exit code as an *exitCodeError.
func (r *root) sshSession(ctx context.Context, rc *reached, command, env []string, forwardAgent bool, fwds []remoteForward) error {
	sc, err := rc.conn.NewSSHClient(ctx)
	if err != nil {
		return err
	}
	defer sc.Close()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer sc.Close()
	for _, f := range fwds {
		ln, err := sc.Listen("tcp", f.remote)
		if err != nil {
			return fmt.Errorf("remote forward %s -> %s: %w", f.remote, f.local, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			serveRemoteForward(ln, f.local, rc.logger)
		}()
	}
	sess, err := sc.NewSession()
	if err != nil {
		return fmt.Errorf("open ssh session: %w", err)
	}
	defer sess.Close()
	for _, e := range env {
		k, v, _ := strings.Cut(e, "=")
		if err := sess.Setenv(k, v); err != nil {
			return fmt.Errorf("set %s in the session: %w", k, err)
		}
	}
	if forwardAgent {
		sock := r.env["SSH_AUTH_SOCK"]
		if sock == "" {
			return errors.New("--forward-agent: SSH_AUTH_SOCK is not set")
		}
		if err := sshagent.ForwardToRemote(sc, sock); err != nil {
			return fmt.Errorf("forward ssh agent: %w", err)
		}
		if err := sshagent.RequestAgentForwarding(sess); err != nil {
			return fmt.Errorf("request agent forwarding: %w", err)
		}
	}
	sess.Stdout, sess.Stderr = r.stdout, r.stderr
	stdinFd, stdinTTY := r.stdinTerminal()
	if stdinTTY && len(command) == 0 {
		outFd := stdinFd
		if f, ok := r.stdout.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			outFd = int(f.Fd())
		}
		w, h, err := term.GetSize(outFd)
		if err != nil {
			w, h = 80, 24
		}
		termName := r.env["TERM"]
		if termName == "" {
			termName = "xterm-256color"
		}
		if err := sess.RequestPty(termName, h, w, gossh.TerminalModes{gossh.ECHO: 1}); err != nil {
			return fmt.Errorf("request pty: %w", err)
		}
		state, err := term.MakeRaw(stdinFd)
		if err != nil {
			return fmt.Errorf("put terminal in raw mode: %w", err)
		}
		defer func() { _ = term.Restore(stdinFd, state) }()
		winch := make(chan os.Signal, 1)
		signal.Notify(winch, syscall.SIGWINCH)
		defer signal.Stop(winch)
		resizeDone := make(chan struct{})
		defer close(resizeDone)
		go func() {
			for {
				select {
				case <-resizeDone:
					return
				case <-winch:
					if w, h, err := term.GetSize(outFd); err == nil {
						_ = sess.WindowChange(h, w)
					}
				}
			}
		}()
	}
	// The stdin copy goroutine of the session may outlive it when stdin
	// blocks; closing the session ends the remote side.
	sess.Stdin = r.stdin
	rc.status.Clear()
	if len(command) == 0 {
		err = sess.Shell()
	} else {
		err = sess.Start(strings.Join(command, " "))
	}
	if err != nil {
		return fmt.Errorf("start session: %w", err)
	}
	waitErr := make(chan error, 1)
	go func() { waitErr <- sess.Wait() }()
	select {
	case err = <-waitErr:
	case <-ctx.Done():
		_ = sess.Close()
		<-waitErr
		return ctx.Err()
	}
	var exitErr *gossh.ExitError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &exitErr):
		if exitErr.Signal() != "" {
			return &exitCodeError{code: 128 + signalNumber(exitErr.Signal())}
		}
		return &exitCodeError{code: exitErr.ExitStatus()}
	default:
		return fmt.Errorf("ssh session: %w", err)
	}
}

// signalNumber maps an SSH signal name to its number (for 128+N codes).
func signalNumber(name string) int {
	switch name {
	case "HUP":
		return 1
	case "INT":
		return 2
	case "QUIT":
		return 3
	case "KILL":
		return 9
	case "SEGV":
		return 11
	case "PIPE":
		return 13
	case "ALRM":
		return 14
	case "TERM":
		return 15
	default:
		return 0
	}
}

// serveRemoteForward accepts connections on a listener in the workspace
// and dials local for each, until the listener closes.
func serveRemoteForward(ln net.Listener, local string, logger *slog.Logger) {
	defer ln.Close()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		rc, err := ln.Accept()
		if err != nil {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer rc.Close()
			lc, err := net.Dial("tcp", local)
			if err != nil {
				logger.Warn("remote forward: dial local", "addr", local, "error", err)
				return
			}
			defer lc.Close()
			pipe(rc, lc)
		}()
	}
}

// pipe copies both ways until either side ends, then closes both.
func pipe(a, b net.Conn) {
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
		done <- struct{}{}
	}
	go cp(a, b)
	go cp(b, a)
	<-done
	<-done
}
