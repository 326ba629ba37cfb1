package agentssh

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pkg/sftp"
	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// testServer is a running Server on a loopback TCP listener.
type testServer struct {
	srv  *Server
	addr string
	port string
	dir  string
}

func startServer(t testing.TB, opts Options) *testServer {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	srv, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := <-served; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return &testServer{srv: srv, addr: l.Addr().String(), port: port, dir: opts.Dir}
}

// clientKey writes a fresh ed25519 private key for the OpenSSH client.
func clientKey(t testing.TB) string {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := gossh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "id_ed25519")
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func requireBinary(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found (install openssh-client): %v", name, err)
	}
	return p
}

// sshArgs are the OpenSSH options every test uses.
func sshArgs(key string) []string {
	return []string{
		"-F", "/dev/null",
		"-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null",
		"-o", "BatchMode=yes",
		"-o", "LogLevel=ERROR",
		"-o", "IdentitiesOnly=yes",
		"-i", key,
	}
}

// opensshCmd builds an ssh command line against ts.
func opensshCmd(t testing.TB, ctx context.Context, ts *testServer, key string, extra ...string) *exec.Cmd {
	t.Helper()
	args := append(sshArgs(key), "-p", ts.port)
	args = append(args, extra...)
	return exec.CommandContext(ctx, requireBinary(t, "ssh"), args...)
}

func testContext(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// dialClient connects with the x/crypto client.
func dialClient(t testing.TB, ts *testServer) *gossh.Client {
	t.Helper()
	c, err := gossh.Dial("tcp", ts.addr, &gossh.ClientConfig{
		User:            "coder",
		HostKeyCallback: gossh.InsecureIgnoreHostKey(),
	})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestExecExitCodesAndStderr(t *testing.T) {
	t.Parallel()
	ts := startServer(t, Options{})
	key := clientKey(t)
	tests := []struct {
		name, command  string
		code           int
		stdout, stderr string
	}{
		{"success", "echo ok", 0, "ok\n", ""},
		{"failure", "exit 1", 1, "", ""},
		{"answer", "echo out; echo err >&2; exit 42", 42, "out\n", "err\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			cmd := opensshCmd(t, testContext(t), ts, key, "127.0.0.1", tt.command)
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatalf("ssh: %v", err)
			}
			if code != tt.code {
				t.Errorf("exit code = %d, want %d (stderr %q)", code, tt.code, stderr.String())
			}
			if stdout.String() != tt.stdout || stderr.String() != tt.stderr {
				t.Errorf("stdout %q stderr %q, want %q %q", stdout.String(), stderr.String(), tt.stdout, tt.stderr)
			}
		})
	}
}

func TestExitSignal(t *testing.T) {
	t.Parallel()
	ts := startServer(t, Options{})
	c := dialClient(t, ts)

	t.Run("killed", func(t *testing.T) {
		sess, err := c.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		defer sess.Close()
		err = sess.Run("kill -KILL $$")
		var ee *gossh.ExitError
		if !errors.As(err, &ee) || ee.Signal() != "KILL" {
			t.Fatalf("Run = %v, want exit-signal KILL", err)
		}
	})
	t.Run("client signal forwarded", func(t *testing.T) {
		sess, err := c.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		defer sess.Close()
		out, err := sess.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := sess.Start("echo ready; exec sleep 600"); err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil || line != "ready\n" {
			t.Fatalf("read %q, %v", line, err)
		}
		if err := sess.Signal(gossh.SIGTERM); err != nil {
			t.Fatal(err)
		}
		err = sess.Wait()
		var ee *gossh.ExitError
		if !errors.As(err, &ee) || ee.Signal() != "TERM" {
			t.Fatalf("Wait = %v, want exit-signal TERM", err)
		}
	})
}

