//go:build chaos

package chaos_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/wgmesh/coder/codersdk"
)

// Fault kinds.
const (
	faultCoderd      = "coderd"
	faultPostgres    = "postgres"
	faultProvisioner = "provisioner"
	faultAgent       = "agent"
)

var faultKinds = []string{faultCoderd, faultPostgres, faultProvisioner, faultAgent}

// The steps of an iteration.
const (
	stepCreate = iota
	stepSSH    // coder ssh WS -- cmd
	stepStop
	stepStart
	stepOpenSSH // ssh coder.WS cmd, through `coder config-ssh`
	stepDelete
	numSteps
)

var stepNames = [numSteps]string{"create", "ssh", "stop", "start", "openssh", "delete"}

// buildLines is how many ledger lines each build step's template resources
// echo (testdata/chaos.tf: 3 per phase).
var buildLines = map[int]int{stepCreate: 6, stepStop: 3, stepStart: 3, stepDelete: 6}

func isBuildStep(s int) bool { _, ok := buildLines[s]; return ok }

// fault is where one iteration's fault lands: during step, either when the
// build has echoed its line-th line (build steps; for an agent kill during
// create only lines 4-6, after the agent process was started), or before
// or while the SSH command runs (SSH steps).
type fault struct {
	kind   string
	step   int
	line   int    // build steps
	during bool   // SSH steps: while the command runs, else before it
	fired  string // what happened, filled in when injected
}

func (f fault) String() string {
	if isBuildStep(f.step) {
		return fmt.Sprintf("kill %s during %s at build log line %d", f.kind, stepNames[f.step], f.line)
	}
	when := "before"
	if f.during {
		when = "during"
	}
	return fmt.Sprintf("kill %s %s %s", f.kind, when, stepNames[f.step])
}

// schedule draws one fault per iteration from seed. Kinds come in shuffled
// rounds of four, so every kind is injected equally often.
func schedule(seed uint64, iterations int) []fault {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	var out []fault
	var round []string
	for i := 0; i < iterations; i++ {
		if len(round) == 0 {
			round = append([]string(nil), faultKinds...)
			r.Shuffle(len(round), func(a, b int) { round[a], round[b] = round[b], round[a] })
		}
		kind := round[0]
		round = round[1:]
		var steps []int
		switch kind {
		case faultProvisioner:
			steps = []int{stepCreate, stepStop, stepStart, stepDelete}
		case faultAgent:
			steps = []int{stepCreate, stepSSH, stepStart, stepOpenSSH}
		default:
			steps = []int{stepCreate, stepSSH, stepStop, stepStart, stepOpenSSH, stepDelete}
		}
		f := fault{kind: kind, step: steps[r.IntN(len(steps))]}
		if isBuildStep(f.step) {
			lo := 1
			if kind == faultAgent && f.step == stepCreate {
				lo = 4 // the agent process exists from the create's 4th line on
			}
			f.line = lo + r.IntN(buildLines[f.step]-lo+1)
		} else {
			f.during = r.IntN(2) == 1
		}
		out = append(out, f)
	}
	return out
}

func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("$%s=%q: want a positive integer", name, v)
	}
	return n
}

