package agentssh

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/creack/pty"
	"github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"
)

// killGrace is how long a session's process group has between SIGHUP and
// SIGKILL when its connection goes away.
const killGrace = 2 * time.Second

// ptyDrain bounds how long output still buffered in a PTY is forwarded after
// the session's process exited (background jobs may hold the terminal open).
const ptyDrain = 2 * time.Second

// signals maps SSH signal names (RFC 4254 section 6.10) to syscall signals.
var signals = map[ssh.Signal]syscall.Signal{
	ssh.SIGABRT: syscall.SIGABRT,
	ssh.SIGALRM: syscall.SIGALRM,
	ssh.SIGFPE:  syscall.SIGFPE,
	ssh.SIGHUP:  syscall.SIGHUP,
	ssh.SIGILL:  syscall.SIGILL,
	ssh.SIGINT:  syscall.SIGINT,
	ssh.SIGKILL: syscall.SIGKILL,
	ssh.SIGPIPE: syscall.SIGPIPE,
	ssh.SIGQUIT: syscall.SIGQUIT,
	ssh.SIGSEGV: syscall.SIGSEGV,
	ssh.SIGTERM: syscall.SIGTERM,
	ssh.SIGUSR1: syscall.SIGUSR1,
	ssh.SIGUSR2: syscall.SIGUSR2,
}

// signalName returns the SSH name of sig ("TERM" for SIGTERM).
func signalName(sig syscall.Signal) string {
	for name, s := range signals {
		if s == sig {
			return string(name)
		}
	}
	return "SIG" + strconv.Itoa(int(sig))
}

// handleSession runs a shell or exec request.
func (s *Server) handleSession(sess ssh.Session) {
	if !s.track() {
		_ = sess.Exit(255)
		return
	}
	defer s.wg.Done()
	logger := s.logger.With("remote", sess.RemoteAddr(), "command", sess.RawCommand())

	kind := sessionKind(sess.Environ(), sess.RawCommand())
	counter := s.sessionCounter(kind)
	counter.Add(1)
	defer counter.Add(-1)

	ptyState := sessionPty(sess)
	term, _, isPty := ptyState.get()
	cmd, cleanup, err := s.command(sess, term, isPty)
	if err != nil {
		logger.Warn("prepare session", "error", err)
		_, _ = fmt.Fprintf(sess.Stderr(), "coder agent: %v\r\n", err)
		_ = sess.Exit(255)
		return
	}
	defer cleanup()

	var state *os.ProcessState
	if isPty {
		state, err = s.runPty(sess, cmd, ptyState)
	} else {
		state, err = s.runExec(sess, cmd)
	}
	if err != nil {
		logger.Warn("run session", "error", err)
		_, _ = fmt.Fprintf(sess.Stderr(), "coder agent: %v\r\n", err)
		_ = sess.Exit(255)
		return
	}
	ws, _ := state.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		logger.Debug("session process killed", "signal", ws.Signal().String())
		msg := struct {
			Signal     string
			CoreDumped bool
			Error      string
			Lang       string
		}{Signal: signalName(ws.Signal()), CoreDumped: ws.CoreDump()}
		_, _ = sess.SendRequest("exit-signal", false, gossh.Marshal(&msg))
		_ = sess.Close()
		return
	}
	logger.Debug("session exited", "code", state.ExitCode())
	_ = sess.Exit(state.ExitCode())
}

// command builds the process of a session and returns a cleanup function
// releasing per-session resources (the agent-forwarding socket).
func (s *Server) command(sess ssh.Session, term string, isPty bool) (*exec.Cmd, func(), error) {
	var cmd *exec.Cmd
	if raw := sess.RawCommand(); raw != "" {
		cmd = exec.Command(s.shell, "-c", raw)
	} else {
		cmd = exec.Command(s.shell)
		cmd.Args[0] = "-" + filepath.Base(s.shell) // login shell, like OpenSSH
	}
	cmd.Dir = s.dir
	env := append([]string(nil), s.baseEnv()...)
	path := os.Getenv("PATH")
	if path == "" {
		path = DefaultPath
	}
	env = append(env,
		"CODER=true",
		"USER="+s.ident.Username,
		"LOGNAME="+s.ident.Username,
		"HOME="+s.ident.Home,
		"SHELL="+s.shell,
		"PATH="+path,
	)
	env = append(env, sess.Environ()...)
	if isPty {
		env = append(env, "TERM="+term)
	}
	rHost, rPort := splitAddr(sess.RemoteAddr())
	lHost, lPort := splitAddr(sess.LocalAddr())
	env = append(env,
		fmt.Sprintf("SSH_CLIENT=%s %s %s", rHost, rPort, lPort),
		fmt.Sprintf("SSH_CONNECTION=%s %s %s %s", rHost, rPort, lHost, lPort),
	)
	cleanup := func() {}
	if ssh.AgentRequested(sess) {
		l, err := ssh.NewAgentListener()
		if err != nil {
			return nil, nil, fmt.Errorf("agent forwarding socket: %w", err)
		}
		sock := l.Addr().String()
		env = append(env, "SSH_AUTH_SOCK="+sock)
		done := make(chan struct{})
		go func() {
			defer close(done)
			ssh.ForwardAgentConnections(l, sess)
		}()
		cleanup = func() {
			_ = l.Close()
			<-done
			_ = os.RemoveAll(filepath.Dir(sock))
		}
	}
	cmd.Env = env
	return cmd, cleanup, nil
}

