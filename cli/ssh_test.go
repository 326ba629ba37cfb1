package cli_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/wgmesh/coder/agent"
	"github.com/wgmesh/coder/cli"
	"github.com/wgmesh/coder/coderd"
	"github.com/wgmesh/coder/coderd/coderdtest"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/codersdk/agentsdk"
	"github.com/wgmesh/coder/database"
	"github.com/wgmesh/coder/tunnel/tunneltest"
)

// reachEnv is a coderd with a DERP relay, a logged-in CLI config and
// workspaces registered through the database layer.
type reachEnv struct {
	t      testing.TB
	client *codersdk.Client
	srv    *coderdtest.Server
	owner  uuid.UUID
	env    []string
	cfgDir string
	home   string
}

func newReachEnv(t testing.TB) *reachEnv {
	t.Helper()
	derpMap := tunneltest.RunDERP(t)
	client, srv := coderdtest.New(t, &coderdtest.Options{API: coderd.Options{Agents: coderd.AgentOptions{
		DERPMap: derpMap, HeartbeatInterval: 500 * time.Millisecond, LogsPollInterval: 50 * time.Millisecond,
	}}})
	first := coderdtest.CreateFirstUser(t, client)
	owner, err := uuid.Parse(first.UserID)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config")
	env := []string{"HOME=" + dir, "CODER_CONFIG_DIR=" + cfg}
	if err := os.MkdirAll(cfg, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]string{"url": client.URL.String(), "session": client.SessionToken()} {
		if err := os.WriteFile(filepath.Join(cfg, name), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	home := strings.TrimPrefix(env[0], "HOME=")
	return &reachEnv{t: t, client: client, srv: srv, owner: owner, env: env, cfgDir: cfg, home: home}
}

// addWorkspace registers a running workspace named name with one agent
// "main" (as a provisioner would) and returns the agent's token.
func (e *reachEnv) addWorkspace(name string) (uuid.UUID, string) {
	t := e.t
	t.Helper()
	ctx := context.Background()
	db := e.srv.DB
	now := time.Now().UTC().Truncate(time.Microsecond)
	file, err := db.InsertFile(ctx, database.InsertFileParams{ID: uuid.New(), Hash: uuid.NewString(), CreatedAt: now, CreatedBy: e.owner, Mimetype: "application/x-tar", Data: []byte{}})
	if err != nil {
		t.Fatal(err)
	}
	newJob := func(typ database.ProvisionerJobType) database.ProvisionerJob {
		job, err := db.InsertProvisionerJob(ctx, database.InsertProvisionerJobParams{
			ID: uuid.New(), CreatedAt: now, UpdatedAt: now, InitiatorID: e.owner, Provisioner: database.ProvisionerTypeTerraform,
			StorageMethod: database.ProvisionerStorageMethodFile, Type: typ, Input: []byte("{}"), FileID: file.ID, Tags: []byte("{}"),
		})
		if err != nil {
			t.Fatal(err)
		}
		return job
	}
	importJob := newJob(database.ProvisionerJobTypeTemplateVersionImport)
	buildJob := newJob(database.ProvisionerJobTypeWorkspaceBuild)
	token := uuid.NewString()
	var agentID uuid.UUID
	err = db.InTx(ctx, func(q *database.Queries) error {
		tv, err := q.InsertTemplateVersion(ctx, database.InsertTemplateVersionParams{ID: uuid.New(), CreatedAt: now, UpdatedAt: now, Name: "v1", JobID: importJob.ID, CreatedBy: e.owner})
		if err != nil {
			return err
		}
		tpl, err := q.InsertTemplate(ctx, database.InsertTemplateParams{ID: uuid.New(), CreatedAt: now, UpdatedAt: now, Name: "tpl-" + name, Provisioner: database.ProvisionerTypeTerraform, ActiveVersionID: tv.ID, CreatedBy: e.owner})
		if err != nil {
			return err
		}
		ws, err := q.InsertWorkspace(ctx, database.InsertWorkspaceParams{ID: uuid.New(), CreatedAt: now, UpdatedAt: now, OwnerID: e.owner, TemplateID: tpl.ID, Name: name, AutomaticUpdates: "never"})
		if err != nil {
			return err
		}
		if _, err := q.InsertWorkspaceBuild(ctx, database.InsertWorkspaceBuildParams{ID: uuid.New(), CreatedAt: now, UpdatedAt: now, WorkspaceID: ws.ID, TemplateVersionID: tv.ID, BuildNumber: 1, Transition: database.WorkspaceTransitionStart, InitiatorID: e.owner, JobID: buildJob.ID, Reason: database.BuildReasonInitiator}); err != nil {
			return err
		}
		res, err := q.InsertWorkspaceResource(ctx, database.InsertWorkspaceResourceParams{ID: uuid.New(), CreatedAt: now, JobID: buildJob.ID, Transition: database.WorkspaceTransitionStart, Type: "null_resource", Name: "dev"})
		if err != nil {
			return err
		}
		ag, err := q.InsertWorkspaceAgent(ctx, database.InsertWorkspaceAgentParams{
			ID: uuid.New(), CreatedAt: now, UpdatedAt: now, Name: "main", ResourceID: res.ID, AuthTokenHash: coderd.HashAgentToken(token),
			Architecture: "amd64", OperatingSystem: "linux", EnvironmentVariables: []byte("{}"), ConnectionTimeoutSeconds: 120, DisplayApps: []byte("{}"),
		})
		if err != nil {
			return err
		}
		agentID = ag.ID
		for _, id := range []uuid.UUID{importJob.ID, buildJob.ID} {
			if _, err := q.UpdateProvisionerJobWithCompleteByID(ctx, database.UpdateProvisionerJobWithCompleteByIDParams{CompletedAt: now, ID: id}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return agentID, token
}

// runAgent runs an in-process agent until the test ends.
func (e *reachEnv) runAgent(token string) {
	t := e.t
	t.Helper()
	a, err := agent.New(agent.Options{
		Client:     agentsdk.New(e.srv.URL, token),
		DataDir:    t.TempDir(),
		Shell:      "/bin/sh",
		BackoffMin: 50 * time.Millisecond,
		BackoffMax: 500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent run: %v", err)
		}
	})
}

// waitConnected polls until the agent is connected.
func (e *reachEnv) waitConnected(id uuid.UUID) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		a, err := e.client.WorkspaceAgent(ctx, id)
		if err == nil && a.Status == codersdk.WorkspaceAgentConnected {
			return
		}
		select {
		case <-ctx.Done():
			e.t.Fatalf("agent %s did not connect: %v", id, err)
		case <-t.C:
		}
	}
}

// startCLI runs the CLI in-process until stop is called; stdout lines are
// delivered on the returned channel.
func startCLI(t *testing.T, env []string, args ...string) (lines <-chan string, stop func() result) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	var stderr bytes.Buffer
	var stdout bytes.Buffer
	var mu sync.Mutex
	ch := make(chan string, 100)
	done := make(chan int, 1)
	go func() {
		code := cli.Run(ctx, cli.Invocation{Args: args, Stdout: pw, Stderr: &lockedWriter{mu: &mu, w: &stderr}, Environ: env})
		_ = pw.Close()
		done <- code
	}()
	scanDone := make(chan struct{})
	go func() {
		defer close(scanDone)
		defer close(ch)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			stdout.WriteString(sc.Text() + "\n")
			select {
			case ch <- sc.Text():
			default:
			}
		}
	}()
	var once sync.Once
	var res result
	stop = func() result {
		once.Do(func() {
			cancel()
			code := <-done
			<-scanDone
			mu.Lock()
			res = result{stdout: stdout.String(), stderr: stderr.String(), code: code}
			mu.Unlock()
		})
		return res
	}
	t.Cleanup(func() { stop() })
	return ch, stop
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// waitLine waits for a line containing substr.
func waitLine(t *testing.T, lines <-chan string, substr string) string {
	t.Helper()
	timer := time.NewTimer(time.Minute)
	defer timer.Stop()
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("output ended before a line with %q", substr)
			}
			if strings.Contains(l, substr) {
				return l
			}
		case <-timer.C:
			t.Fatalf("timed out waiting for a line with %q", substr)
		}
	}
}

