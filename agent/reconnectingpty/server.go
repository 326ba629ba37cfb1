package reconnectingpty

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/creack/pty"
	"github.com/google/uuid"

	"github.com/wgmesh/coder/codersdk/agentproto"
)

// Defaults for Server fields.
const (
	DefaultTimeout         = 5 * time.Minute
	DefaultScrollbackBytes = 64 << 10
)

// exitDrain bounds how long output still buffered in a PTY is forwarded after
// its process exited (background jobs may hold the terminal open).
const exitDrain = 2 * time.Second

// clientQueue is how many output chunks may wait for a slow client before it
// is disconnected (it can reconnect and get the scrollback).
const clientQueue = 256

// Server serves reconnecting PTYs. Set the fields before the first Serve or
// Handle call and do not change them afterwards.
type Server struct {
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
	// Timeout is how long a PTY lives without any attached client; zero
	// means DefaultTimeout.
	Timeout time.Duration
	// ScrollbackBytes bounds the output replayed on reconnect; zero means
	// DefaultScrollbackBytes.
	ScrollbackBytes int
	// Env returns the base environment of new PTYs; nil means os.Environ.
	// TERM=xterm-256color and CODER=true are added.
	Env func() []string
	// Dir is the working directory of new PTYs; empty means the agent's.
	Dir string
	// Shell runs commands (`shell -c command`) and is the login shell when
	// the command is empty; empty means /bin/sh. The agent passes the user's
	// login shell.
	Shell string

	mu        sync.Mutex
	closed    bool
	ptys      map[uuid.UUID]*session
	listeners map[net.Listener]struct{}
	conns     map[net.Conn]struct{}
	wg        sync.WaitGroup
}

// Stats are live counters of a Server.
type Stats struct {
	// Sessions is the number of live PTYs.
	Sessions int
	// Clients is the number of attached client connections.
	Clients int
}

// ErrClosed is returned by Serve and Handle after Close.
var ErrClosed = errors.New("reconnecting pty server closed")

func (s *Server) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

// Serve accepts connections on l and handles each until Close; it closes l
// when it returns. After Close it returns ErrClosed.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		l.Close()
		return ErrClosed
	}
	if s.listeners == nil {
		s.listeners = make(map[net.Listener]struct{})
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
		l.Close()
	}()
	for {
		c, err := l.Accept()
		if err != nil {
			if s.isClosed() {
				return ErrClosed
			}
			return fmt.Errorf("accept: %w", err)
		}
		if !s.track() {
			c.Close()
			return ErrClosed
		}
		go func() {
			defer s.wg.Done()
			if err := s.Handle(c); err != nil && !errors.Is(err, ErrClosed) {
				s.logger().Debug("reconnecting pty connection ended", "remote", c.RemoteAddr(), "error", err)
			}
		}()
	}
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func (s *Server) track() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	return true
}

// Close closes listeners and client connections, kills every PTY and waits
// for all goroutines of the server to end.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for l := range s.listeners {
		l.Close()
	}
	for c := range s.conns {
		c.Close()
	}
	ptys := make([]*session, 0, len(s.ptys))
	for _, p := range s.ptys {
		ptys = append(ptys, p)
	}
	s.mu.Unlock()
	for _, p := range ptys {
		p.kill()
	}
	s.wg.Wait()
	return nil
}

// Stats returns live counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{Sessions: len(s.ptys)}
	for _, p := range s.ptys {
		p.mu.Lock()
		st.Clients += len(p.clients)
		p.mu.Unlock()
	}
	return st
}

// Handle serves one client connection until it disconnects or its PTY
// exits, and closes conn.
func (s *Server) Handle(conn net.Conn) error {
	defer conn.Close()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	if s.conns == nil {
		s.conns = make(map[net.Conn]struct{})
	}
	s.conns[conn] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, conn)
		s.mu.Unlock()
	}()

	typ, payload, err := agentproto.ReadPTYFrame(conn)
	if err != nil {
		return fmt.Errorf("read init frame: %w", err)
	}
	var req agentproto.PTYInit
	if typ != agentproto.PTYFrameInit {
		err = fmt.Errorf("first frame has type %d, want init", typ)
	} else if err = json.Unmarshal(payload, &req); err != nil {
		err = fmt.Errorf("decode init frame: %w", err)
	} else if req.ID == uuid.Nil {
		err = errors.New("init frame without id")
	}
	if err != nil {
		_ = agentproto.WritePTYFrame(conn, agentproto.PTYFrameError, []byte(err.Error()))
		return err
	}
	p, err := s.session(req)
	if err != nil {
		_ = agentproto.WritePTYFrame(conn, agentproto.PTYFrameError, []byte(err.Error()))
		return err
	}
	return p.serve(conn, req)
}