// syncBuffer is a goroutine-safe output collector.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestPTYAndResize(t *testing.T) {
	t.Parallel()
	ts := startServer(t, Options{Shell: "/bin/bash"})
	c := dialClient(t, ts)
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	if err := sess.RequestPty("xterm", 40, 80, gossh.TerminalModes{}); err != nil {
		t.Fatal(err)
	}
	stdin, err := sess.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out syncBuffer
	sess.Stdout = &out
	if err := sess.Shell(); err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(stdin, "stty size; echo \"tty=$SSH_TTY term=$TERM\"\n")
	eventually(t, "stty size 40 80", func() bool { return strings.Contains(out.String(), "40 80\r\n") })
	eventually(t, "SSH_TTY", func() bool { return regexp.MustCompile(`tty=/dev/pts/\d+ term=xterm`).MatchString(out.String()) })
	if err := sess.WindowChange(50, 120); err != nil {
		t.Fatal(err)
	}
	// The window change (a channel request) and the typed command (channel
	// data) travel separately, so under load the shell can run stty before
	// the resize lands: ask again every half second until it shows.
	polls := 0
	eventually(t, "stty size 50 120", func() bool {
		if strings.Contains(out.String(), "50 120\r\n") {
			return true
		}
		if polls%50 == 0 {
			fmt.Fprint(stdin, "stty size\n")
		}
		polls++
		return false
	})
	fmt.Fprint(stdin, "exit 7\n")
	err = sess.Wait()
	var ee *gossh.ExitError
	if !errors.As(err, &ee) || ee.ExitStatus() != 7 {
		t.Fatalf("Wait = %v, want exit status 7", err)
	}
}

func TestEnvironment(t *testing.T) {
	t.Parallel()
	ts := startServer(t, Options{Env: func() []string {
		return []string{"CUSTOM=from-manifest", "CODER_WORKSPACE_NAME=ws1"}
	}})
	key := clientKey(t)
	var stdout bytes.Buffer
	cmd := opensshCmd(t, testContext(t), ts, key, "-o", "SetEnv=FROM_CLIENT=hello",
		"127.0.0.1", `echo "$CODER|$CUSTOM|$CODER_WORKSPACE_NAME|$FROM_CLIENT|$USER|$HOME|$SHELL|$PWD"; echo "$SSH_CONNECTION"; echo "$SSH_CLIENT"; echo "$PATH"`)
	cmd.Stdout = &stdout
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("ssh: %v", err)
	}
	ident, err := currentIdentity()
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("output %q", stdout.String())
	}
	want := strings.Join([]string{"true", "from-manifest", "ws1", "hello", ident.Username, ident.Home, UserShell(ident.Username), ts.dir}, "|")
	if lines[0] != want {
		t.Errorf("env line = %q, want %q", lines[0], want)
	}
	if !regexp.MustCompile(`^127\.0\.0\.1 \d+ 127\.0\.0\.1 ` + ts.port + `$`).MatchString(lines[1]) {
		t.Errorf("SSH_CONNECTION = %q", lines[1])
	}
	if !regexp.MustCompile(`^127\.0\.0\.1 \d+ ` + ts.port + `$`).MatchString(lines[2]) {
		t.Errorf("SSH_CLIENT = %q", lines[2])
	}
	if lines[3] == "" {
		t.Errorf("PATH empty")
	}
}

func writeRandomFile(t testing.TB, path string, size int) [32]byte {
	t.Helper()
	data := make([]byte, size)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(data)
}

func fileSum(t testing.TB, path string) [32]byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(data)
}

