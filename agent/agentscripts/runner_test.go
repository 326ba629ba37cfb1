package agentscripts

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
)

// logs collects LogSink calls per source.
type logs struct {
	mu  sync.Mutex
	got map[uuid.UUID][]Log
}

func (l *logs) sink(_ context.Context, id uuid.UUID, log Log) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.got == nil {
		l.got = make(map[uuid.UUID][]Log)
	}
	l.got[id] = append(l.got[id], log)
}

func (l *logs) lines(id uuid.UUID, level string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, log := range l.got[id] {
		if log.Level == level {
			out = append(out, log.Output)
		}
	}
	return out
}

func (l *logs) logs(id uuid.UUID) []Log {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Log(nil), l.got[id]...)
}

func newScript(body string) Script {
	return Script{ID: uuid.New(), LogSourceID: uuid.New(), DisplayName: "test", Script: body, RunOnStart: true}
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newRunner(t *testing.T, l *logs, scripts ...Script) *Runner {
	r := &Runner{Scripts: scripts, Shell: "/bin/sh", LogSink: l.sink, Dir: t.TempDir()}
	t.Cleanup(func() { r.Close() })
	return r
}

func TestRunStartOutcomes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		script   string
		timeout  time.Duration
		outcome  Outcome
		exitCode int
		output   []string
		stderr   []string
	}{
		{"success in order", "echo one; echo two >&2; echo three; echo four >&2", 0, OutcomeOK, 0, []string{"one", "three"}, []string{"two", "four"}},
		{"failure", "echo failing; echo why >&2; exit 3", 0, OutcomeFailed, 3, []string{"failing"}, []string{"why"}},
		{"timeout", "echo started; sleep 600", 200 * time.Millisecond, OutcomeTimedOut, -1, []string{"started"}, nil},
		{"partial last line", "printf 'a\\nb'; printf 'c' >&2", 0, OutcomeOK, 0, []string{"a", "b"}, []string{"c"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var l logs
			s := newScript(tt.script)
			s.Timeout = tt.timeout
			res := newRunner(t, &l, s).RunStart(testContext(t))
			if res.Outcome != tt.outcome {
				t.Errorf("outcome = %v, want %v (%+v)", res.Outcome, tt.outcome, res.Scripts)
			}
			if len(res.Scripts) != 1 || res.Scripts[0].ExitCode != tt.exitCode {
				t.Fatalf("results = %+v, want exit code %d", res.Scripts, tt.exitCode)
			}
			if got := l.lines(s.LogSourceID, LevelInfo); strings.Join(got, "|") != strings.Join(tt.output, "|") {
				t.Errorf("output = %q, want %q", got, tt.output)
			}
			// stderr is logged at warn, naming its stream.
			if got := l.lines(s.LogSourceID, LevelWarn); strings.Join(got, "|") != strings.Join(tt.stderr, "|") {
				t.Errorf("stderr = %q, want %q", got, tt.stderr)
			}
			for _, log := range l.logs(s.LogSourceID) {
				want := map[string]string{LevelInfo: StreamStdout, LevelWarn: StreamStderr, LevelError: ""}[log.Level]
				if log.Stream != want {
					t.Errorf("%s line %q from stream %q, want %q", log.Level, log.Output, log.Stream, want)
				}
			}
			if tt.outcome == OutcomeTimedOut && !errors.Is(res.Scripts[0].Err, ErrTimeout) {
				t.Errorf("err = %v, want ErrTimeout", res.Scripts[0].Err)
			}
			if errLines := l.lines(s.LogSourceID, LevelError); (tt.outcome != OutcomeOK) != (len(errLines) == 1) {
				t.Errorf("error log lines = %q", errLines)
			}
		})
	}
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func TestTimeoutKillsProcessGroup(t *testing.T) {
	t.Parallel()
	var l logs
	pidFile := filepath.Join(t.TempDir(), "pid")
	s := newScript(fmt.Sprintf("sleep 600 & echo $! > %s; wait", pidFile))
	s.Timeout = 300 * time.Millisecond
	res := newRunner(t, &l, s).RunStart(testContext(t))
	if res.Outcome != OutcomeTimedOut {
		t.Fatalf("outcome = %v", res.Outcome)
	}
	data, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("background child %d survived the timeout", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestEnvAndDir(t *testing.T) {
	t.Parallel()
	var l logs
	s := newScript(`echo "$FOO|$PWD"`)
	r := newRunner(t, &l, s)
	r.Env = []string{"FOO=from-manifest", "PATH=/usr/bin:/bin"}
	if res := r.RunStart(testContext(t)); res.Outcome != OutcomeOK {
		t.Fatalf("outcome %v: %+v", res.Outcome, res.Scripts)
	}
	want := "from-manifest|" + r.Dir
	if got := l.lines(s.LogSourceID, LevelInfo); len(got) != 1 || got[0] != want {
		t.Errorf("output = %q, want %q", got, want)
	}
}

func TestConcurrentScriptsKeepOrder(t *testing.T) {
	t.Parallel()
	var l logs
	a, b := newScript("seq 1 500"), newScript("seq 1 500 >&2")
	stop := newScript("echo stopping")
	stop.RunOnStart, stop.RunOnStop = false, true
	r := newRunner(t, &l, a, b, stop)
	res := r.RunStart(testContext(t))
	if res.Outcome != OutcomeOK || len(res.Scripts) != 2 {
		t.Fatalf("RunStart = %+v", res)
	}
	for _, s := range []struct {
		Script
		level string
	}{{a, LevelInfo}, {b, LevelWarn}} {
		got := l.lines(s.LogSourceID, s.level)
		if len(got) != 500 {
			t.Fatalf("%d lines", len(got))
		}
		for i, line := range got {
			if line != strconv.Itoa(i+1) {
				t.Fatalf("line %d = %q", i, line)
			}
		}
	}
	if got := l.lines(stop.LogSourceID, LevelInfo); len(got) != 0 {
		t.Errorf("stop script ran on start: %q", got)
	}
	res = r.RunStop(testContext(t))
	if res.Outcome != OutcomeOK || len(res.Scripts) != 1 {
		t.Fatalf("RunStop = %+v", res)
	}
	if got := l.lines(stop.LogSourceID, LevelInfo); len(got) != 1 || got[0] != "stopping" {
		t.Errorf("stop output = %q", got)
	}
}

func TestLongLinesSplit(t *testing.T) {
	t.Parallel()
	var l logs
	s := newScript("printf '%040d\\n' 0; echo short")
	r := newRunner(t, &l, s)
	r.MaxLineBytes = 16
	r.RunStart(testContext(t))
	got := l.lines(s.LogSourceID, LevelInfo)
	want := []string{strings.Repeat("0", 16), strings.Repeat("0", 16), strings.Repeat("0", 8), "short"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("lines = %q, want %q", got, want)
	}
}

func TestContextCancelKills(t *testing.T) {
	t.Parallel()
	var l logs
	s := newScript("echo started; sleep 600")
	r := newRunner(t, &l, s)
	ctx, cancel := context.WithCancel(testContext(t))
	done := make(chan Result, 1)
	go func() { done <- r.RunStart(ctx) }()
	deadline := time.Now().Add(30 * time.Second)
	for len(l.lines(s.LogSourceID, LevelInfo)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("script never started")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	res := <-done
	if res.Outcome != OutcomeFailed || !errors.Is(res.Scripts[0].Err, context.Canceled) {
		t.Errorf("result = %+v", res)
	}
}

func TestStartCron(t *testing.T) {
	t.Parallel()
	var l logs
	s := newScript("echo tick")
	s.RunOnStart = false
	s.Cron = "* * * * * *" // every second
	r := newRunner(t, &l, s)
	ctx, cancel := context.WithCancel(testContext(t))
	if err := r.StartCron(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(l.lines(s.LogSourceID, LevelInfo)) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("cron script did not run twice")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	r.Close()

	bad := newRunner(t, &l, Script{ID: uuid.New(), Cron: "61 * * * *"})
	if err := bad.StartCron(context.Background()); err == nil {
		t.Error("invalid cron accepted")
	}
}
