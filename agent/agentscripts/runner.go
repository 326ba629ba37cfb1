// Package agentscripts runs a workspace agent's scripts from the manifest:
// startup scripts (run_on_start), shutdown scripts (run_on_stop) and cron
// scripts.
//
// Each script runs as `shell -c script` in Runner.Dir with Runner.Env, in its
// own process group. Its stdout and stderr are read from separate pipes:
// stdout lines reach LogSink at info level, stderr lines at warn level, each
// Log naming its stream. Lines of one stream keep their order; lines of the
// two streams are interleaved as they are read. Lines longer than
// MaxLineBytes are split. A script that exits non-zero has failed; a script
// that outlives its Timeout has its whole process group killed and is
// reported as timed out. The Result tells the agent which lifecycle state to
// report (ready, start_error or start_timeout; off, shutdown_error or
// shutdown_timeout).
//
// Background processes a script starts (a dev server, say) keep running after
// the script exits, and their output keeps flowing to LogSink until they close
// it or Runner.Close is called.
package agentscripts

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/google/uuid"

	"github.com/wgmesh/coder/internal/cron"
)

// DefaultMaxLineBytes bounds a log line when Runner.MaxLineBytes is zero.
const DefaultMaxLineBytes = 64 << 10

// outputDrain bounds how long a finished script's output is awaited before
// its result is returned; the rest still reaches LogSink later.
const outputDrain = time.Second

// Log levels of script logs: stdout is info, stderr warn, and the runner's
// own report of a failed, timed out or unstartable script error.
const (
	LevelInfo  = "info"
	LevelWarn  = "warn"
	LevelError = "error"
)

// Streams a Log can come from; the runner's own lines have none.
const (
	StreamStdout = "stdout"
	StreamStderr = "stderr"
)

// Script is one script of the agent manifest.
type Script struct {
	ID               uuid.UUID
	LogSourceID      uuid.UUID
	DisplayName      string
	Script           string
	RunOnStart       bool
	RunOnStop        bool
	StartBlocksLogin bool
	// Timeout kills the script's process group; zero means no timeout.
	Timeout time.Duration
	// Cron, when set, runs the script on this schedule (see cron.Script)
	// once StartCron is called.
	Cron string
}

// Log is one line of script output.
type Log struct {
	CreatedAt time.Time
	Level     string
	// Stream is StreamStdout or StreamStderr for script output, empty for
	// the runner's own lines.
	Stream string
	Output string
}

// Outcome summarises a set of script runs.
type Outcome int

// Outcomes, in increasing severity.
const (
	// OutcomeOK: every script exited 0.
	OutcomeOK Outcome = iota
	// OutcomeFailed: at least one script failed (and none timed out).
	OutcomeFailed
	// OutcomeTimedOut: at least one script exceeded its timeout.
	OutcomeTimedOut
)

// String returns "ok", "failed" or "timed_out".
func (o Outcome) String() string {
	switch o {
	case OutcomeOK:
		return "ok"
	case OutcomeFailed:
		return "failed"
	case OutcomeTimedOut:
		return "timed_out"
	}
	return fmt.Sprintf("outcome(%d)", int(o))
}

// ErrTimeout marks a script that exceeded its timeout.
var ErrTimeout = errors.New("script timed out")

// ScriptResult is the result of one script run.
type ScriptResult struct {
	Script Script
	// ExitCode is the exit code, or -1 when killed by a signal or not started.
	ExitCode int
	// Err is nil on success; it wraps ErrTimeout on timeout.
	Err      error
	Duration time.Duration
}

// RunReport is the start (Result nil) or the end of one script run.
type RunReport struct {
	Script  Script
	Started time.Time
	Ended   time.Time
	Result  *ScriptResult
}

// Result is the result of RunStart or RunStop.
type Result struct {
	Outcome Outcome
	// Scripts holds one entry per script run, in manifest order.
	Scripts []ScriptResult
}

