//go:build chaos

package chaos_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/provisioner/terraform/terraformtest"
)

// runMarker is the environment variable every process the test starts
// carries (value: the run's ID); their children inherit it, so the process
// table tells what the run left behind.
const runMarker = "CHAOS_RUN"

// ledgerEnv names the file the template's chaos.tf appends each log line to
// before echoing it (see testdata/chaos.tf).
const ledgerEnv = "CHAOS_LEDGER"

const (
	daemonPSK = "chaos-psk"
	ownerName = "chaos"
)

// syncBuffer is an io.Writer safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// proc is a long-running process of the deployment (coderd or a
// provisioner daemon). Every incarnation's output is kept for failure
// messages.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// startProc starts args in its own process group with env.
func startProc(name string, env []string, args ...string) (*proc, error) {
	p := &proc{name: name, out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(args[0], args[1:]...)
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// kill9 kills the process alone (not its group) with SIGKILL, as a crash
// would, and waits until it is gone.
func (p *proc) kill9() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// stop interrupts the process, waits up to grace, then kills its group.
func (p *proc) stop(grace time.Duration) {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
		<-p.done
	}
}

// world is one deployment as a user runs it on a laptop: coderd on its
// embedded PostgreSQL, an external provisioner daemon, the CLI.
type world struct {
	t     *testing.T
	bin   string
	deps  terraformtest.Deps
	root  string
	runID string

	port, stunPort int
	url            *url.URL

	serverCfg, serverHome, serverTmp string
	provHome, provWork, provTmp      string
	cliHome, cliTmp, sshHome         string
	sshConfig, ledger                string

	mu       sync.Mutex
	server   *proc
	prov     *proc
	servers  []*proc // every incarnation, for logs
	provs    []*proc
	provName string

	client *codersdk.Client
}

// newWorld builds the binary, starts coderd and a provisioner daemon, logs
// the CLI in (creating the first user) and pushes the chaos template. Every
// process and directory is removed at cleanup, on failure too.
func newWorld(t *testing.T) *world {
	t.Helper()
	root := t.TempDir()
	// The embedded PostgreSQL runs as the postgres user when the test runs
	// as root: it must be able to traverse to its data directory.
	for _, d := range []string{filepath.Dir(root), root} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	w := &world{t: t, root: root, deps: absDeps(t), runID: randomHex(8), provName: "chaos-daemon"}
	w.bin = buildCoder(t, root)
	for _, d := range []*string{&w.serverCfg, &w.serverHome, &w.serverTmp, &w.provHome, &w.provWork, &w.provTmp, &w.cliHome, &w.cliTmp, &w.sshHome} {
		*d = mkdir(t, root)
	}
	w.sshConfig = filepath.Join(w.sshHome, "ssh_config")
	w.ledger = filepath.Join(root, "ledger")
	w.port, w.stunPort = freeTCPPort(t), freeUDPPort(t)
	w.url, _ = url.Parse(fmt.Sprintf("http://127.0.0.1:%d", w.port))

	t.Cleanup(w.teardown)
	w.startServer()
	w.startProvisioner()

	w.cli(2*time.Minute, "login", w.url.String(), "--first-user-username", ownerName,
		"--first-user-email", "chaos@example.com", "--first-user-password", "chaos-Password-1")
	session, err := os.ReadFile(filepath.Join(w.cliHome, "config", "session"))
	if err != nil {
		t.Fatal(err)
	}
	w.client = codersdk.New(w.url)
	w.client.SetSessionToken(strings.TrimSpace(string(session)))
	w.cli(2*time.Minute, "config-ssh", "-y", "--ssh-config-file", w.sshConfig, "--coder-binary-path", w.bin)

	tmplDir := mkdir(t, root)
	copyFile(t, "../../examples/templates/local/main.tf", filepath.Join(tmplDir, "main.tf"))
	copyFile(t, "testdata/chaos.tf", filepath.Join(tmplDir, "chaos.tf"))
	w.cli(5*time.Minute, "templates", "push", "chaos", "-d", tmplDir, "-y")
	return w
}

func absDeps(t *testing.T) terraformtest.Deps {
	d := terraformtest.Find(t)
	for _, p := range []*string{&d.CacheDir, &d.Terraform, &d.Tofu, &d.CLIConfig} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			t.Fatal(err)
		}
		*p = abs
	}
	return d
}

