package provisioner_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/wgmesh/coder/coderd"
	"github.com/wgmesh/coder/coderd/coderdtest"
	"github.com/wgmesh/coder/coderd/statecrypt"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/codersdk/provisionersdk"
	"github.com/wgmesh/coder/provisioner"
	"github.com/wgmesh/coder/provisioner/terraform"
	"github.com/wgmesh/coder/provisioner/terraform/terraformtest"
)

// daemonEnv is a real coderd with a Daemon (real terraform) in the test
// process; the daemon reaches coderd through a proxy the test can cut.
type daemonEnv struct {
	client  *codersdk.Client
	srv     *coderdtest.Server
	proxy   *cutProxy
	workDir string
	keys    *statecrypt.Keyring
}

// storedState reads the latest build's stored state, which must be
// encrypted (coderd runs with a state key here, as coder server always
// does), and returns it decrypted ("" when the build has none yet).
func (e *daemonEnv) storedState(t *testing.T, workspaceID uuid.UUID) string {
	t.Helper()
	b, err := e.srv.DB.GetLatestWorkspaceBuildByWorkspaceID(context.Background(), workspaceID)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.ProvisionerState) == 0 {
		return ""
	}
	if !statecrypt.IsEncrypted(b.ProvisionerState) {
		t.Fatalf("stored state is not encrypted: %.80q", b.ProvisionerState)
	}
	plain, err := e.keys.Decrypt(b.ProvisionerState, workspaceID)
	if err != nil {
		t.Fatal(err)
	}
	return string(plain)
}

// cutProxy forwards to coderd; while down it drops every request's
// connection (coderd unreachable) and counts what it dropped by path.
type cutProxy struct {
	down    atomic.Bool
	mu      sync.Mutex
	dropped map[string]int
}

func (p *cutProxy) droppedMatching(suffix string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for path, c := range p.dropped {
		if strings.HasSuffix(path, suffix) {
			n += c
		}
	}
	return n
}

func newDaemonEnv(t *testing.T, heartbeatTimeout time.Duration, configure func(*provisioner.Daemon)) *daemonEnv {
	t.Helper()
	const psk = "reliability-psk"
	deps := terraformtest.Find(t)
	keys, err := statecrypt.NewKeyring(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	client, srv := coderdtest.New(t, &coderdtest.Options{API: coderd.Options{Provisioning: coderd.ProvisioningOptions{
		PSK: psk, HeartbeatTimeout: heartbeatTimeout, AcquireWait: time.Second, StateKeys: keys,
	}}})
	coderdtest.CreateFirstUser(t, client)
	proxy := &cutProxy{dropped: map[string]int{}}
	rp := httputil.NewSingleHostReverseProxy(client.URL)
	ps := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if proxy.down.Load() {
			proxy.mu.Lock()
			proxy.dropped[r.URL.Path]++
			proxy.mu.Unlock()
			hj, ok := w.(http.Hijacker)
			if !ok {
				panic("no hijacker")
			}
			conn, _, err := hj.Hijack()
			if err == nil {
				_ = conn.(*net.TCPConn).SetLinger(0)
				_ = conn.Close()
			}
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(ps.Close)
	proxyURL, _ := url.Parse(ps.URL)
	env := &daemonEnv{client: client, srv: srv, proxy: proxy, workDir: t.TempDir(), keys: keys}
	d := &provisioner.Daemon{
		Client: &provisionersdk.Client{URL: proxyURL, PSK: psk},
		Name:   "reliability",
		Runner: &terraform.Runner{
			TerraformPath: deps.Terraform, CLIConfigPath: deps.CLIConfig,
			WorkDir: env.workDir, InterruptGrace: 10 * time.Second, StatePollInterval: 100 * time.Millisecond,
		},
		RetryInterval: 100 * time.Millisecond, MaxRetryInterval: time.Second,
	}
	if configure != nil {
		configure(d)
	}
	startDaemon(t, d)
	return env
}

func startDaemon(t *testing.T, d *provisioner.Daemon) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("daemon Run: %v", err)
		}
	})
}