func splitAddr(a net.Addr) (host, port string) {
	h, p, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String(), "0"
	}
	return h, p
}

// runExec runs cmd without a terminal: stdout and stderr are separate
// streams, stdin is the channel.
func (s *Server) runExec(sess ssh.Session, cmd *exec.Cmd) (*os.ProcessState, error) {
	cmd.Stdout = sess
	cmd.Stderr = sess.Stderr()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("stdin pipe: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", s.shell, err)
	}
	// The copy ends when the client closes its side (EOF) or the process
	// closed its stdin (write error); the channel closes with the session.
	go func() {
		_, _ = io.Copy(stdin, sess)
		_ = stdin.Close()
	}()
	stop := s.supervise(sess, cmd.Process)
	err = cmd.Wait()
	stop()
	return processState(cmd, err)
}

// runPty runs cmd on a new pseudo-terminal sized like the client's.
func (s *Server) runPty(sess ssh.Session, cmd *exec.Cmd, ptyState *ptyInfo) (*os.ProcessState, error) {
	ptmx, tty, err := pty.Open()
	if err != nil {
		return nil, fmt.Errorf("open pty: %w", err)
	}
	defer ptmx.Close()
	cmd.Env = append(cmd.Env, "SSH_TTY="+tty.Name())
	_, win, _ := ptyState.get()
	_ = pty.Setsize(ptmx, winsize(win))
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	err = cmd.Start()
	_ = tty.Close()
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", s.shell, err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	exited := make(chan struct{})
	go func() { // window changes until the process exits
		defer wg.Done()
		for {
			select {
			case <-ptyState.resize:
				_, w, _ := ptyState.get()
				_ = pty.Setsize(ptmx, winsize(w))
			case <-exited:
				return
			}
		}
	}()
	go func() { _, _ = io.Copy(ptmx, sess) }() // ends when ptmx closes or the client EOFs
	outDone := make(chan struct{})
	go func() {
		defer close(outDone)
		_, _ = io.Copy(sess, ptmx) // ends with EIO once no process holds the tty
	}()
	stop := s.supervise(sess, cmd.Process)
	waitErr := cmd.Wait()
	stop()
	drain := time.NewTimer(ptyDrain)
	select {
	case <-outDone:
	case <-drain.C:
	case <-sess.Context().Done():
	}
	drain.Stop()
	close(exited)
	wg.Wait() // no resize may race with closing the terminal
	_ = ptmx.Close()
	<-outDone
	return processState(cmd, waitErr)
}

func winsize(w ssh.Window) *pty.Winsize {
	return &pty.Winsize{Rows: uint16(w.Height), Cols: uint16(w.Width)}
}

func processState(cmd *exec.Cmd, err error) (*os.ProcessState, error) {
	if cmd.ProcessState != nil {
		return cmd.ProcessState, nil
	}
	return nil, fmt.Errorf("wait: %w", err)
}

// supervise forwards client signals to proc and, when the connection goes
// away, hangs up the process group (SIGHUP, then SIGKILL after killGrace).
// The returned function stops supervision; call it once proc has exited.
func (s *Server) supervise(sess ssh.Session, proc *os.Process) func() {
	sigCh := make(chan ssh.Signal, 1)
	sess.Signals(sigCh)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		ctxDone := sess.Context().Done()
		var kill <-chan time.Time
		for {
			select {
			case sig := <-sigCh:
				if ss, ok := signals[sig]; ok {
					_ = proc.Signal(ss)
				}
			case <-ctxDone:
				ctxDone = nil
				_ = syscall.Kill(-proc.Pid, syscall.SIGHUP)
				_ = syscall.Kill(-proc.Pid, syscall.SIGCONT)
				t := time.NewTimer(killGrace)
				defer t.Stop()
				kill = t.C
			case <-kill:
				kill = nil
				_ = syscall.Kill(-proc.Pid, syscall.SIGKILL)
			case <-stop:
				return
			}
		}
	}()
	return func() {
		// Unregister while the loop still drains sigCh: gliderlabs delivers
		// signals while holding the session lock.
		sess.Signals(nil)
		close(stop)
		<-done
	}
}