// echoServer serves a TCP echo on 127.0.0.1 until the test ends.
func echoServer(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { _ = ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
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
	return ln.Addr().(*net.TCPAddr).Port
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func echoRoundTrip(t *testing.T, addr, msg string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("read echo through %s: %v", addr, err)
	}
	if string(buf) != msg {
		t.Fatalf("echo = %q, want %q", buf, msg)
	}
}

func sha(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// TestReachWorkspace covers coder ssh, config-ssh with the real OpenSSH
// tools, tunnel, ping, speedtest and netcheck against a real coderd,
// PostgreSQL and agent.
func TestReachWorkspace(t *testing.T) {
	t.Parallel()
	bin := buildCoder(t)
	e := newReachEnv(t)
	agentID, token := e.addWorkspace("ws1")
	e.runAgent(token)
	e.addWorkspace("dead") // its agent never connects
	e.waitConnected(agentID)

	t.Run("SSHCommandExitCode", func(t *testing.T) {
		res := runCLI(t, e.env, nil, "ssh", "ws1", "--", "echo", "hello-from-ws")
		if res.code != 0 || strings.TrimSpace(res.stdout) != "hello-from-ws" {
			t.Fatalf("ssh echo: exit %d stdout %q stderr %q", res.code, res.stdout, res.stderr)
		}
		res = runCLI(t, e.env, nil, "ssh", "ws1.main", "-e", "FOO=bar", "--", "echo $FOO; exit 7")
		if res.code != 7 || strings.TrimSpace(res.stdout) != "bar" || res.stderr != "" {
			t.Fatalf("ssh exit 7: exit %d stdout %q stderr %q", res.code, res.stdout, res.stderr)
		}
		res = runCLI(t, e.env, strings.NewReader("from-stdin\n"), "ssh", "ws1", "--", "cat")
		if res.code != 0 || res.stdout != "from-stdin\n" {
			t.Fatalf("ssh cat: exit %d stdout %q stderr %q", res.code, res.stdout, res.stderr)
		}
	})

	t.Run("UnknownWorkspace", func(t *testing.T) {
		res := runCLI(t, e.env, nil, "ssh", "nope", "--", "true")
		lines := strings.Split(strings.TrimSpace(res.stderr), "\n")
		if res.code != 1 || len(lines) != 1 || !strings.Contains(lines[0], `"nope"`) ||
			!strings.Contains(lines[0], "ws1") || !strings.Contains(lines[0], "dead") {
			t.Fatalf("unknown workspace: exit %d stderr %q", res.code, res.stderr)
		}
		res = runCLI(t, e.env, nil, "ssh", "ws1.other", "--", "true")
		if res.code != 1 || !strings.Contains(res.stderr, `no agent "other"`) || !strings.Contains(res.stderr, "main") {
			t.Fatalf("unknown agent: exit %d stderr %q", res.code, res.stderr)
		}
	})

	t.Run("AgentNeverConnects", func(t *testing.T) {
		res := runCLI(t, e.env, nil, "ssh", "dead", "--connect-timeout", "1s", "--", "true")
		if res.code != 1 || !strings.Contains(res.stderr, `agent "main" is not ready after 1s: status connecting, lifecycle created`) ||
			!strings.Contains(res.stderr, "the agent has sent no logs") {
			t.Fatalf("dead agent: exit %d stderr %q", res.code, res.stderr)
		}
	})

	sshConfig := filepath.Join(t.TempDir(), "ssh_config")
	t.Run("ConfigSSH", func(t *testing.T) {
		const outside = "# my settings\nHost other\n  User someone\n"
		if err := os.WriteFile(sshConfig, []byte(outside), 0o600); err != nil {
			t.Fatal(err)
		}
		res := runCLI(t, e.env, nil, "config-ssh", "--ssh-config-file", sshConfig, "--coder-binary-path", bin, "--dry-run")
		if res.code != 0 || !strings.Contains(res.stdout, "+Host coder.*") || !strings.Contains(res.stdout, "Dry run") {
			t.Fatalf("dry run: exit %d stdout %q stderr %q", res.code, res.stdout, res.stderr)
		}
		if b, _ := os.ReadFile(sshConfig); string(b) != outside {
			t.Fatalf("dry run wrote: %q", b)
		}
		// Without -y and without an answer: nothing written.
		res = runCLI(t, e.env, nil, "config-ssh", "--ssh-config-file", sshConfig, "--coder-binary-path", bin)
		if res.code != 1 {
			t.Fatalf("no answer: exit %d", res.code)
		}
		res = runCLI(t, e.env, strings.NewReader("y\n"), "config-ssh", "--ssh-config-file", sshConfig, "--coder-binary-path", bin)
		if res.code != 0 {
			t.Fatalf("config-ssh: exit %d stderr %q", res.code, res.stderr)
		}
		first, _ := os.ReadFile(sshConfig)
		if !strings.HasPrefix(string(first), outside) || !strings.Contains(string(first), "ProxyCommand "+bin+" --global-config "+e.cfgDir+" ssh --stdio") {
			t.Fatalf("config after first run:\n%s", first)
		}
		res = runCLI(t, e.env, nil, "config-ssh", "-y", "--ssh-config-file", sshConfig, "--coder-binary-path", bin)
		if res.code != 0 || !strings.Contains(res.stdout, "No changes") {
			t.Fatalf("second run: exit %d stdout %q", res.code, res.stdout)
		}
		if second, _ := os.ReadFile(sshConfig); !bytes.Equal(first, second) {
			t.Fatalf("second run changed the file")
		}
		// Content added after the block by the user is kept on update.
		withTail := string(first) + "Host tail\n  User t\n"
		if err := os.WriteFile(sshConfig, []byte(strings.Replace(withTail, "LogLevel ERROR", "LogLevel DEBUG", 1)), 0o600); err != nil {
			t.Fatal(err)
		}
		res = runCLI(t, e.env, nil, "config-ssh", "-y", "--ssh-config-file", sshConfig, "--coder-binary-path", bin)
		if got, _ := os.ReadFile(sshConfig); res.code != 0 || string(got) != withTail || !strings.Contains(res.stdout, "-  LogLevel DEBUG") {
			t.Fatalf("repair: exit %d stdout %q\n%s", res.code, res.stdout, got)
		}
		// A malformed block is reported, never clobbered.
		broken := filepath.Join(t.TempDir(), "broken")
		brokenContent := outside + "# ------------START-CODER-----------\nHost coder.*\n"
		if err := os.WriteFile(broken, []byte(brokenContent), 0o600); err != nil {
			t.Fatal(err)
		}
		res = runCLI(t, e.env, nil, "config-ssh", "-y", "--ssh-config-file", broken, "--coder-binary-path", bin)
		if got, _ := os.ReadFile(broken); res.code != 1 || !strings.Contains(res.stderr, "malformed coder block") || string(got) != brokenContent {
			t.Fatalf("malformed: exit %d stderr %q\n%s", res.code, res.stderr, got)
		}
	})

	sshHome := t.TempDir()
	openssh := func(name string, args ...string) *exec.Cmd {
		cmd := exec.Command(name, args...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + sshHome}
		return cmd
	}
	t.Run("OpenSSH", func(t *testing.T) {
		out, err := openssh("ssh", "-F", sshConfig, "coder.ws1", "echo", "ok").CombinedOutput()
		if err != nil || string(out) != "ok\n" {
			t.Fatalf("ssh echo ok: %v %q", err, out)
		}
		err = openssh("ssh", "-F", sshConfig, "coder.ws1.main", "exit 7").Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 7 {
			t.Fatalf("ssh exit 7: %v", err)
		}

		// scp 20 MiB both ways.
		dir := t.TempDir()
		src := filepath.Join(dir, "src.bin")
		data := make([]byte, 20<<20)
		if _, err := rand.Read(data); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(src, data, 0o600); err != nil {
			t.Fatal(err)
		}
		up := filepath.Join(dir, "uploaded.bin")
		down := filepath.Join(dir, "downloaded.bin")
		if out, err := openssh("scp", "-F", sshConfig, src, "coder.ws1:"+up).CombinedOutput(); err != nil {
			t.Fatalf("scp up: %v %s", err, out)
		}
		if out, err := openssh("scp", "-F", sshConfig, "coder.ws1:"+up, down).CombinedOutput(); err != nil {
			t.Fatalf("scp down: %v %s", err, out)
		}
		want := sha256.Sum256(data)
		if sha(t, up) != want || sha(t, down) != want {
			t.Fatal("scp checksums differ")
		}

		// sftp batch mode.
		batch := filepath.Join(dir, "batch")
		sftpDown := filepath.Join(dir, "sftp.bin")
		if err := os.WriteFile(batch, []byte("mkdir "+filepath.Join(dir, "made")+"\nget "+up+" "+sftpDown+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := openssh("sftp", "-F", sshConfig, "-b", batch, "coder.ws1").CombinedOutput(); err != nil {
			t.Fatalf("sftp: %v %s", err, out)
		}
		if sha(t, sftpDown) != want {
			t.Fatal("sftp checksum differs")
		}
		if st, err := os.Stat(filepath.Join(dir, "made")); err != nil || !st.IsDir() {
			t.Fatalf("sftp mkdir: %v", err)
		}

		// ssh -L to a service in the workspace.
		svc := echoServer(t)
		local := freePort(t)
		fwd := openssh("ssh", "-F", sshConfig, "-N", "-o", "ExitOnForwardFailure=yes",
			"-L", "127.0.0.1:"+strconv.Itoa(local)+":127.0.0.1:"+strconv.Itoa(svc), "coder.ws1")
		var fwdOut bytes.Buffer
		fwd.Stdout, fwd.Stderr = &fwdOut, &fwdOut
		if err := fwd.Start(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, time.Minute, "ssh -L listener", func() (bool, error) {
			c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(local))
			if err == nil {
				_ = c.Close()
			}
			return err == nil, nil
		})
		echoRoundTrip(t, "127.0.0.1:"+strconv.Itoa(local), "through ssh -L")
		_ = fwd.Process.Kill()
		_ = fwd.Wait()

		// rsync over ssh.
		if _, err := exec.LookPath("rsync"); err == nil {
			rdst := filepath.Join(dir, "rsync-dst")
			if err := os.MkdirAll(rdst, 0o700); err != nil {
				t.Fatal(err)
			}
			cmd := openssh("rsync", "-a", "-e", "ssh -F "+sshConfig, src, "coder.ws1:"+rdst+"/")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("rsync: %v %s", err, out)
			}
			if sha(t, filepath.Join(rdst, "src.bin")) != want {
				t.Fatal("rsync checksum differs")
			}
		} else {
			t.Log("rsync is not installed: rsync check not run")
		}
	})

	t.Run("TunnelTCP", func(t *testing.T) {
		svc := echoServer(t)
		local := freePort(t)
		lines, stop := startCLI(t, e.env, "tunnel", "ws1", "--tcp", "127.0.0.1:"+strconv.Itoa(local)+":"+strconv.Itoa(svc))
		waitLine(t, lines, "Ready")
		echoRoundTrip(t, "127.0.0.1:"+strconv.Itoa(local), "through coder tunnel")
		echoRoundTrip(t, "127.0.0.1:"+strconv.Itoa(local), "second connection")
		if res := stop(); res.code != 0 || !strings.Contains(res.stdout, "Forwarding tcp 127.0.0.1:"+strconv.Itoa(local)) {
			t.Fatalf("tunnel: exit %d stdout %q stderr %q", res.code, res.stdout, res.stderr)
		}
		// Ranges.
		svc2 := echoServer(t)
		if svc2 != svc+1 {
			t.Logf("echo servers not adjacent (%d, %d): range check uses one port", svc, svc2)
			svc2 = svc
		}
		lo := freePort(t)
		hi := lo + (svc2 - svc)
		lines, stop = startCLI(t, e.env, "port-forward", "ws1", "--tcp", strconv.Itoa(lo)+"-"+strconv.Itoa(hi)+":"+strconv.Itoa(svc)+"-"+strconv.Itoa(svc2))
		waitLine(t, lines, "Ready")
		for p := lo; p <= hi; p++ {
			echoRoundTrip(t, "127.0.0.1:"+strconv.Itoa(p), "range "+strconv.Itoa(p))
		}
		stop()
	})

	t.Run("TunnelBusyPort", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
		res := runCLI(t, e.env, nil, "tunnel", "ws1", "--tcp", port+":22")
		if res.code != 1 || !strings.Contains(res.stderr, "local port 127.0.0.1:"+port+" is already in use") {
			t.Fatalf("busy port: exit %d stderr %q", res.code, res.stderr)
		}
	})

	t.Run("Ping", func(t *testing.T) {
		res := runCLI(t, e.env, nil, "ping", "ws1", "-n", "50", "--interval", "200ms")
		if res.code != 0 || !strings.Contains(res.stdout, "pong from ws1") || !strings.Contains(res.stdout, "✔ direct connection established: direct ") {
			t.Fatalf("ping: exit %d stdout %q stderr %q", res.code, res.stdout, res.stderr)
		}
	})

	t.Run("Speedtest", func(t *testing.T) {
		for _, dir := range []string{"down", "up"} {
			res := runCLI(t, e.env, nil, "speedtest", "ws1", "-t", "2s", "--direction", dir, "-o", "json")
			if res.code != 0 {
				t.Fatalf("speedtest %s: exit %d stderr %q", dir, res.code, res.stderr)
			}
			var out struct {
				Intervals []struct{ Bytes int64 } `json:"intervals"`
				Total     struct{ Bytes int64 }   `json:"total"`
			}
			if err := json.Unmarshal([]byte(res.stdout), &out); err != nil {
				t.Fatalf("speedtest json: %v\n%s", err, res.stdout)
			}
			var sum int64
			for _, iv := range out.Intervals {
				sum += iv.Bytes
			}
			if len(out.Intervals) < 2 || out.Total.Bytes == 0 || sum != out.Total.Bytes {
				t.Fatalf("speedtest %s: %s", dir, res.stdout)
			}
		}
		res := runCLI(t, e.env, nil, "speedtest", "ws1", "-t", "1s")
		if res.code != 0 || !strings.Contains(res.stdout, "bits/sec") {
			t.Fatalf("speedtest table: exit %d stdout %q", res.code, res.stdout)
		}
	})

	t.Run("Netcheck", func(t *testing.T) {
		res := runCLI(t, e.env, nil, "netcheck", "-o", "json")
		if res.code != 0 {
			t.Fatalf("netcheck: exit %d stderr %q", res.code, res.stderr)
		}
		var out struct {
			UDP           bool           `json:"udp"`
			PreferredDERP int            `json:"preferred_derp"`
			Regions       map[int]string `json:"regions"`
		}
		if err := json.Unmarshal([]byte(res.stdout), &out); err != nil {
			t.Fatalf("netcheck json: %v\n%s", err, res.stdout)
		}
		if !out.UDP || out.PreferredDERP == 0 || out.Regions[out.PreferredDERP] == "" {
			t.Fatalf("netcheck: %s", res.stdout)
		}
	})
}