// startWorkspace imports body as a template and starts a workspace of it.
func (e *daemonEnv) startWorkspace(t *testing.T, name, body string) codersdk.Workspace {
	t.Helper()
	ctx := context.Background()
	up, err := e.client.Upload(ctx, codersdk.ContentTypeTar, strings.NewReader(string(tarMain(t, body))))
	if err != nil {
		t.Fatal(err)
	}
	v, err := e.client.CreateTemplateVersion(ctx, codersdk.CreateTemplateVersionRequest{FileID: up.ID})
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "import", func() bool {
		v, err = e.client.TemplateVersion(ctx, v.ID)
		return err == nil && !v.Job.Status.Active()
	})
	if v.Job.Status != codersdk.ProvisionerJobSucceeded {
		t.Fatalf("import: %s %q", v.Job.Status, v.Job.Error)
	}
	tmpl, err := e.client.CreateTemplate(ctx, codersdk.CreateTemplateRequest{Name: name, VersionID: v.ID})
	if err != nil {
		t.Fatal(err)
	}
	ws, err := e.client.CreateWorkspace(ctx, codersdk.Me, codersdk.CreateWorkspaceRequest{TemplateID: tmpl.ID, Name: name})
	if err != nil {
		t.Fatal(err)
	}
	return ws
}

// waitBuild waits for the build to end and returns it.
func (e *daemonEnv) waitBuild(t *testing.T, id codersdk.WorkspaceBuild) codersdk.WorkspaceBuild {
	t.Helper()
	var b codersdk.WorkspaceBuild
	waitUntil(t, "build end", func() bool {
		var err error
		b, err = e.client.WorkspaceBuild(context.Background(), id.ID)
		return err == nil && !b.Job.Status.Active()
	})
	return b
}