func TestSFTPAndSCP(t *testing.T) {
	t.Parallel()
	ts := startServer(t, Options{})
	key := clientKey(t)
	local := t.TempDir()
	src := filepath.Join(local, "src.bin")
	want := writeRandomFile(t, src, 10<<20)

	t.Run("sftp batch", func(t *testing.T) {
		batch := filepath.Join(local, "batch")
		back := filepath.Join(local, "sftp-back.bin")
		if err := os.WriteFile(batch, []byte(fmt.Sprintf("put %s uploaded.bin\nget uploaded.bin %s\n", src, back)), 0o600); err != nil {
			t.Fatal(err)
		}
		args := append(sshArgs(key), "-P", ts.port, "-b", batch, "127.0.0.1")
		out, err := exec.CommandContext(testContext(t), requireBinary(t, "sftp"), args...).CombinedOutput()
		if err != nil {
			t.Fatalf("sftp: %v\n%s", err, out)
		}
		// Relative paths resolve in the agent directory.
		if got := fileSum(t, filepath.Join(ts.dir, "uploaded.bin")); got != want {
			t.Error("uploaded file differs")
		}
		if got := fileSum(t, back); got != want {
			t.Error("downloaded file differs")
		}
	})
	for _, mode := range []struct{ name, flag string }{{"scp sftp protocol", "-s"}, {"scp legacy protocol", "-O"}} {
		t.Run(mode.name, func(t *testing.T) {
			remote := "scp" + mode.flag + ".bin"
			back := filepath.Join(local, "back"+mode.flag+".bin")
			scp := requireBinary(t, "scp")
			for _, dir := range [][2]string{{src, "127.0.0.1:" + remote}, {"127.0.0.1:" + remote, back}} {
				args := append(sshArgs(key), mode.flag, "-P", ts.port, dir[0], dir[1])
				out, err := exec.CommandContext(testContext(t), scp, args...).CombinedOutput()
				if err != nil {
					t.Fatalf("scp %v: %v\n%s", dir, err, out)
				}
			}
			if got := fileSum(t, filepath.Join(ts.dir, remote)); got != want {
				t.Error("uploaded file differs")
			}
			if got := fileSum(t, back); got != want {
				t.Error("downloaded file differs")
			}
		})
	}
}

// echoServer echoes every TCP connection until the test ends.
func echoServer(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return l.Addr().String()
}