// TestChaos runs CHAOS_ITERATIONS (default 4) iterations of create → ssh →
// stop → start → ssh (OpenSSH) → delete against the built binary, each with
// one fault from the schedule of CHAOS_SEED (default: random, logged).
// A step a fault broke is retried as a user would (the same command again;
// an unreachable agent gets a restart). After each iteration: no workspace
// is left building, no process of the run but coderd, its PostgreSQL and
// the daemon runs, no job directory, home or temp file is left, and every
// line the template echoed is in its build's logs, in order.
func TestChaos(t *testing.T) {
	iterations := envInt(t, "CHAOS_ITERATIONS", 4)
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("CHAOS_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("$CHAOS_SEED=%q: want an unsigned integer", v)
		}
		seed = s
	}
	plan := schedule(seed, iterations)
	t.Logf("chaos: seed %d, %d iterations (rerun with CHAOS_SEED=%d CHAOS_ITERATIONS=%d)", seed, iterations, seed, iterations)
	for i, f := range plan {
		t.Logf("chaos: iteration %d: %s", i+1, f)
	}

	w := newWorld(t)
	st := &stats{injected: map[string]int{}}
	for i, f := range plan {
		it := &iteration{w: w, n: i + 1, name: fmt.Sprintf("chaos-%d", i+1), fault: f, st: st, lossy: map[string]bool{}}
		it.run()
		if t.Failed() {
			return
		}
	}
	t.Logf("chaos: seed %d: %d iterations passed; faults injected: coderd %d, postgres %d, provisioner %d, agent %d; "+
		"steps retried: %d, workspace restarts: %d, builds checked: %d (%d log lines)",
		seed, iterations, st.injected[faultCoderd], st.injected[faultPostgres], st.injected[faultProvisioner], st.injected[faultAgent],
		st.retries, st.restarts, st.builds, st.lines)
	for _, n := range st.notes {
		t.Logf("chaos: %s", n)
	}
}

type stats struct {
	mu       sync.Mutex
	injected map[string]int
	retries  int
	restarts int
	builds   int
	lines    int
	notes    []string
}

func (s *stats) note(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.notes = append(s.notes, fmt.Sprintf(format, args...))
}

// iteration is one create → ... → delete cycle of one workspace.
type iteration struct {
	w     *world
	n     int
	name  string
	fault fault
	st    *stats
	wsID  uuid.UUID
	// lossy are the builds during which the provisioner daemon was killed:
	// the lines it had not sent yet die with it, so their logs need only
	// be a prefix of what was echoed.
	lossy       map[string]bool
	ledgerStart int64
	agentKilled bool
}

func (it *iteration) logf(format string, args ...any) {
	it.w.t.Helper()
	it.w.t.Logf("iteration %d (%s): %s", it.n, it.name, fmt.Sprintf(format, args...))
}

func (it *iteration) run() {
	w := it.w
	w.t.Helper()
	it.ledgerStart = w.ledgerSize()
	start := time.Now()
	for s := 0; s < numSteps; s++ {
		var f *fault
		if it.fault.step == s {
			f = &it.fault
		}
		if isBuildStep(s) {
			it.buildStep(s, f)
		} else {
			it.sshStep(s, f)
		}
		if w.t.Failed() {
			return
		}
	}
	it.checkConverged()
	it.checkNoLeaks()
	it.checkLogs()
	if w.t.Failed() {
		return
	}
	it.logf("passed in %s (%s; %s)", time.Since(start).Round(time.Second), it.fault, it.fault.fired)
}

// inject kills the fault's component and restarts what a supervisor (or
// the user) would restart: coderd and the daemon are started again, the
// embedded PostgreSQL is restarted by coderd itself, a killed agent stays
// dead until the workspace is restarted.
func (it *iteration) inject(f *fault, build string) {
	w := it.w
	w.t.Helper()
	it.st.mu.Lock()
	it.st.injected[f.kind]++
	it.st.mu.Unlock()
	switch f.kind {
	case faultCoderd:
		old := w.server.pid()
		w.server.kill9()
		w.startServer()
		f.fired = fmt.Sprintf("coderd %d killed, restarted as %d", old, w.server.pid())
	case faultPostgres:
		pid, err := w.postmasterPID()
		if err != nil {
			w.t.Fatalf("postmaster pid: %v", err)
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			w.t.Fatalf("kill postmaster %d: %v", pid, err)
		}
		var now int
		w.waitFor(2*time.Minute, "coderd to restart its embedded PostgreSQL", func() (bool, error) {
			p, err := w.postmasterPID()
			if err == nil && p != pid && processAlive(p) {
				now = p
				return true, nil
			}
			return false, nil
		})
		w.waitHealthy(2 * time.Minute)
		f.fired = fmt.Sprintf("postmaster %d killed, coderd restarted it as %d", pid, now)
	case faultProvisioner:
		old := w.prov.pid()
		w.prov.kill9()
		w.startProvisioner()
		if build != "" {
			it.lossy[build] = true
		}
		f.fired = fmt.Sprintf("provisioner %d killed, restarted as %d", old, w.prov.pid())
	case faultAgent:
		pidFile := filepath.Join(it.home(), ".coder-agent", "agent.pid")
		raw, err := os.ReadFile(pidFile)
		if err != nil {
			w.t.Fatalf("agent pid file: %v", err)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
		if err != nil {
			w.t.Fatalf("agent pid file %q: %v", raw, err)
		}
		cl, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			w.t.Fatalf("kill agent %d: %v", pid, err)
		}
		it.agentKilled = true
		f.fired = fmt.Sprintf("agent %d (%s) killed", pid, strings.ReplaceAll(strings.TrimSpace(string(cl)), "\x00", " "))
	}
	it.logf("fault: %s", f.fired)
}