// session returns the PTY with req.ID, starting it when it does not exist.
func (s *Server) session(req agentproto.PTYInit) (*session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if p, ok := s.ptys[req.ID]; ok {
		return p, nil
	}
	p, err := s.start(req)
	if err != nil {
		return nil, err
	}
	if s.ptys == nil {
		s.ptys = make(map[uuid.UUID]*session)
	}
	s.ptys[req.ID] = p
	return p, nil
}

// start launches a new PTY; s.mu is held.
func (s *Server) start(req agentproto.PTYInit) (*session, error) {
	shell := s.Shell
	if shell == "" {
		shell = "/bin/sh"
	}
	var cmd *exec.Cmd
	if req.Command != "" {
		cmd = exec.Command(shell, "-c", req.Command)
	} else {
		cmd = exec.Command(shell)
		cmd.Args[0] = "-" + filepath.Base(shell)
	}
	env := os.Environ()
	if s.Env != nil {
		env = s.Env()
	}
	cmd.Env = append(append([]string(nil), env...), "TERM=xterm-256color", "CODER=true")
	cmd.Dir = s.Dir
	ptmx, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: orDefault(req.Height, 24), Cols: orDefault(req.Width, 80)})
	if err != nil {
		return nil, fmt.Errorf("start pty: %w", err)
	}
	scroll := s.ScrollbackBytes
	if scroll <= 0 {
		scroll = DefaultScrollbackBytes
	}
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	p := &session{
		id:      req.ID,
		srv:     s,
		cmd:     cmd,
		ptmx:    ptmx,
		scroll:  newRing(scroll),
		clients: make(map[*client]struct{}),
		timeout: timeout,
		done:    make(chan struct{}),
		logger:  s.logger().With("pty_id", req.ID.String()),
	}
	p.logger.Info("reconnecting pty started", "command", req.Command, "pid", cmd.Process.Pid)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		p.run()
	}()
	return p, nil
}

// remove forgets p once it has ended.
func (s *Server) remove(p *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ptys[p.id] == p {
		delete(s.ptys, p.id)
	}
}

func orDefault(v, def uint16) uint16 {
	if v == 0 {
		return def
	}
	return v
}

// session is one PTY and its attached clients.
type session struct {
	id      uuid.UUID
	srv     *Server
	cmd     *exec.Cmd
	ptmx    *os.File
	timeout time.Duration
	logger  *slog.Logger
	done    chan struct{} // closed when the process ended and output drained

	fdMu       sync.Mutex // serialises resizes with closing ptmx
	ptmxClosed bool

	mu       sync.Mutex
	scroll   *ring
	clients  map[*client]struct{}
	idle     *time.Timer
	exitCode int
	ended    bool
}

// client is one attached connection with its output queue.
type client struct {
	conn net.Conn
	out  chan []byte
	once sync.Once
}

func (c *client) close() { c.once.Do(func() { close(c.out) }) }

// run copies PTY output to the scrollback and the clients, reaps the process
// and finally tells every client the exit code.
func (p *session) run() {
	outDone := make(chan struct{})
	go func() {
		defer close(outDone)
		buf := make([]byte, 32<<10)
		for {
			n, err := p.ptmx.Read(buf)
			if n > 0 {
				p.broadcast(buf[:n])
			}
			if err != nil {
				return // EIO once no process holds the terminal
			}
		}
	}()
	p.mu.Lock()
	p.armIdleLocked() // until the first client attaches
	p.mu.Unlock()
	err := p.cmd.Wait()
	code := p.cmd.ProcessState.ExitCode()
	if err != nil && p.cmd.ProcessState == nil {
		code = -1
	}
	drain := time.NewTimer(exitDrain)
	select {
	case <-outDone:
	case <-drain.C:
	}
	drain.Stop()
	p.fdMu.Lock()
	p.ptmxClosed = true
	_ = p.ptmx.Close()
	p.fdMu.Unlock()
	<-outDone
	p.srv.remove(p)
	p.mu.Lock()
	p.ended = true
	p.exitCode = code
	if p.idle != nil {
		p.idle.Stop()
	}
	exit, _ := json.Marshal(agentproto.PTYExit{ExitCode: code})
	for c := range p.clients {
		select {
		case c.out <- append([]byte{agentproto.PTYFrameExit}, exit...):
		default:
		}
		c.close()
	}
	p.mu.Unlock()
	close(p.done)
	p.logger.Info("reconnecting pty exited", "exit_code", code)
}

