// Package agentssh is the workspace agent's SSH server.
//
// It serves interactive PTY sessions, command execution with exit statuses
// and exit signals, the SFTP subsystem, local (direct-tcpip) and remote
// (tcpip-forward) port forwarding and agent forwarding (ssh -A) on any
// net.Listener it is given; it never opens a listener of its own except the
// loopback listeners a client explicitly asks for with remote forwarding and
// the per-session unix socket of agent forwarding.
//
// Authentication: the server accepts the "none" method and any public key.
// The agent only serves on its mesh (tailnet) address, and the coordinator has
// already authorized the peer before a single packet can reach the listener,
// so SSH authentication adds nothing. The SSH user name the client sends is
// ignored: every session runs as the OS user running the agent.
//
// Sessions: a session without a command starts the user's login shell
// (argv[0] prefixed with "-", as OpenSSH does); a command runs as
// `shell -c command`. The environment is, in order (later entries win):
// Options.Env (os.Environ when nil), CODER=true, USER, LOGNAME, HOME, SHELL,
// PATH (the agent's, else DefaultPath), every variable the client sent with
// "env" requests (AcceptEnv is "*": the peer is already trusted), TERM for PTY
// sessions, SSH_CLIENT, SSH_CONNECTION, SSH_TTY and SSH_AUTH_SOCK.
//
// Remote forwarding binds only loopback addresses, like OpenSSH with
// GatewayPorts=no: a request for "", "*", "0.0.0.0" or "localhost" binds
// 127.0.0.1. Port 0 binds a free port and returns it to the client.
//
// Keep-alives: every KeepaliveInterval the server sends keepalive@openssh.com
// on each connection and closes connections that leave KeepaliveMax
// consecutive requests unanswered. A connection that has not completed the
// SSH handshake within HandshakeTimeout is closed.
package agentssh

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gliderlabs/ssh"
	"github.com/pkg/sftp"
	gossh "golang.org/x/crypto/ssh"
)

// ErrServerClosed is returned by Serve after Close.
var ErrServerClosed = ssh.ErrServerClosed

// Defaults for Options.
const (
	DefaultKeepaliveInterval = 30 * time.Second
	DefaultKeepaliveMax      = 3
	DefaultHandshakeTimeout  = 30 * time.Second
)

// Options configure a Server.
type Options struct {
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
	// HostSigner is the SSH host key. When nil, HostKeyPath is used.
	HostSigner gossh.Signer
	// HostKeyPath is a file holding the host key; an ed25519 key is generated
	// and stored there (mode 0600) on first use. When both HostSigner and
	// HostKeyPath are empty, an ephemeral key is generated.
	HostKeyPath string
	// Env returns the base environment of every session (manifest env,
	// CODER_WORKSPACE_NAME, CODER_WORKSPACE_AGENT_NAME, ...). It is called for
	// each session. Nil means os.Environ.
	Env func() []string
	// Dir is the working directory of sessions and of the SFTP subsystem.
	// Empty means the user's home directory.
	Dir string
	// Shell is the shell used for sessions. Empty means the user's login
	// shell from /etc/passwd, else /bin/sh.
	Shell string
	// KeepaliveInterval is the period of server keep-alive requests. Zero
	// means DefaultKeepaliveInterval; negative disables keep-alives.
	KeepaliveInterval time.Duration
	// KeepaliveMax is how many consecutive unanswered keep-alives close a
	// connection. Zero means DefaultKeepaliveMax.
	KeepaliveMax int
	// HandshakeTimeout bounds the SSH handshake (including authentication)
	// of a new connection; zero means DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// MaxTimeout is an absolute lifetime for connections; zero means none.
	MaxTimeout time.Duration
	// DisableSFTP turns the "sftp" subsystem off.
	DisableSFTP bool
}

// Session types reported by ConnStats.
const (
	SessionTypeSSH       = "ssh"
	SessionTypeVSCode    = "vscode"
	SessionTypeJetBrains = "jetbrains"
	SessionTypeSFTP      = "sftp"
)

// Stats are live counters of a Server.
type Stats struct {
	// Conns is the number of open SSH connections.
	Conns int64
	// Sessions maps a session type (SessionType*) to the number of open
	// sessions of that type.
	Sessions map[string]int64
	// TotalConns is the number of connections accepted since start.
	TotalConns int64
}