// home is the workspace's home directory (examples/templates/local).
func (it *iteration) home() string {
	return filepath.Join(it.w.provHome, ".coder-workspaces", ownerName+"-"+it.name)
}

// awaitLine waits until the ledger has line lines after byte offset off
// and returns the build that echoed it; false when done closed first and
// the line still is not there (the build ended earlier).
func (it *iteration) awaitLine(off int64, line int, done <-chan struct{}) (string, bool) {
	for {
		lines, err := it.w.readLedger(off)
		if err == nil && len(lines) >= line {
			return lines[line-1].build, true
		}
		select {
		case <-done:
			lines, err := it.w.readLedger(off)
			if err == nil && len(lines) >= line {
				return lines[line-1].build, true
			}
			return "", false
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// workspace returns the iteration's workspace and whether it exists; an
// error means coderd did not answer (e.g. while it restarts).
func (it *iteration) workspace() (codersdk.Workspace, bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if it.wsID != uuid.Nil {
		ws, err := it.w.client.Workspace(ctx, it.wsID)
		var se *codersdk.Error
		if errors.As(err, &se) && se.StatusCode() == 404 {
			return codersdk.Workspace{}, false, nil
		}
		return ws, err == nil, err
	}
	return it.workspaceByName(ctx)
}

// workspaceByName looks the workspace up by name, as the CLI does (a
// deleted workspace is not found).
func (it *iteration) workspaceByName(ctx context.Context) (codersdk.Workspace, bool, error) {
	ws, err := it.w.client.WorkspaceByOwnerAndName(ctx, codersdk.Me, it.name)
	if err != nil {
		var se *codersdk.Error
		if errors.As(err, &se) && se.StatusCode() == 404 {
			return codersdk.Workspace{}, false, nil
		}
		return codersdk.Workspace{}, false, err
	}
	return ws, true, nil
}

// buildStep runs the CLI command of step (create, stop, start, delete),
// with f injected at its line on the first attempt, and repeats the
// command while the build failed, as a user would. The latest build must
// leave the pending/running states within a bound: a build is never stuck.
func (it *iteration) buildStep(step int, f *fault) {
	w := it.w
	w.t.Helper()
	transition := map[int]codersdk.WorkspaceTransition{
		stepCreate: codersdk.WorkspaceTransitionStart, stepStart: codersdk.WorkspaceTransitionStart,
		stepStop: codersdk.WorkspaceTransitionStop, stepDelete: codersdk.WorkspaceTransitionDelete,
	}[step]
	const maxAttempts = 4
	for attempt := 1; ; attempt++ {
		ws, exists, err := it.workspace()
		for deadline := time.Now().Add(2 * time.Minute); err != nil; ws, exists, err = it.workspace() {
			if time.Now().After(deadline) {
				w.t.Fatalf("iteration %d: coderd does not answer: %v", it.n, err)
			}
			time.Sleep(500 * time.Millisecond)
		}
		before := int32(0)
		if exists {
			before = ws.LatestBuild.BuildNumber
			it.wsID = ws.ID
		}
		var args []string
		switch {
		case step == stepCreate && !exists:
			args = []string{"create", it.name, "-t", "chaos", "-y"}
		case step == stepCreate:
			args = []string{"start", it.name, "-y"} // created, but its first build failed
		default:
			args = []string{stepNames[step], it.name, "-y"}
		}
		off := w.ledgerSize()
		done := make(chan struct{})
		var out string
		var cliErr error
		go func() {
			defer close(done)
			out, cliErr = w.cliRun(6*time.Minute, args...)
		}()
		if f != nil && attempt == 1 {
			if build, ok := it.awaitLine(off, f.line, done); ok {
				it.inject(f, build)
			} else {
				// The build ended before the chosen line: inject now, so
				// that every iteration has its fault.
				it.logf("%s ended before line %d, injecting after it", stepNames[step], f.line)
				it.inject(f, "")
			}
		}
		<-done
		b, ok := it.waitBuildDone(before)
		if !ok && step == stepDelete {
			if _, exists, err := it.workspaceByName(context.Background()); err == nil && !exists {
				return // deleted (and no longer shown by ID either)
			}
		}
		if !ok {
			it.st.mu.Lock()
			it.st.retries++
			it.st.mu.Unlock()
			it.logf("%s attempt %d made no build (coder %s: %v): retrying", stepNames[step], attempt, strings.Join(args, " "), cliErr)
			if attempt == maxAttempts {
				w.t.Fatalf("iteration %d: %s never made a build after %d attempts; last output:\n%s", it.n, stepNames[step], attempt, out)
			}
			continue
		}
		if b.Job.Status == codersdk.ProvisionerJobSucceeded && b.Transition == transition {
			if cliErr != nil && (f == nil || attempt > 1) {
				w.t.Errorf("iteration %d: coder %s exited with %v although its build succeeded and no fault hit it:\n%s",
					it.n, strings.Join(args, " "), cliErr, out)
			}
			if step == stepDelete {
				if _, exists, _ := it.workspaceByName(context.Background()); exists {
					w.t.Fatalf("iteration %d: workspace still listed after a successful delete", it.n)
				}
			}
			return
		}
		if b.Job.Status != codersdk.ProvisionerJobFailed && b.Job.Status != codersdk.ProvisionerJobCanceled {
			w.t.Fatalf("iteration %d: %s build #%d ended %s", it.n, stepNames[step], b.BuildNumber, b.Job.Status)
		}
		if f != nil && attempt == 1 && (f.kind == faultCoderd || f.kind == faultPostgres) {
			// The daemon retries every report until coderd answers: a
			// coderd or database restart must not fail a build.
			w.t.Errorf("iteration %d: %s build #%d failed after %s: %q", it.n, stepNames[step], b.BuildNumber, f.fired, b.Job.Error)
		}
		it.st.mu.Lock()
		it.st.retries++
		it.st.mu.Unlock()
		it.logf("%s build #%d %s (%q): retrying", stepNames[step], b.BuildNumber, b.Job.Status, b.Job.Error)
		if attempt == maxAttempts {
			w.t.Fatalf("iteration %d: %s still failing after %d attempts: %q", it.n, stepNames[step], attempt, b.Job.Error)
		}
	}
}

// waitBuildDone waits until the workspace has a build newer than before
// and it is no longer pending or running. False when there is no newer
// build (the command failed before making one).
func (it *iteration) waitBuildDone(before int32) (codersdk.WorkspaceBuild, bool) {
	w := it.w
	w.t.Helper()
	// Heartbeat timeout (20 s) + hung-job detection + a slow build.
	const bound = 4 * time.Minute
	deadline := time.Now().Add(bound)
	var last codersdk.WorkspaceBuild
	for {
		if w.prov.exited() {
			w.t.Fatalf("iteration %d: the provisioner daemon exited by itself:\n%s", it.n, lastLines(w.prov.out.String(), 40))
		}
		ws, exists, err := it.workspace()
		if err == nil {
			if !exists || ws.LatestBuild.BuildNumber <= before {
				return codersdk.WorkspaceBuild{}, false
			}
			it.wsID = ws.ID
			last = ws.LatestBuild
			if !last.Job.Status.Active() {
				return last, true
			}
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("iteration %d: build #%d (%s) still %s after %s: stuck", it.n, last.BuildNumber, last.Transition, last.Job.Status, bound)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// agent returns the workspace's agent.
func (it *iteration) agent() (codersdk.WorkspaceAgent, bool) {
	ws, exists, err := it.workspace()
	if err != nil || !exists {
		return codersdk.WorkspaceAgent{}, false
	}
	for _, r := range ws.LatestBuild.Resources {
		for _, a := range r.Agents {
			return a, true
		}
	}
	return codersdk.WorkspaceAgent{}, false
}

// waitAgentReady waits up to timeout for the agent to be connected and
// ready.
func (it *iteration) waitAgentReady(timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if a, ok := it.agent(); ok && a.Status == codersdk.WorkspaceAgentConnected && a.LifecycleState == codersdk.WorkspaceAgentLifecycleReady {
			return true
		}
		time.Sleep(200 * time.Millisecond)
	}
	return false
}

// restart stops and starts the workspace, as a user does when its agent
// is gone.
func (it *iteration) restart() {
	it.st.mu.Lock()
	it.st.restarts++
	it.st.mu.Unlock()
	it.logf("restarting the workspace")
	it.buildStep(stepStop, nil)
	it.buildStep(stepStart, nil)
}

// sshStep runs a command in the workspace (coder ssh, or OpenSSH through
// config-ssh) and checks its output. A killed agent is seen disconnected
// and the workspace restarted; any other fault must leave the command
// working, and one injected while it runs must not break it.
func (it *iteration) sshStep(step int, f *fault) {
	w := it.w
	w.t.Helper()
	if f != nil && !f.during {
		it.inject(f, "")
	}
	if it.agentKilled {
		it.awaitAgentNotConnected()
		it.restart()
		it.agentKilled = false
	}
	for attempt := 1; ; attempt++ {
		if !it.waitAgentReady(3 * time.Minute) {
			a, _ := it.agent()
			w.t.Fatalf("iteration %d: agent not ready before %s: status %s lifecycle %s\n%s", it.n, stepNames[step], a.Status, a.LifecycleState, it.diagnose())
		}
		var during *fault
		if f != nil && f.during && attempt == 1 {
			during = f
		}
		err := it.sshOnce(step, during)
		if err == nil {
			return
		}
		if during != nil && during.kind == faultAgent {
			it.logf("%s broke with its agent, as it must: %v", stepNames[step], err)
			it.awaitAgentNotConnected()
			it.restart()
			it.agentKilled = false
			continue
		}
		w.t.Fatalf("iteration %d: %s failed (attempt %d, fault %s: %s): %v", it.n, stepNames[step], attempt, it.fault, it.fault.fired, err)
	}
}

// diagnose describes the workspace's processes and agent log for a
// failure message.
func (it *iteration) diagnose() string {
	var b strings.Builder
	for _, p := range markedProcesses(it.w.runID) {
		if p.env["CODER_WORKSPACE_NAME"] == it.name {
			fmt.Fprintf(&b, "process %d (parent %d, session %s): %s\n", p.pid, parentOf(p.pid), sessionOf(p.pid), p.cmdline)
		}
	}
	raw, err := os.ReadFile(filepath.Join(it.home(), ".coder-agent", "agent.log"))
	fmt.Fprintf(&b, "agent.log (%v), last lines:\n%s\n", err, lastLines(string(raw), 40))
	pid, _ := os.ReadFile(filepath.Join(it.home(), ".coder-agent", "agent.pid"))
	fmt.Fprintf(&b, "agent.pid: %s", pid)
	return b.String()
}

// awaitAgentNotConnected waits until coderd no longer reports the killed
// agent connected (truthful status, issue 12 item 6).
func (it *iteration) awaitAgentNotConnected() {
	it.w.waitFor(90*time.Second, "the killed agent reported not connected", func() (bool, error) {
		a, ok := it.agent()
		return ok && a.Status != codersdk.WorkspaceAgentConnected, nil
	})
}

// sshOnce runs "echo begin; sleep 2; echo end" in the workspace. With
// during, the fault is injected when "begin" arrived; the session must
// then still deliver "end" unless the agent itself was killed.
func (it *iteration) sshOnce(step int, during *fault) error {
	w := it.w
	nonce := randomHex(4)
	script := fmt.Sprintf("echo begin-%s; sleep 2; echo end-%s; echo greeting=$GREETING", nonce, nonce)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var cmd *exec.Cmd
	if step == stepOpenSSH {
		cmd = exec.CommandContext(ctx, "ssh", "-F", w.sshConfig, "-o", "BatchMode=yes", "coder."+it.name, script)
		cmd.Env = append(w.baseEnv(w.sshHome, w.cliTmp), "CODER_CONFIG_DIR="+filepath.Join(w.cliHome, "config"))
	} else {
		cmd = exec.CommandContext(ctx, w.bin, "ssh", it.name, "--", script)
		cmd.Env = append(w.baseEnv(w.cliHome, w.cliTmp), "CODER_CONFIG_DIR="+filepath.Join(w.cliHome, "config"))
	}
	cmd.WaitDelay = 10 * time.Second
	var stderr syncBuffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	var got []string
	sc := bufio.NewScanner(stdout)
	fired := false
	for sc.Scan() {
		got = append(got, sc.Text())
		if during != nil && !fired && sc.Text() == "begin-"+nonce {
			fired = true
			it.inject(during, "")
		}
	}
	_, _ = io.Copy(io.Discard, stdout)
	werr := cmd.Wait()
	if during != nil && !fired {
		it.inject(during, "")
	}
	// GREETING is the agent's env from the template (parameter default).
	want := []string{"begin-" + nonce, "end-" + nonce, "greeting=hello"}
	if werr != nil || strings.Join(got, "\n") != strings.Join(want, "\n") {
		return fmt.Errorf("%s: exit %v, stdout %q (want %q), stderr %q", stepNames[step], werr, got, want, lastLines(stderr.String(), 10))
	}
	return nil
}

// checkConverged: no workspace of the deployment is left with an active
// build, and the iteration's workspace is gone.
func (it *iteration) checkConverged() {
	w := it.w
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := w.client.Workspaces(ctx, "")
	if err != nil {
		w.t.Fatalf("list workspaces: %v", err)
	}
	for _, ws := range res.Workspaces {
		if ws.LatestBuild.Job.Status.Active() {
			w.t.Errorf("iteration %d: workspace %s has an active build #%d (%s)", it.n, ws.Name, ws.LatestBuild.BuildNumber, ws.LatestBuild.Job.Status)
		}
		if ws.Name == it.name {
			w.t.Errorf("iteration %d: deleted workspace still listed (%s)", it.n, ws.LatestBuild.Status)
		}
	}
}

// checkNoLeaks: after the delete, the run's processes are coderd, its
// PostgreSQL and the daemon (no terraform, provider, local-exec shell,
// agent or workspace process), and the daemon's work directory, the
// workspace homes and every temp directory are empty.
func (it *iteration) checkNoLeaks() {
	w := it.w
	w.t.Helper()
	var leaked []procInfo
	var dirs []string
	deadline := time.Now().Add(60 * time.Second)
	for {
		leaked = leaked[:0]
		for _, p := range markedProcesses(w.runID) {
			if p.pid == w.server.pid() || p.pid == w.prov.pid() || isPostgres(p.pid) {
				continue
			}
			leaked = append(leaked, p)
		}
		dirs = dirs[:0]
		for _, d := range []string{w.provWork, filepath.Join(w.provHome, ".coder-workspaces"), w.provTmp, w.serverTmp, w.cliTmp} {
			for _, e := range dirEntries(d) {
				p := filepath.Join(d, e)
				if d == w.provWork && e == ".coder" && strings.Join(dirEntries(p), ",") == "pprof" {
					// The Coder provider's goroutine-dump socket: one per
					// work directory, replaced by every run (by design).
					continue
				}
				dirs = append(dirs, p)
			}
		}
		if len(leaked) == 0 && len(dirs) == 0 {
			return
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	for _, p := range leaked {
		w.t.Errorf("iteration %d: leaked process %d: %s (workspace %s)", it.n, p.pid, p.cmdline, p.env["CODER_WORKSPACE_NAME"])
	}
	for _, d := range dirs {
		var inside []string
		_ = filepath.WalkDir(d, func(path string, _ os.DirEntry, _ error) error {
			if len(inside) < 20 {
				inside = append(inside, path)
			}
			return nil
		})
		w.t.Errorf("iteration %d: leaked file or directory %s: %v", it.n, d, inside)
	}
}

// isPostgres reports whether pid is a server process of the embedded
// cluster (started by coderd, so it carries the run marker).
func isPostgres(pid int) bool {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	return err == nil && filepath.Base(exe) == "postgres"
}

// echoedLine matches a line testdata/chaos.tf echoed.
var echoedLine = regexp.MustCompile(`chaos-log build=[0-9a-f-]{36} phase=[a-z-]+ n=[0-9]+$`)

// checkLogs: every build that echoed lines has each of them in its logs
// from the API, in order, once; a build whose daemon was killed has a
// prefix of them (the lines the daemon had not sent die with it).
func (it *iteration) checkLogs() {
	w := it.w
	w.t.Helper()
	lines, err := w.readLedger(it.ledgerStart)
	if err != nil {
		w.t.Fatal(err)
	}
	var order []string
	byBuild := map[string][]string{}
	for _, l := range lines {
		if _, ok := byBuild[l.build]; !ok {
			order = append(order, l.build)
		}
		byBuild[l.build] = append(byBuild[l.build], l.text)
	}
	for _, id := range order {
		want := byBuild[id]
		buildID, err := uuid.Parse(id)
		if err != nil {
			w.t.Fatalf("ledger build id %q: %v", id, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		ch, closer, err := w.client.WorkspaceBuildLogsAfter(ctx, buildID, 0, false)
		if err != nil {
			cancel()
			w.t.Fatalf("logs of build %s: %v", id, err)
		}
		var got []string
		for l := range ch {
			// Terraform prefixes a local-exec's output with the resource
			// ("terraform_data.x (local-exec): "); the script's own text
			// (in the "Executing:" line) does not match.
			if m := echoedLine.FindString(l.Output); m != "" {
				got = append(got, m)
			}
		}
		closer.Close()
		cancel()
		it.st.mu.Lock()
		it.st.builds++
		it.st.lines += len(got)
		it.st.mu.Unlock()
		ok := strings.Join(got, "\n") == strings.Join(want, "\n")
		if it.lossy[id] && !ok && len(got) <= len(want) && strings.Join(got, "\n") == strings.Join(want[:len(got)], "\n") {
			it.st.note("iteration %d: build %s (daemon killed): %d of %d echoed lines reached coderd before the kill", it.n, id, len(got), len(want))
			ok = true
		}
		if !ok {
			w.t.Errorf("iteration %d: build %s logs differ from what the template echoed:\n got: %q\nwant: %q", it.n, id, got, want)
		}
	}
}
