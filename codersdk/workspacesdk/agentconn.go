// Package workspacesdk is the client side of a connection to a workspace
// agent: a userspace WireGuard tunnel (tunnel.Conn) kept in sync with the
// coordinator through coderd, and typed access to the agent's services on
// its mesh address (SSH, port forwarding, reconnecting PTY, speed test,
// HTTP API). The wire formats of those services are codersdk/agentproto.
package workspacesdk

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"
	gossh "golang.org/x/crypto/ssh"

	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/codersdk/agentproto"
	"github.com/wgmesh/coder/coordinator"
	"github.com/wgmesh/coder/tunnel"
)

// DialAgentOptions tunes DialAgent; the zero value is fine.
type DialAgentOptions struct {
	// Logger receives tunnel and coordinator logs; nil discards.
	Logger *slog.Logger
	// ConnectionInfo is the deployment's mesh settings (DERP map, DERP over
	// websockets, DERP only); nil fetches them from coderd.
	ConnectionInfo *codersdk.AgentConnectionInfo
	// BlockEndpoints forces relayed (DERP-only) connections.
	BlockEndpoints bool
	// ListenPort is the local UDP port of the mesh (0: random).
	ListenPort uint16
	// BackoffMin and BackoffMax bound coordinator reconnection waits
	// (defaults of the coordinator package when zero).
	BackoffMin, BackoffMax time.Duration
	// SkipAwaitReachable returns as soon as the tunnel exists, without
	// waiting for the agent to answer a disco ping.
	SkipAwaitReachable bool
}

// AgentConn is a live tunnel to one workspace agent. Close it when done.
type AgentConn struct {
	agentID uuid.UUID
	ip      netip.Addr
	conn    *tunnel.Conn
	ctrl    *coordinator.Controller
	logger  *slog.Logger
	// hostKey fetches the agent's reported SSH host key.
	hostKey func(ctx context.Context) (string, error)

	sshMu     sync.Mutex
	sshClient *gossh.Client

	closeOnce sync.Once
	closeErr  error
}

// TunnelOptions completes base with the deployment's mesh settings: its DERP
// map, DERP-only mode, and how DERP relays are reached (plain HTTP when coderd
// itself is served over http://, websockets when the deployment forces them).
func TunnelOptions(client *codersdk.Client, info codersdk.AgentConnectionInfo, base tunnel.Options) tunnel.Options {
	base.DERPMap = info.DERPMap
	base.BlockEndpoints = base.BlockEndpoints || info.DisableDirectConnections
	base.DERPPlainHTTP = client.URL.Scheme == "http"
	base.DERPWebsockets = info.DERPForceWebsockets
	return base
}