// Runner runs scripts. Set the fields before first use.
type Runner struct {
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
	// Scripts are the manifest's scripts.
	Scripts []Script
	// Env is the scripts' environment; nil means os.Environ.
	Env []string
	// Dir is the working directory; empty means the agent's.
	Dir string
	// Shell runs scripts with -c; empty means /bin/sh.
	Shell string
	// LogSink receives every output line, in order per script. It may be
	// called concurrently for different scripts. Nil drops output.
	LogSink func(ctx context.Context, sourceID uuid.UUID, log Log)
	// MaxLineBytes splits longer lines; zero means DefaultMaxLineBytes.
	MaxLineBytes int
	// OnRun, when set, is called when a script run starts and when it
	// ends (after its output was passed to LogSink).
	OnRun func(RunReport)

	mu      sync.Mutex
	closed  bool
	readers map[*os.File]struct{}
	wg      sync.WaitGroup
}

func (r *Runner) logger() *slog.Logger {
	if r.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return r.Logger
}

// RunStart runs every RunOnStart script concurrently and waits for them.
func (r *Runner) RunStart(ctx context.Context) Result {
	return r.runAll(ctx, func(s Script) bool { return s.RunOnStart })
}

// RunStop runs every RunOnStop script concurrently and waits for them.
func (r *Runner) RunStop(ctx context.Context) Result {
	return r.runAll(ctx, func(s Script) bool { return s.RunOnStop })
}

func (r *Runner) runAll(ctx context.Context, want func(Script) bool) Result {
	var selected []Script
	for _, s := range r.Scripts {
		if want(s) {
			selected = append(selected, s)
		}
	}
	res := Result{Scripts: make([]ScriptResult, len(selected))}
	var wg sync.WaitGroup
	for i, s := range selected {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res.Scripts[i] = r.Run(ctx, s)
		}()
	}
	wg.Wait()
	for _, sr := range res.Scripts {
		switch {
		case errors.Is(sr.Err, ErrTimeout):
			res.Outcome = OutcomeTimedOut
		case sr.Err != nil && res.Outcome == OutcomeOK:
			res.Outcome = OutcomeFailed
		}
	}
	return res
}