// Server is the agent's SSH server. Create it with New.
type Server struct {
	logger *slog.Logger
	opts   Options
	ident  identity
	shell  string
	dir    string
	srv    *ssh.Server

	mu        sync.Mutex
	closed    bool
	listeners map[net.Listener]struct{}
	conns     map[net.Conn]struct{}
	wg        sync.WaitGroup // session handlers, keep-alive loops, forwards

	conns64    atomic.Int64
	totalConns atomic.Int64
	sessions   sync.Map // type -> *atomic.Int64
}

// New builds a Server; it does not listen until Serve is called.
func New(opts Options) (*Server, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	signer := opts.HostSigner
	var err error
	switch {
	case signer != nil:
	case opts.HostKeyPath != "":
		signer, err = LoadOrCreateHostKey(opts.HostKeyPath)
	default:
		signer, err = generateHostKey()
	}
	if err != nil {
		return nil, err
	}
	ident, err := currentIdentity()
	if err != nil {
		return nil, err
	}
	if opts.KeepaliveInterval == 0 {
		opts.KeepaliveInterval = DefaultKeepaliveInterval
	}
	if opts.HandshakeTimeout <= 0 {
		opts.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if opts.KeepaliveMax <= 0 {
		opts.KeepaliveMax = DefaultKeepaliveMax
	}
	s := &Server{
		logger:    logger,
		opts:      opts,
		ident:     ident,
		shell:     opts.Shell,
		dir:       opts.Dir,
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[net.Conn]struct{}),
	}
	if s.shell == "" {
		s.shell = UserShell(ident.Username)
	}
	if s.dir == "" {
		s.dir = ident.Home
	}
	fwd := &remoteForwards{s: s}
	s.srv = &ssh.Server{
		HostSigners: []ssh.Signer{signer},
		Handler:     s.handleSession,
		MaxTimeout:  opts.MaxTimeout,
		ServerConfigCallback: func(ssh.Context) *gossh.ServerConfig {
			return &gossh.ServerConfig{NoClientAuth: true}
		},
		PublicKeyHandler: func(ssh.Context, ssh.PublicKey) bool { return true },
		ConnCallback:     s.connCallback,
		LocalPortForwardingCallback: func(ctx ssh.Context, host string, port uint32) bool {
			s.logger.Debug("local port forward", "dest_host", host, "dest_port", port)
			return true
		},
		ChannelHandlers: map[string]ssh.ChannelHandler{
			"session":      sessionChannelHandler,
			"direct-tcpip": ssh.DirectTCPIPHandler,
		},
		RequestHandlers: map[string]ssh.RequestHandler{
			"tcpip-forward":        fwd.handle,
			"cancel-tcpip-forward": fwd.handle,
		},
		SubsystemHandlers: map[string]ssh.SubsystemHandler{},
		ConnectionFailedCallback: func(conn net.Conn, err error) {
			s.logger.Debug("ssh handshake failed", "remote", conn.RemoteAddr(), "error", err)
		},
	}
	if !opts.DisableSFTP {
		s.srv.SubsystemHandlers["sftp"] = s.handleSFTP
	}
	return s, nil
}

// HostKey returns the server's public host key.
func (s *Server) HostKey() gossh.PublicKey {
	return s.srv.HostSigners[0].PublicKey()
}

// Serve accepts SSH connections on l until Close; it closes l when it
// returns. After Close it returns ErrServerClosed.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		l.Close()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
	}()
	s.logger.Info("ssh server listening", "addr", l.Addr().String())
	err := s.srv.Serve(l)
	if s.isClosed() {
		return ErrServerClosed
	}
	if err != nil {
		return fmt.Errorf("serve ssh: %w", err)
	}
	return nil
}

// Close closes all listeners and connections, ends every session (their
// processes get SIGHUP, then SIGKILL) and waits for the handlers to return.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	var errs []error
	for l := range s.listeners {
		if err := l.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	if err := s.srv.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		errs = append(errs, err)
	}
	s.wg.Wait()
	if len(errs) > 0 {
		return fmt.Errorf("close ssh server: %w", errors.Join(errs...))
	}
	return nil
}