// DialAgent builds a tunnel with the mesh address coderd assigns it, asks the coordinator
// (through client's coordinate endpoint) for a tunnel to agentID, and waits
// until the agent answers a disco ping (or ctx ends).
func DialAgent(ctx context.Context, client *codersdk.Client, agentID uuid.UUID, opts *DialAgentOptions) (_ *AgentConn, err error) {
	if opts == nil {
		opts = &DialAgentOptions{}
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	info := opts.ConnectionInfo
	if info == nil {
		fetched, err := client.AgentConnectionInfo(ctx)
		if err != nil {
			return nil, fmt.Errorf("get mesh connection info: %w", err)
		}
		info = &fetched
	}
	// coderd assigns the tunnel's address; the coordinator and the agent
	// refuse nodes announcing any other.
	clientID := uuid.New()
	identity, err := client.TailnetClient(ctx, clientID)
	if err != nil {
		return nil, fmt.Errorf("get tunnel client address: %w", err)
	}
	conn, err := tunnel.NewConn(TunnelOptions(client, *info, tunnel.Options{
		Addresses:      []netip.Prefix{identity.Address},
		Logger:         logger.With("component", "tunnel"),
		ListenPort:     opts.ListenPort,
		BlockEndpoints: opts.BlockEndpoints,
	}))
	if err != nil {
		return nil, fmt.Errorf("create tunnel: %w", err)
	}
	defer func() {
		if err != nil {
			_ = conn.Close()
		}
	}()
	ctrl, err := coordinator.NewController(coordinator.ControllerOptions{
		Conn: conn,
		Dial: func(ctx context.Context) (*websocket.Conn, error) {
			return client.DialClientCoordinator(ctx, agentID, clientID, conn.NodeKey())
		},
		Logger:     logger.With("component", "coordinator"),
		BackoffMin: opts.BackoffMin,
		BackoffMax: opts.BackoffMax,
	})
	if err != nil {
		return nil, fmt.Errorf("start coordinator controller: %w", err)
	}
	ctrl.AddTunnel(agentID)
	c := &AgentConn{agentID: agentID, ip: tunnel.IPFromUUID(agentID), conn: conn, ctrl: ctrl, logger: logger}
	c.hostKey = func(ctx context.Context) (string, error) {
		a, err := client.WorkspaceAgent(ctx, agentID)
		if err != nil {
			return "", fmt.Errorf("get agent SSH host key: %w", err)
		}
		return a.SSHHostKey, nil
	}
	if opts.SkipAwaitReachable {
		return c, nil
	}
	if !c.AwaitReachable(ctx) {
		_ = c.Close()
		return nil, fmt.Errorf("agent %s not reachable over the tunnel: %w", agentID, context.Cause(ctx))
	}
	return c, nil
}

// AgentID is the agent this connection reaches.
func (c *AgentConn) AgentID() uuid.UUID { return c.agentID }

// AgentIP is the agent's mesh address.
func (c *AgentConn) AgentIP() netip.Addr { return c.ip }

// TunnelConn is the underlying tunnel (status, netcheck, DERP latencies).
func (c *AgentConn) TunnelConn() *tunnel.Conn { return c.conn }

// AwaitReachable disco-pings the agent until it answers (true) or ctx ends.
func (c *AgentConn) AwaitReachable(ctx context.Context) bool {
	return c.conn.AwaitReachable(ctx, c.ip)
}

// Ping sends one disco ping to the agent and reports latency and path.
func (c *AgentConn) Ping(ctx context.Context) (tunnel.PingResult, error) {
	return c.conn.Ping(ctx, c.ip)
}

// CoordinatorConnected reports whether the coordination websocket is up.
func (c *AgentConn) CoordinatorConnected() bool {
	ok, _ := c.ctrl.Connected()
	return ok
}

// dialPort opens a TCP connection to a port of the agent's mesh address.
func (c *AgentConn) dialPort(ctx context.Context, port int) (net.Conn, error) {
	nc, err := c.conn.DialContext(ctx, "tcp", netip.AddrPortFrom(c.ip, uint16(port)).String())
	if err != nil {
		return nil, fmt.Errorf("dial agent port %d: %w", port, err)
	}
	return nc, nil
}

// SSH opens a raw TCP connection to the agent's SSH server: the bytes are
// the SSH protocol (what `coder ssh --stdio` pipes to OpenSSH).
func (c *AgentConn) SSH(ctx context.Context) (net.Conn, error) {
	return c.dialPort(ctx, agentproto.SSHPort)
}

// HostKeyCallback returns a callback accepting only the SSH host key the
// agent reported to coderd (fetched from the API now).
func (c *AgentConn) HostKeyCallback(ctx context.Context) (gossh.HostKeyCallback, error) {
	k, err := c.hostKey(ctx)
	if err != nil {
		return nil, err
	}
	return PinnedHostKey(k)
}

// VerifyHostKey opens a short SSH handshake with the agent and checks that
// its host key is the one the agent reported to coderd. `coder ssh --stdio`
// runs it before handing the raw stream to OpenSSH.
func (c *AgentConn) VerifyHostKey(ctx context.Context) error {
	sc, err := c.NewSSHClient(ctx)
	if err != nil {
		return err
	}
	return sc.Close()
}

// NewSSHClient opens a new SSH client connection to the agent, verifying
// its host key against the key the agent reported to coderd; the caller
// closes the client.
func (c *AgentConn) NewSSHClient(ctx context.Context) (*gossh.Client, error) {
	hostKeyCallback, err := c.HostKeyCallback(ctx)
	if err != nil {
		return nil, err
	}
	nc, err := c.SSH(ctx)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(dl)
	}
	sc, chans, reqs, err := gossh.NewClientConn(nc, c.ip.String(), &gossh.ClientConfig{
		User:            "coder",
		HostKeyCallback: hostKeyCallback,
	})
	if err != nil {
		_ = nc.Close()
		return nil, fmt.Errorf("ssh handshake with agent: %w", err)
	}
	_ = nc.SetDeadline(time.Time{})
	return gossh.NewClient(sc, chans, reqs), nil
}

// SSHClient returns the connection's shared SSH client (created on first
// use, closed by Close). It carries DialContext's forwarded connections.
func (c *AgentConn) SSHClient(ctx context.Context) (*gossh.Client, error) {
	c.sshMu.Lock()
	defer c.sshMu.Unlock()
	if c.sshClient != nil {
		return c.sshClient, nil
	}
	sc, err := c.NewSSHClient(ctx)
	if err != nil {
		return nil, err
	}
	c.sshClient = sc
	go func() {
		// Forget a client whose connection died so the next call redials.
		_ = sc.Wait()
		c.sshMu.Lock()
		if c.sshClient == sc {
			c.sshClient = nil
		}
		c.sshMu.Unlock()
	}()
	return sc, nil
}