// roundTrip sends n random bytes to addr and checks they come back.
func roundTrip(t testing.TB, addr string, n int) error {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	data := make([]byte, n)
	_, _ = rand.Read(data)
	errc := make(chan error, 1)
	go func() { _, err := c.Write(data); errc <- err }()
	got := make([]byte, n)
	if _, err := io.ReadFull(c, got); err != nil {
		return fmt.Errorf("read echo: %w", err)
	}
	if err := <-errc; err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if !bytes.Equal(got, data) {
		return errors.New("echoed bytes differ")
	}
	return nil
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startBackground starts an OpenSSH process that the test stops at cleanup.
func startBackground(t testing.TB, cmd *exec.Cmd) {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
}

func TestLocalForward(t *testing.T) {
	t.Parallel()
	ts := startServer(t, Options{})
	echo := echoServer(t)
	port := freePort(t)
	cmd := opensshCmd(t, testContext(t), ts, clientKey(t), "-N", "-o", "ExitOnForwardFailure=yes",
		"-L", fmt.Sprintf("127.0.0.1:%d:%s", port, echo), "127.0.0.1")
	cmd.Stderr = os.Stderr
	startBackground(t, cmd)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	eventually(t, "local forward listening", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	if err := roundTrip(t, addr, 1<<20); err != nil {
		t.Fatal(err)
	}
}

func TestRemoteForward(t *testing.T) {
	t.Parallel()
	ts := startServer(t, Options{})
	echo := echoServer(t)
	// OpenSSH keeps the first value of an option: LogLevel=INFO goes first.
	args := append([]string{"-o", "LogLevel=INFO"}, sshArgs(clientKey(t))...)
	args = append(args, "-p", ts.port, "-N", "-o", "ExitOnForwardFailure=yes", "-R", "0:"+echo, "127.0.0.1")
	cmd := exec.CommandContext(testContext(t), requireBinary(t, "ssh"), args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	startBackground(t, cmd)
	// OpenSSH prints the port the server bound for "-R 0:...".
	re := regexp.MustCompile(`Allocated port (\d+) for remote forward`)
	sc := bufio.NewScanner(stderr)
	var port string
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			port = m[1]
			break
		}
	}
	if port == "" {
		t.Fatalf("no allocated port reported: %v", sc.Err())
	}
	go func() { _, _ = io.Copy(io.Discard, stderr) }()
	if err := roundTrip(t, net.JoinHostPort("127.0.0.1", port), 1<<20); err != nil {
		t.Fatal(err)
	}
}

func TestAgentForwarding(t *testing.T) {
	t.Parallel()
	ts := startServer(t, Options{})
	keyring := agent.NewKeyring()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	if err := keyring.Add(agent.AddedKey{PrivateKey: priv, Comment: "forwarded-test-key"}); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = agent.ServeAgent(keyring, c)
			}()
		}
	}()
	var stdout bytes.Buffer
	cmd := opensshCmd(t, testContext(t), ts, clientKey(t), "-A", "127.0.0.1", `echo "sock=$SSH_AUTH_SOCK"; ssh-add -l`)
	cmd.Env = append(os.Environ(), "SSH_AUTH_SOCK="+sock)
	cmd.Stdout = &stdout
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("ssh -A: %v\n%s", err, stdout.String())
	}
	out := stdout.String()
	m := regexp.MustCompile(`sock=(\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no SSH_AUTH_SOCK in %q", out)
	}
	if !strings.Contains(out, "forwarded-test-key") {
		t.Errorf("ssh-add -l did not list the forwarded key: %q", out)
	}
	// The socket and its directory are removed with the session.
	eventually(t, "agent socket removed", func() bool {
		_, err := os.Stat(filepath.Dir(m[1]))
		return errors.Is(err, os.ErrNotExist)
	})
}

func TestHostKeyStable(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "keys", "host_ed25519")
	var keys []string
	for i := 0; i < 2; i++ {
		ts := startServer(t, Options{HostKeyPath: path})
		var seen gossh.PublicKey
		c, err := gossh.Dial("tcp", ts.addr, &gossh.ClientConfig{
			User: "x",
			HostKeyCallback: func(_ string, _ net.Addr, key gossh.PublicKey) error {
				seen = key
				return nil
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		if !bytes.Equal(seen.Marshal(), ts.srv.HostKey().Marshal()) {
			t.Fatal("served key differs from HostKey()")
		}
		keys = append(keys, string(seen.Marshal()))
		if err := ts.srv.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if keys[0] != keys[1] {
		t.Error("host key changed between server instances")
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("host key mode = %v, want 0600", st.Mode().Perm())
	}
}

func TestKeepalive(t *testing.T) {
	t.Parallel()
	// Generous limits: a loaded machine must not make a live client look dead.
	ts := startServer(t, Options{KeepaliveInterval: 100 * time.Millisecond, KeepaliveMax: 5, HandshakeTimeout: time.Minute})
	dial := func() (gossh.Conn, <-chan gossh.NewChannel, <-chan *gossh.Request) {
		raw, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		conn, chans, reqs, err := gossh.NewClientConn(raw, ts.addr, &gossh.ClientConfig{
			User: "x", HostKeyCallback: gossh.InsecureIgnoreHostKey(),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn, chans, reqs
	}

	t.Run("responsive client stays", func(t *testing.T) {
		conn, chans, reqs := dial()
		for i := 0; i < 10; i++ {
			req := <-reqs
			if req == nil || req.Type != "keepalive@openssh.com" {
				t.Fatalf("request %d = %v", i, req)
			}
			_ = req.Reply(false, nil) // what OpenSSH answers
		}
		sess, err := gossh.NewClient(conn, chans, reqs).NewSession()
		if err != nil {
			t.Fatalf("connection unusable after keep-alives: %v", err)
		}
		if err := sess.Run("true"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("stalled handshake closed", func(t *testing.T) {
		ts := startServer(t, Options{HandshakeTimeout: 100 * time.Millisecond})
		raw, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		_ = raw.SetReadDeadline(time.Now().Add(30 * time.Second))
		// The server sends its version line, then gives up on the silent client.
		data, err := io.ReadAll(raw)
		if err != nil {
			t.Fatalf("connection not closed by the server: %v", err)
		}
		if !strings.HasPrefix(string(data), "SSH-2.0-") {
			t.Errorf("server said %q", data)
		}
	})
	t.Run("dead client closed", func(t *testing.T) {
		conn, _, _ := dial() // requests are never answered
		waited := make(chan error, 1)
		go func() { waited <- conn.Wait() }()
		select {
		case <-waited:
		case <-time.After(30 * time.Second):
			t.Fatal("server did not close the unresponsive connection")
		}
	})
}

func TestConnStatsAndClose(t *testing.T) {
	t.Parallel()
	ts := startServer(t, Options{})
	c := dialClient(t, ts)
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	out, _ := sess.StdoutPipe()
	if err := sess.Start("echo started; sleep 600"); err != nil {
		t.Fatal(err)
	}
	if _, err := bufio.NewReader(out).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	st := ts.srv.ConnStats()
	if st.Conns != 1 || st.Sessions[SessionTypeSSH] != 1 || st.TotalConns != 1 {
		t.Errorf("stats = %+v", st)
	}
	vs, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if err := vs.Setenv("VSCODE_IPC_HOOK_CLI", "x"); err != nil {
		t.Fatal(err)
	}
	vout, _ := vs.StdoutPipe()
	if err := vs.Start("echo started; sleep 600"); err != nil {
		t.Fatal(err)
	}
	if _, err := bufio.NewReader(vout).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	if got := ts.srv.ConnStats().Sessions[SessionTypeVSCode]; got != 1 {
		t.Errorf("vscode sessions = %d", got)
	}
	// Close ends the sessions (the sleeps are hung up) and the connection.
	if err := ts.srv.Close(); err != nil {
		t.Fatal(err)
	}
	_ = sess.Wait()
	st = ts.srv.ConnStats()
	if st.Conns != 0 || st.Sessions[SessionTypeSSH] != 0 || st.Sessions[SessionTypeVSCode] != 0 {
		t.Errorf("stats after close = %+v", st)
	}
}

func BenchmarkSessionSetup(b *testing.B) {
	ts := startServer(b, Options{})
	cfg := &gossh.ClientConfig{User: "x", HostKeyCallback: gossh.InsecureIgnoreHostKey()}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c, err := gossh.Dial("tcp", ts.addr, cfg)
		if err != nil {
			b.Fatal(err)
		}
		sess, err := c.NewSession()
		if err != nil {
			b.Fatal(err)
		}
		if err := sess.Run("true"); err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}

func BenchmarkSFTPThroughput(b *testing.B) {
	ts := startServer(b, Options{})
	cfg := &gossh.ClientConfig{User: "x", HostKeyCallback: gossh.InsecureIgnoreHostKey()}
	c, err := gossh.Dial("tcp", ts.addr, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	client, err := sftp.NewClient(c, sftp.UseConcurrentWrites(true))
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	const size = 8 << 20
	data := make([]byte, size)
	_, _ = rand.Read(data)
	b.SetBytes(size)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f, err := client.Create("bench.bin")
		if err != nil {
			b.Fatal(err)
		}
		if _, err := f.ReadFrom(bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
		if err := f.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

func TestRemoteForwardCancel(t *testing.T) {
	t.Parallel()
	ts := startServer(t, Options{})
	c := dialClient(t, ts)
	// x/crypto asks for port 0 and learns the bound port from the reply.
	l, err := c.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if l.Addr().(*net.TCPAddr).Port == 0 {
		t.Fatal("server did not report the bound port")
	}
	accepted := make(chan error, 1)
	go func() {
		conn, err := l.Accept()
		if err == nil {
			_, err = io.Copy(conn, conn)
			conn.Close()
		}
		accepted <- err
	}()
	if err := roundTrip(t, addr, 64<<10); err != nil {
		t.Fatal(err)
	}
	if err := <-accepted; err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil { // cancel-tcpip-forward
		t.Fatal(err)
	}
	eventually(t, "forward listener closed", func() bool {
		conn, err := net.Dial("tcp", addr)
		if err == nil {
			conn.Close()
		}
		return err != nil
	})
}

func TestPTYOutputByteExact(t *testing.T) {
	t.Parallel()
	ts := startServer(t, Options{})
	c := dialClient(t, ts)
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	if err := sess.RequestPty("xterm", 24, 80, gossh.TerminalModes{}); err != nil {
		t.Fatal(err)
	}
	// With ONLCR off the terminal emits bare line feeds; the server must not
	// add carriage returns of its own.
	out, err := sess.Output("stty -onlcr; printf 'a\\nb\\n'")
	if err != nil {
		t.Fatalf("run: %v (%q)", err, out)
	}
	if string(out) != "a\nb\n" {
		t.Errorf("output = %q, want %q", out, "a\nb\n")
	}
}