// ConnStats returns the live connection and session counters.
func (s *Server) ConnStats() Stats {
	st := Stats{
		Conns:      s.conns64.Load(),
		TotalConns: s.totalConns.Load(),
		Sessions:   map[string]int64{},
	}
	for _, t := range []string{SessionTypeSSH, SessionTypeVSCode, SessionTypeJetBrains, SessionTypeSFTP} {
		st.Sessions[t] = s.sessionCounter(t).Load()
	}
	return st
}

func (s *Server) sessionCounter(kind string) *atomic.Int64 {
	v, _ := s.sessions.LoadOrStore(kind, new(atomic.Int64))
	return v.(*atomic.Int64)
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// track registers a goroutine owned by the server; it reports false once the
// server is closed, in which case the goroutine must not start.
func (s *Server) track() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	return true
}

// connCallback registers a new raw connection and starts its keep-alive loop.
func (s *Server) connCallback(ctx ssh.Context, conn net.Conn) net.Conn {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.conns[conn] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	s.conns64.Add(1)
	s.totalConns.Add(1)
	s.logger.Debug("ssh connection", "remote", conn.RemoteAddr())
	go func() {
		defer s.wg.Done()
		defer func() {
			s.mu.Lock()
			delete(s.conns, conn)
			s.mu.Unlock()
			s.conns64.Add(-1)
		}()
		handshake := time.AfterFunc(s.opts.HandshakeTimeout, func() {
			if ctx.Value(ssh.ContextKeyConn) == nil {
				s.logger.Info("closing ssh connection stuck in handshake", "remote", conn.RemoteAddr())
				_ = conn.Close()
			}
		})
		defer handshake.Stop()
		s.keepalive(ctx, conn)
	}()
	return conn
}

// keepalive sends keepalive@openssh.com requests until ctx ends (the
// connection closed) and closes the connection when the peer stops replying.
func (s *Server) keepalive(ctx ssh.Context, raw net.Conn) {
	if s.opts.KeepaliveInterval < 0 {
		<-ctx.Done()
		return
	}
	ticker := time.NewTicker(s.opts.KeepaliveInterval)
	defer ticker.Stop()
	var pending atomic.Bool
	missed := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		conn, _ := ctx.Value(ssh.ContextKeyConn).(*gossh.ServerConn)
		if conn == nil {
			continue // handshake still running; HandshakeTimeout bounds it
		}
		if pending.Load() {
			missed++
			if missed >= s.opts.KeepaliveMax {
				s.logger.Info("closing unresponsive ssh connection", "remote", raw.RemoteAddr(), "missed_keepalives", missed)
				_ = raw.Close()
				return
			}
			continue
		}
		missed = 0
		pending.Store(true)
		// SendRequest returns when the peer replies or the connection closes,
		// so this goroutine ends no later than the connection.
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			_, _, _ = conn.SendRequest("keepalive@openssh.com", true, nil)
			pending.Store(false)
		}()
	}
}

// handleSFTP serves the SFTP subsystem rooted at the agent directory.
func (s *Server) handleSFTP(sess ssh.Session) {
	if !s.track() {
		return
	}
	defer s.wg.Done()
	c := s.sessionCounter(SessionTypeSFTP)
	c.Add(1)
	defer c.Add(-1)
	srv, err := sftp.NewServer(sess, sftp.WithServerWorkingDirectory(s.dir))
	if err != nil {
		s.logger.Warn("start sftp server", "error", err)
		_ = sess.Exit(1)
		return
	}
	defer srv.Close()
	if err := srv.Serve(); err != nil && !errors.Is(err, io.EOF) {
		s.logger.Debug("sftp session ended", "error", err)
		_ = sess.Exit(1)
		return
	}
	_ = sess.Exit(0)
}

// sessionKind classifies a session for the stats.
func sessionKind(env []string, rawCmd string) string {
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		switch {
		case k == "CODER_SSH_SESSION_TYPE" && (v == SessionTypeVSCode || v == SessionTypeJetBrains):
			return v
		case strings.HasPrefix(k, "VSCODE_"):
			return SessionTypeVSCode
		}
	}
	if containsAny(rawCmd, ".vscode-server", "vscode-remote") {
		return SessionTypeVSCode
	}
	if containsAny(rawCmd, "JetBrains", "jetbrains") {
		return SessionTypeJetBrains
	}
	return SessionTypeSSH
}

func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// baseEnv returns the configured environment.
func (s *Server) baseEnv() []string {
	if s.opts.Env != nil {
		return s.opts.Env()
	}
	return os.Environ()
}