// Run runs one script and waits for it. Cancelling ctx kills the script's
// process group.
func (r *Runner) Run(ctx context.Context, s Script) ScriptResult {
	start := time.Now()
	res := ScriptResult{Script: s, ExitCode: -1}
	logger := r.logger().With("script_id", s.ID.String(), "display_name", s.DisplayName)
	sink := func(level, stream, line string) {
		if r.LogSink != nil {
			r.LogSink(ctx, s.LogSourceID, Log{CreatedAt: time.Now(), Level: level, Stream: stream, Output: line})
		}
	}
	if r.OnRun != nil {
		r.OnRun(RunReport{Script: s, Started: start})
	}
	finish := func(err error) ScriptResult {
		res.Err = err
		res.Duration = time.Since(start)
		if r.OnRun != nil {
			done := res
			r.OnRun(RunReport{Script: s, Started: start, Ended: start.Add(res.Duration), Result: &done})
		}
		if err != nil {
			logger.Warn("script failed", "error", err, "duration", res.Duration)
		} else {
			logger.Info("script finished", "duration", res.Duration)
		}
		return res
	}

	type stream struct {
		name, level string
		r, w        *os.File
	}
	streams := []*stream{{name: StreamStdout, level: LevelInfo}, {name: StreamStderr, level: LevelWarn}}
	for i, st := range streams {
		var err error
		st.r, st.w, err = os.Pipe()
		if err == nil && !r.addReader(st.r) {
			st.r.Close()
			st.w.Close()
			err = errors.New("runner closed")
		}
		if err != nil {
			for _, prev := range streams[:i] {
				prev.w.Close()
				r.removeReader(prev.r)
				r.wg.Done()
			}
			return finish(fmt.Errorf("output pipe: %w", err))
		}
	}
	shell := r.Shell
	if shell == "" {
		shell = "/bin/sh"
	}
	cmd := exec.Command(shell, "-c", s.Script)
	cmd.Dir = r.Dir
	cmd.Env = r.Env
	cmd.Stdout, cmd.Stderr = streams[0].w, streams[1].w
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	logger.Info("running script", "timeout", s.Timeout)
	err := cmd.Start()
	var readers sync.WaitGroup
	for _, st := range streams {
		st.w.Close()
		readers.Add(1)
		go func() { // owned by the runner: ends at EOF or Close
			defer r.wg.Done()
			defer readers.Done()
			defer r.removeReader(st.r)
			r.readLines(st.r, func(line string) { sink(st.level, st.name, line) })
		}()
	}
	outDone := make(chan struct{})
	go func() {
		readers.Wait()
		close(outDone)
	}()
	if err != nil {
		for _, st := range streams {
			st.r.Close()
		}
		<-outDone
		err = fmt.Errorf("start %s: %w", shell, err)
		sink(LevelError, "", err.Error())
		return finish(err)
	}

	var timeout <-chan time.Time
	if s.Timeout > 0 {
		t := time.NewTimer(s.Timeout)
		defer t.Stop()
		timeout = t.C
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	var reason error
	select {
	case err = <-waited:
	case <-timeout:
		reason = fmt.Errorf("%w after %s", ErrTimeout, s.Timeout)
	case <-ctx.Done():
		reason = fmt.Errorf("script cancelled: %w", ctx.Err())
	}
	if reason != nil {
		// Kill the whole group: children the script started die with it.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-waited
	}
	drain := time.NewTimer(outputDrain)
	select {
	case <-outDone:
	case <-drain.C:
	}
	drain.Stop()
	res.ExitCode = cmd.ProcessState.ExitCode()
	switch {
	case reason != nil:
		err = reason
	case err != nil:
		err = fmt.Errorf("script exited: %w", err)
	}
	if err != nil {
		sink(LevelError, "", fmt.Sprintf("%s: %v", displayName(s), err))
	}
	return finish(err)
}

func displayName(s Script) string {
	if s.DisplayName != "" {
		return s.DisplayName
	}
	return "script " + s.ID.String()
}

// readLines calls fn for every line of rd, splitting lines longer than
// MaxLineBytes. A trailing partial line is delivered at EOF.
func (r *Runner) readLines(rd io.Reader, fn func(string)) {
	max := r.MaxLineBytes
	if max <= 0 {
		max = DefaultMaxLineBytes
	}
	br := bufio.NewReaderSize(rd, max)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			line = bytes.TrimSuffix(line, []byte("\n"))
			line = bytes.TrimSuffix(line, []byte("\r"))
			fn(string(line))
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

func (r *Runner) addReader(f *os.File) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	if r.readers == nil {
		r.readers = make(map[*os.File]struct{})
	}
	r.readers[f] = struct{}{}
	r.wg.Add(1)
	return true
}

func (r *Runner) removeReader(f *os.File) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.readers, f)
	f.Close()
}

// Close stops forwarding output of processes that outlived their scripts and
// waits for the runner's goroutines. Cancel the context given to StartCron
// first. Scripts cannot run after Close.
func (r *Runner) Close() error {
	r.mu.Lock()
	r.closed = true
	for f := range r.readers {
		f.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
	return nil
}

// StartCron validates every script's Cron and runs each scheduled script on
// its schedule until ctx is cancelled. A run that is still going when the next
// activation comes skips that activation.
func (r *Runner) StartCron(ctx context.Context) error {
	type job struct {
		s     Script
		sched *cron.Schedule
	}
	var jobs []job
	for _, s := range r.Scripts {
		if s.Cron == "" {
			continue
		}
		sched, err := cron.Script(s.Cron)
		if err != nil {
			return fmt.Errorf("script %s: %w", displayName(s), err)
		}
		jobs = append(jobs, job{s, sched})
	}
	for _, j := range jobs {
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			return errors.New("runner closed")
		}
		r.wg.Add(1)
		r.mu.Unlock()
		go func() {
			defer r.wg.Done()
			r.cronLoop(ctx, j.s, j.sched)
		}()
	}
	return nil
}

func (r *Runner) cronLoop(ctx context.Context, s Script, sched *cron.Schedule) {
	for {
		next := sched.Next(time.Now())
		if next.IsZero() {
			r.logger().Warn("cron schedule has no future activation", "script_id", s.ID.String(), "cron", s.Cron)
			return
		}
		t := time.NewTimer(time.Until(next))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		r.Run(ctx, s)
	}
}