// broadcast records output and queues it for every client.
func (p *session) broadcast(b []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.scroll.Write(b)
	for c := range p.clients {
		chunk := append([]byte{agentproto.PTYFrameData}, b...)
		select {
		case c.out <- chunk:
		default:
			p.logger.Info("dropping slow reconnecting pty client", "remote", c.conn.RemoteAddr())
			delete(p.clients, c)
			c.close()
			_ = c.conn.Close()
			p.armIdleLocked()
		}
	}
}

// armIdleLocked starts the idle reaper when no client is attached.
func (p *session) armIdleLocked() {
	if p.ended || len(p.clients) > 0 {
		return
	}
	if p.idle != nil {
		p.idle.Stop()
	}
	p.idle = time.AfterFunc(p.timeout, func() {
		p.mu.Lock()
		idle := len(p.clients) == 0 && !p.ended
		p.mu.Unlock()
		if idle {
			p.logger.Info("reaping idle reconnecting pty", "timeout", p.timeout)
			p.kill()
		}
	})
}

// kill ends the process group of the PTY; run reaps it.
func (p *session) kill() {
	// Signal the leader through os.Process first: it refuses once the
	// process was reaped, so the group kill never hits a recycled PID.
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
}

// serve attaches conn to the PTY until either ends.
func (p *session) serve(conn net.Conn, req agentproto.PTYInit) error {
	c := &client{conn: conn, out: make(chan []byte, clientQueue)}
	p.mu.Lock()
	if p.ended {
		p.mu.Unlock()
		exit, _ := json.Marshal(agentproto.PTYExit{ExitCode: p.exitCode})
		return agentproto.WritePTYFrame(conn, agentproto.PTYFrameExit, exit)
	}
	if sb := p.scroll.Bytes(); len(sb) > 0 {
		c.out <- append([]byte{agentproto.PTYFrameData}, sb...)
	}
	p.clients[c] = struct{}{}
	if p.idle != nil {
		p.idle.Stop()
	}
	p.mu.Unlock()
	_ = p.resize(req.Height, req.Width)

	writerDone := make(chan struct{})
	go func() { // owned by serve: ends when c.out closes or a write fails
		defer close(writerDone)
		for chunk := range c.out {
			if err := agentproto.WritePTYFrame(conn, chunk[0], chunk[1:]); err != nil {
				_ = conn.Close()
				for range c.out { // drain until detached
				}
				return
			}
		}
		_ = conn.Close() // process exited: the exit frame was the last
	}()

	err := p.readInput(conn)
	p.mu.Lock()
	if _, ok := p.clients[c]; ok {
		delete(p.clients, c)
		c.close()
		p.armIdleLocked()
	}
	p.mu.Unlock()
	<-writerDone
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}

// readInput applies client frames to the PTY until the connection ends.
func (p *session) readInput(conn net.Conn) error {
	for {
		typ, payload, err := agentproto.ReadPTYFrame(conn)
		if err != nil {
			return err
		}
		switch typ {
		case agentproto.PTYFrameData:
			if _, err := p.ptmx.Write(payload); err != nil {
				return fmt.Errorf("write pty: %w", err)
			}
		case agentproto.PTYFrameResize:
			var r agentproto.PTYResize
			if err := json.Unmarshal(payload, &r); err != nil {
				return fmt.Errorf("decode resize: %w", err)
			}
			if err := p.resize(r.Height, r.Width); err != nil {
				return err
			}
		default:
			return fmt.Errorf("unexpected frame type %d", typ)
		}
	}
}

// resize sets the terminal size; zero dimensions are ignored.
func (p *session) resize(height, width uint16) error {
	if height == 0 || width == 0 {
		return nil
	}
	p.fdMu.Lock()
	defer p.fdMu.Unlock()
	if p.ptmxClosed {
		return nil
	}
	if err := pty.Setsize(p.ptmx, &pty.Winsize{Rows: height, Cols: width}); err != nil {
		return fmt.Errorf("resize pty: %w", err)
	}
	return nil
}