// DialContext opens a TCP connection to addr ("host:port", usually
// 127.0.0.1:PORT) as seen from inside the workspace: the agent dials it on
// our behalf through an SSH direct-tcpip channel. Only "tcp", "tcp4" and
// "tcp6" are supported.
func (c *AgentConn) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, fmt.Errorf("dial %s %s in workspace: network not supported by the agent", network, addr)
	}
	sc, err := c.SSHClient(ctx)
	if err != nil {
		return nil, err
	}
	type result struct {
		conn net.Conn
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		nc, err := sc.Dial("tcp", addr)
		ch <- result{nc, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, fmt.Errorf("dial %s in workspace: %w", addr, r.err)
		}
		return r.conn, nil
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.conn != nil {
				_ = r.conn.Close()
			}
		}()
		return nil, fmt.Errorf("dial %s in workspace: %w", addr, ctx.Err())
	}
}

// DialUDP opens a UDP relay to 127.0.0.1:port inside the workspace through
// the agent. The returned connection carries datagrams: each Write sends
// one, each Read returns one (truncated when the buffer is too small).
// idleTimeout asks the agent to end the relay after that long without a
// datagram (0: agentproto.DefaultUDPRelayIdleTimeout). Closing the
// connection ends the relay.
func (c *AgentConn) DialUDP(ctx context.Context, port int, idleTimeout time.Duration) (*agentproto.UDPFrameConn, error) {
	if port < 1 || port > 65535 {
		return nil, fmt.Errorf("dial udp in workspace: bad port %d", port)
	}
	target := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(port))
	nc, err := c.dialPort(ctx, agentproto.UDPRelayPort)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*agentproto.UDPFrameConn, error) {
		_ = nc.Close()
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", err, ctx.Err())
		}
		return nil, fmt.Errorf("dial udp %s in workspace: %w", target, err)
	}
	stop := context.AfterFunc(ctx, func() { _ = nc.Close() })
	defer stop()
	fc, err := agentproto.OpenUDPRelay(nc, agentproto.UDPRelayRequest{Target: target.String(), IdleTimeout: idleTimeout})
	if err != nil {
		return fail(err)
	}
	if !stop() {
		return fail(errors.New("connection closed"))
	}
	return fc, nil
}

// ReconnectingPTY attaches to (or creates) the reconnecting PTY session
// req.ID of the agent, as the web terminal does.
func (c *AgentConn) ReconnectingPTY(ctx context.Context, req agentproto.PTYInit) (*agentproto.PTYConn, error) {
	nc, err := c.dialPort(ctx, agentproto.ReconnectingPTYPort)
	if err != nil {
		return nil, err
	}
	rc, err := agentproto.AttachPTY(nc, req)
	if err != nil {
		_ = nc.Close()
		return nil, fmt.Errorf("attach reconnecting pty: %w", err)
	}
	return rc, nil
}

// SpeedtestInterval is the throughput of one interval of a speed test.
type SpeedtestInterval struct {
	// Start and End are offsets from the start of the test.
	Start time.Duration `json:"start"`
	End   time.Duration `json:"end"`
	// Bytes moved in the interval.
	Bytes int64 `json:"bytes"`
}

// BitsPerSecond is the interval's throughput.
func (i SpeedtestInterval) BitsPerSecond() float64 {
	d := (i.End - i.Start).Seconds()
	if d <= 0 {
		return 0
	}
	return float64(i.Bytes) * 8 / d
}

// SpeedtestResult is a whole speed test.
type SpeedtestResult struct {
	Direction string              `json:"direction"`
	Intervals []SpeedtestInterval `json:"intervals"`
	// Total covers the whole test.
	Total SpeedtestInterval `json:"total"`
}