func (e *daemonEnv) buildLogs(t *testing.T, id codersdk.WorkspaceBuild) string {
	t.Helper()
	logs, closer, err := e.client.WorkspaceBuildLogsAfter(context.Background(), id.ID, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	var sb strings.Builder
	for l := range logs {
		sb.WriteString(l.Output + "\n")
	}
	return sb.String()
}

// waitFile waits until path exists.
func waitFile(t *testing.T, path string) {
	t.Helper()
	waitUntil(t, path, func() bool { _, err := os.Stat(path); return err == nil })
}

// TestLongBuildCompletes: a build whose apply outlasts every internal
// timeout of the daemon (each report attempt bounded by 2 s) and coderd's
// heartbeat timeout (3 s) succeeds, with all its logs and its state. It
// failed while the daemon bounded all of a job's reporting by one timer
// started with the job (30 s in production; here ReportTimeout).
func TestLongBuildCompletes(t *testing.T) {
	t.Parallel()
	env := newDaemonEnv(t, 3*time.Second, func(d *provisioner.Daemon) { d.ReportTimeout = 2 * time.Second })
	gate := filepath.Join(t.TempDir(), "gate")
	ws := env.startWorkspace(t, "long", fmt.Sprintf(`
resource "terraform_data" "long" {
  provisioner "local-exec" {
    command = "echo long-build-started; sleep 5; echo long-build-done; touch %s"
  }
}
`, gate))
	b := env.waitBuild(t, ws.LatestBuild)
	if b.Job.Status != codersdk.ProvisionerJobSucceeded {
		t.Fatalf("long build: %s %q", b.Job.Status, b.Job.Error)
	}
	if took := b.Job.CompletedAt.Sub(*b.Job.StartedAt); took < 5*time.Second {
		t.Fatalf("the build took %s: the apply did not outlast the timeouts", took)
	}
	logs := env.buildLogs(t, ws.LatestBuild)
	for _, want := range []string{"long-build-started", "long-build-done"} {
		if !strings.Contains(logs, want) {
			t.Fatalf("build logs lack %q:\n%s", want, logs)
		}
	}
	if state := env.storedState(t, ws.ID); !strings.Contains(state, `"long"`) {
		t.Fatalf("state after the long build: %q", state)
	}
	assertEmptyDir(t, env.workDir)
}

// TestReportingSurvivesOutage: coderd is unreachable from the daemon while
// the build ends; the daemon keeps the logs and the result and retries
// until coderd is back, so the build completes with every log line.
func TestReportingSurvivesOutage(t *testing.T) {
	t.Parallel()
	env := newDaemonEnv(t, time.Minute, func(d *provisioner.Daemon) { d.ReportTimeout = 2 * time.Second })
	dir := t.TempDir()
	gate, started := filepath.Join(dir, "gate"), filepath.Join(dir, "started")
	ws := env.startWorkspace(t, "outage", fmt.Sprintf(`
resource "terraform_data" "outage" {
  provisioner "local-exec" {
    command = "echo outage-build-started; touch %s; while [ ! -e %s ]; do sleep 0.1; done; echo outage-build-done"
  }
}
`, started, gate))
	waitFile(t, started)
	env.proxy.down.Store(true)
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// The last logs (sent before the completion) reach a coderd that is
	// gone, several times ...
	waitUntil(t, "refused reports", func() bool {
		return env.proxy.droppedMatching("/logs")+env.proxy.droppedMatching("/complete") >= 3
	})
	// ... and arrive once it is back.
	env.proxy.down.Store(false)
	b := env.waitBuild(t, ws.LatestBuild)
	if b.Job.Status != codersdk.ProvisionerJobSucceeded {
		t.Fatalf("build after the outage: %s %q", b.Job.Status, b.Job.Error)
	}
	logs := env.buildLogs(t, ws.LatestBuild)
	for _, want := range []string{"outage-build-started", "outage-build-done"} {
		if !strings.Contains(logs, want) {
			t.Fatalf("build logs lack %q:\n%s", want, logs)
		}
	}
}

// TestBuildStateUploadedAsItGoes: while a build applies, the resources it
// already created are in coderd's state for the build; canceling it kills
// the local-exec's children (sh -c and a background process), fails it
// with the partial state and leaves no work directory.
func TestBuildStateUploadedAsItGoes(t *testing.T) {
	t.Parallel()
	env := newDaemonEnv(t, time.Minute, nil)
	dir := t.TempDir()
	pids := filepath.Join(dir, "pids")
	ws := env.startWorkspace(t, "partial", fmt.Sprintf(`
resource "terraform_data" "first" {
  input = "created-first"
}
resource "terraform_data" "second" {
  depends_on = [terraform_data.first]
  provisioner "local-exec" {
    command = "sleep 300 & echo $$ $! > %s.tmp; mv %s.tmp %s; wait"
  }
}
`, pids, pids, pids))
	waitFile(t, pids)
	ctx := context.Background()
	// The partial state is stored as it goes, encrypted like a final one.
	waitUntil(t, "partial state in coderd", func() bool {
		return strings.Contains(env.storedState(t, ws.ID), "created-first")
	})
	raw, err := os.ReadFile(pids)
	if err != nil {
		t.Fatal(err)
	}
	var procs []int
	for _, f := range strings.Fields(string(raw)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			t.Fatal(err)
		}
		procs = append(procs, pid)
	}
	t.Cleanup(func() {
		for _, pid := range procs {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	if err := env.client.CancelWorkspaceBuild(ctx, ws.LatestBuild.ID); err != nil {
		t.Fatal(err)
	}
	b := env.waitBuild(t, ws.LatestBuild)
	if b.Status != codersdk.WorkspaceStatusCanceled {
		t.Fatalf("canceled build: %s %q", b.Status, b.Job.Error)
	}
	for _, pid := range procs {
		waitUntil(t, fmt.Sprintf("local-exec process %d gone", pid), func() bool { return !alive(pid) })
	}
	if state := env.storedState(t, ws.ID); !strings.Contains(state, "created-first") {
		t.Fatalf("state after cancel: %q", state)
	}
	waitUntil(t, "empty work dir", func() bool { return len(dirEntries(t, env.workDir)) == 0 })
}

func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return !errors.Is(err, syscall.ESRCH)
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(stat), ')')
	fields := strings.Fields(string(stat[i+1:]))
	return len(fields) > 0 && fields[0] != "Z"
}

func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func assertEmptyDir(t *testing.T, dir string) {
	t.Helper()
	if names := dirEntries(t, dir); len(names) != 0 {
		t.Fatalf("work dir %s not empty: %v", dir, names)
	}
}