// buildCoder returns $CHAOS_CODER_BIN (make chaos: ./bin/coder), else
// builds cmd/coder into the run's directory.
func buildCoder(t *testing.T, root string) string {
	if bin := os.Getenv("CHAOS_CODER_BIN"); bin != "" {
		abs, err := filepath.Abs(bin)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(abs); err != nil {
			t.Fatalf("$CHAOS_CODER_BIN: %v", err)
		}
		return abs
	}
	bin := filepath.Join(mkdir(t, root), "coder")
	cmd := exec.Command("go", "build", "-o", bin, "../../cmd/coder")
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build coder: %v\n%s", err, out)
	}
	return bin
}

var dirSeq struct {
	sync.Mutex
	n int
}

func mkdir(t *testing.T, root string) string {
	dirSeq.Lock()
	dirSeq.n++
	n := dirSeq.n
	dirSeq.Unlock()
	d := filepath.Join(root, fmt.Sprintf("d%02d", n))
	if err := os.Mkdir(d, 0o700); err != nil {
		t.Fatal(err)
	}
	return d
}

func copyFile(t *testing.T, from, to string) {
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func freeTCPPort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func freeUDPPort(t *testing.T) int {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

func (w *world) baseEnv(home, tmp string) []string {
	return []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "TMPDIR=" + tmp, runMarker + "=" + w.runID}
}

// startServer starts (or, after a kill, restarts) coderd on the same
// port, config directory and embedded PostgreSQL, and waits until /healthz
// says the database is reachable.
func (w *world) startServer() {
	w.t.Helper()
	p, err := startProc("coderd", w.baseEnv(w.serverHome, w.serverTmp), w.bin, "server",
		"--http-address", fmt.Sprintf("127.0.0.1:%d", w.port),
		"--access-url", w.url.String(),
		"--config-dir", w.serverCfg,
		"--provisioner-daemons", "0",
		"--provisioner-daemon-psk", daemonPSK,
		"--terraform-path", w.deps.Terraform,
		"--terraform-cli-config", w.deps.CLIConfig,
		"--derp-server-stun-addresses", fmt.Sprintf("127.0.0.1:%d", w.stunPort),
		"--verbose",
	)
	if err != nil {
		w.t.Fatal(err)
	}
	w.mu.Lock()
	w.server = p
	w.servers = append(w.servers, p)
	w.mu.Unlock()
	w.waitHealthy(2 * time.Minute)
}

// waitHealthy waits until /healthz answers OK (it reflects the database).
func (w *world) waitHealthy(timeout time.Duration) {
	w.t.Helper()
	hc := &http.Client{Timeout: 5 * time.Second}
	w.waitFor(timeout, "coderd /healthz OK", func() (bool, error) {
		if w.server.exited() {
			return false, errors.New("coder server exited:\n" + lastLines(w.server.out.String(), 60))
		}
		res, err := hc.Get(w.url.String() + "/healthz")
		if err != nil {
			return false, nil
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		return res.StatusCode == http.StatusOK && strings.TrimSpace(string(b)) == "OK", nil
	})
}

// startProvisioner starts (or restarts) the external provisioner daemon
// with the same name and work directory.
func (w *world) startProvisioner() {
	w.t.Helper()
	env := append(w.baseEnv(w.provHome, w.provTmp), ledgerEnv+"="+w.ledger)
	p, err := startProc("provisioner", env, w.bin, "provisioner", "start",
		"--url", w.url.String(), "--psk", daemonPSK, "--name", w.provName,
		"--cache-dir", w.provWork,
		"--terraform-path", w.deps.Terraform, "--terraform-cli-config", w.deps.CLIConfig,
		"--verbose",
	)
	if err != nil {
		w.t.Fatal(err)
	}
	w.mu.Lock()
	w.prov = p
	w.provs = append(w.provs, p)
	w.mu.Unlock()
}

// postmasterPID reads the embedded cluster's postmaster.pid.
func (w *world) postmasterPID() (int, error) {
	b, err := os.ReadFile(filepath.Join(w.serverCfg, "postgres", "pgdata", "postmaster.pid"))
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return strconv.Atoi(strings.TrimSpace(line))
}

// teardown stops everything the run started and kills what is left (a
// failed run included), then waits for the embedded PostgreSQL to be gone
// so that the temp directory can be removed.
func (w *world) teardown() {
	w.mu.Lock()
	prov, server := w.prov, w.server
	w.mu.Unlock()
	if prov != nil {
		prov.stop(30 * time.Second)
	}
	if server != nil {
		server.stop(30 * time.Second)
	}
	if w.t.Failed() {
		for _, p := range w.servers {
			w.t.Logf("coderd (pid %d) output, last lines:\n%s", p.pid(), lastLines(p.out.String(), 80))
		}
		for _, p := range w.provs {
			w.t.Logf("provisioner (pid %d) output, last lines:\n%s", p.pid(), lastLines(p.out.String(), 80))
		}
	}
	for _, p := range markedProcesses(w.runID) {
		w.t.Logf("teardown: killing leftover process %d %s", p.pid, p.cmdline)
		_ = syscall.Kill(p.pid, syscall.SIGKILL)
	}
	if pid, err := w.postmasterPID(); err == nil && processAlive(pid) {
		w.t.Logf("teardown: killing embedded postmaster %d", pid)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && len(postgresOf(w.serverCfg)) > 0 {
		time.Sleep(100 * time.Millisecond)
	}
	for _, pid := range postgresOf(w.serverCfg) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// cli runs the CLI as the logged-in user and fails the test on a non-zero
// exit.
func (w *world) cli(timeout time.Duration, args ...string) string {
	w.t.Helper()
	out, err := w.cliRun(timeout, args...)
	if err != nil {
		w.t.Fatalf("coder %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// cliRun runs the CLI and returns its combined output and error.
func (w *world) cliRun(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, w.bin, args...)
	cmd.Env = append(w.baseEnv(w.cliHome, w.cliTmp), "CODER_CONFIG_DIR="+filepath.Join(w.cliHome, "config"))
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// waitFor polls cond every 100 ms until it holds or timeout passes; an
// error from cond fails the test at once.
func (w *world) waitFor(timeout time.Duration, what string, cond func() (bool, error)) {
	w.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if err != nil {
			w.t.Fatalf("%s: %v", what, err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// procInfo is a process found in /proc.
type procInfo struct {
	pid     int
	cmdline string
	env     map[string]string
}

// processes lists every process whose environment passes keep.
func processes(keep func(env map[string]string) bool) []procInfo {
	entries, _ := os.ReadDir("/proc")
	var out []procInfo
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil {
			continue
		}
		env := map[string]string{}
		for _, kv := range bytes.Split(raw, []byte{0}) {
			if k, v, ok := strings.Cut(string(kv), "="); ok {
				env[k] = v
			}
		}
		if !keep(env) || !processAlive(pid) {
			continue
		}
		cl, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		out = append(out, procInfo{pid: pid, cmdline: strings.TrimSpace(string(bytes.ReplaceAll(cl, []byte{0}, []byte{' '}))), env: env})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].pid < out[j].pid })
	return out
}

// markedProcesses lists the live processes of the run.
func markedProcesses(runID string) []procInfo {
	return processes(func(env map[string]string) bool { return env[runMarker] == runID })
}

// postgresOf lists the PIDs of postgres processes serving the embedded
// cluster under cfg (the postmaster's command line names its data dir; the
// other processes are its children).
func postgresOf(cfg string) []int {
	pgdata := filepath.Join(cfg, "postgres", "pgdata")
	var pids []int
	entries, _ := os.ReadDir("/proc")
	var master []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cl, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(cl, []byte(pgdata)) && processAlive(pid) {
			master = append(master, pid)
		}
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid := parentOf(pid); ppid > 0 {
			for _, m := range master {
				if ppid == m && processAlive(pid) {
					pids = append(pids, pid)
				}
			}
		}
	}
	return append(master, pids...)
}

// statFields returns the fields of /proc/pid/stat after the command name.
func statFields(pid int) []string {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(string(stat[i+1:]))
}

// sessionOf returns the session ID of pid ("?" when unknown).
func sessionOf(pid int) string {
	f := statFields(pid)
	if len(f) < 4 {
		return "?"
	}
	return f[3]
}

func parentOf(pid int) int {
	f := statFields(pid)
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

// processAlive reports whether pid runs (zombies count as gone).
func processAlive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	f := statFields(pid)
	return len(f) > 0 && f[0] != "Z"
}

// dirEntries lists the names in dir (nil when it does not exist).
func dirEntries(dir string) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// ledgerLine is one line the template echoed, as it appended it to the
// ledger.
type ledgerLine struct {
	build string // workspace build ID
	text  string // the whole line, "chaos-log build=... phase=... n=..."
}

// readLedger returns the ledger's lines from byte offset off on.
func (w *world) readLedger(off int64) ([]ledgerLine, error) {
	f, err := os.Open(w.ledger)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return nil, err
	}
	var out []ledgerLine
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := sc.Text()
		if !strings.HasPrefix(l, "chaos-log build=") {
			continue
		}
		id, _, _ := strings.Cut(strings.TrimPrefix(l, "chaos-log build="), " ")
		out = append(out, ledgerLine{build: id, text: l})
	}
	return out, sc.Err()
}

func (w *world) ledgerSize() int64 {
	st, err := os.Stat(w.ledger)
	if err != nil {
		return 0
	}
	return st.Size()
}