// Speedtest measures throughput through the tunnel to the agent for
// duration in direction (agentproto.SpeedtestUpload or
// agentproto.SpeedtestDownload), reporting each interval to onInterval
// (may be nil) as it completes.
func (c *AgentConn) Speedtest(ctx context.Context, direction string, duration, interval time.Duration, onInterval func(SpeedtestInterval)) (SpeedtestResult, error) {
	if direction != agentproto.SpeedtestUpload && direction != agentproto.SpeedtestDownload {
		return SpeedtestResult{}, fmt.Errorf("speedtest: direction %q: want %s or %s", direction, agentproto.SpeedtestUpload, agentproto.SpeedtestDownload)
	}
	if duration <= 0 || duration > agentproto.MaxSpeedtestDuration {
		return SpeedtestResult{}, fmt.Errorf("speedtest: duration %s must be in (0, %s]", duration, agentproto.MaxSpeedtestDuration)
	}
	if interval <= 0 {
		interval = time.Second
	}
	nc, err := c.dialPort(ctx, agentproto.SpeedtestPort)
	if err != nil {
		return SpeedtestResult{}, err
	}
	defer nc.Close()
	stop := context.AfterFunc(ctx, func() { _ = nc.Close() })
	defer stop()
	hdr, err := json.Marshal(agentproto.SpeedtestRequest{Direction: direction, Duration: duration})
	if err != nil {
		return SpeedtestResult{}, fmt.Errorf("encode speedtest request: %w", err)
	}
	if _, err := nc.Write(append(hdr, '\n')); err != nil {
		return SpeedtestResult{}, fmt.Errorf("send speedtest request: %w", err)
	}
	res := SpeedtestResult{Direction: direction}
	start := time.Now()
	var (
		mu       sync.Mutex
		moved    int64
		lastMark time.Duration
		lastSeen int64
	)
	// tick closes an interval at the current time.
	tick := func(final bool) {
		mu.Lock()
		defer mu.Unlock()
		now := time.Since(start)
		if final && now-lastMark < interval/10 && len(res.Intervals) > 0 {
			// Fold a tiny tail into the previous interval.
			last := &res.Intervals[len(res.Intervals)-1]
			last.End = now
			last.Bytes += moved - lastSeen
		} else {
			iv := SpeedtestInterval{Start: lastMark, End: now, Bytes: moved - lastSeen}
			res.Intervals = append(res.Intervals, iv)
			if onInterval != nil {
				onInterval(iv)
			}
		}
		lastMark, lastSeen = now, moved
	}
	done := make(chan struct{})
	tickerDone := make(chan struct{})
	go func() {
		defer close(tickerDone)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				tick(false)
			case <-done:
				return
			}
		}
	}()
	buf := make([]byte, 32<<10)
	var runErr error
	switch direction {
	case agentproto.SpeedtestDownload:
		for {
			n, err := nc.Read(buf)
			mu.Lock()
			moved += int64(n)
			mu.Unlock()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					runErr = err
				}
				break
			}
		}
	case agentproto.SpeedtestUpload:
		end := start.Add(duration)
		for time.Now().Before(end) {
			n, err := nc.Write(buf)
			mu.Lock()
			moved += int64(n)
			mu.Unlock()
			if err != nil {
				runErr = err
				break
			}
		}
		if runErr == nil {
			if cw, ok := nc.(interface{ CloseWrite() error }); ok {
				runErr = cw.CloseWrite()
			}
		}
		if runErr == nil {
			var ack [8]byte
			if _, err := io.ReadFull(nc, ack[:]); err != nil {
				runErr = fmt.Errorf("read upload acknowledgement: %w", err)
			} else if got := int64(binary.BigEndian.Uint64(ack[:])); got != moved {
				runErr = fmt.Errorf("agent received %d bytes, sent %d", got, moved)
			}
		}
	}
	close(done)
	<-tickerDone
	if runErr != nil {
		if ctx.Err() != nil {
			runErr = ctx.Err()
		}
		return res, fmt.Errorf("speedtest %s: %w", direction, runErr)
	}
	tick(true)
	res.Total = SpeedtestInterval{Start: 0, End: lastMark, Bytes: moved}
	return res, nil
}

// httpClient talks to the agent's HTTP API on its mesh address.
func (c *AgentConn) httpClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return c.dialPort(ctx, agentproto.HTTPAPIPort)
		},
		DisableKeepAlives: true,
	}}
}

// ListeningPorts lists the TCP ports listening inside the workspace.
func (c *AgentConn) ListeningPorts(ctx context.Context) ([]agentproto.ListeningPort, error) {
	u := "http://" + net.JoinHostPort(c.ip.String(), strconv.Itoa(agentproto.HTTPAPIPort)) + agentproto.ListeningPortsPath
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("listening ports: %w", err)
	}
	res, err := c.httpClient().Do(req)
	if err != nil {
		return nil, fmt.Errorf("listening ports: %w", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(res.Body, 4<<10))
		return nil, fmt.Errorf("listening ports: status %d: %s", res.StatusCode, body)
	}
	var out agentproto.ListeningPortsResponse
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("decode listening ports: %w", err)
	}
	return out.Ports, nil
}

// Close stops the SSH client, the coordinator controller (which tells the
// coordinator goodbye) and the tunnel.
func (c *AgentConn) Close() error {
	c.closeOnce.Do(func() {
		c.sshMu.Lock()
		sc := c.sshClient
		c.sshClient = nil
		c.sshMu.Unlock()
		var errs []error
		if sc != nil {
			_ = sc.Close()
		}
		if err := c.ctrl.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close coordinator controller: %w", err))
		}
		if err := c.conn.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close tunnel: %w", err))
		}
		c.closeErr = errors.Join(errs...)
	})
	return c.closeErr
}
