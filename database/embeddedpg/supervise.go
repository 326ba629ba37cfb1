package embeddedpg

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Defaults of SuperviseOptions.
const (
	DefaultSuperviseInterval = time.Second
	DefaultRestartBackoffMin = 250 * time.Millisecond
	DefaultRestartBackoffMax = 30 * time.Second
)

// SuperviseOptions configures Supervise.
type SuperviseOptions struct {
	// Interval between liveness checks of the postmaster (default 1s). A
	// check reads postmaster.pid and signals the process: no connection.
	Interval time.Duration
	// RestartBackoffMin and RestartBackoffMax bound the jittered
	// exponential wait between failed restart attempts (defaults 250ms and
	// 30s).
	RestartBackoffMin, RestartBackoffMax time.Duration
	// OnRestart, when set, runs after every successful restart (coder
	// server drops the pool's connections to the dead server).
	OnRestart func()
}

// RestartEvent describes one recovery of the server.
type RestartEvent struct {
	// DiedPID is the postmaster that was found dead.
	DiedPID int
	// PID is the new postmaster.
	PID int
	// Attempts is how many start attempts the restart took.
	Attempts int
	// Downtime runs from noticing the death to the server accepting
	// connections again.
	Downtime time.Duration
}

type supervisor struct {
	opts    SuperviseOptions
	cancel  context.CancelFunc
	done    chan struct{}
	mu      sync.Mutex
	events  []RestartEvent
	changed chan struct{} // closed and replaced on every event
}

// Supervise watches the server from now until Stop: when the postmaster is
// gone (killed, crashed, out of memory) it starts the cluster again on the
// same port, so the URL handed out stays valid, retrying with backoff until
// it comes up. PostgreSQL's crash recovery replays the WAL on that start.
// Every death, failed attempt and recovery is logged. Supervise returns at
// once; calling it twice is an error.
func (c *Cluster) Supervise(opts SuperviseOptions) error {
	if opts.Interval <= 0 {
		opts.Interval = DefaultSuperviseInterval
	}
	if opts.RestartBackoffMin <= 0 {
		opts.RestartBackoffMin = DefaultRestartBackoffMin
	}
	if opts.RestartBackoffMax < opts.RestartBackoffMin {
		opts.RestartBackoffMax = max(DefaultRestartBackoffMax, opts.RestartBackoffMin)
	}
	if c.sup != nil {
		return errors.New("embeddedpg: cluster is already supervised")
	}
	pid, err := c.postmasterPID()
	if err != nil {
		return fmt.Errorf("supervise embedded postgres: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &supervisor{opts: opts, cancel: cancel, done: make(chan struct{}), changed: make(chan struct{})}
	c.sup = s
	go c.supervise(ctx, s, pid)
	return nil
}

// Restarts returns the restarts done by the supervisor so far and a channel
// closed at the next one.
func (c *Cluster) Restarts() ([]RestartEvent, <-chan struct{}) {
	s := c.sup
	if s == nil {
		return nil, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]RestartEvent(nil), s.events...), s.changed
}

// PostmasterPID returns the PID of the running postmaster (from
// postmaster.pid).
func (c *Cluster) PostmasterPID() (int, error) { return c.postmasterPID() }

func (c *Cluster) stopSupervisor() {
	if c.sup == nil {
		return
	}
	c.sup.cancel()
	<-c.sup.done
}

func (c *Cluster) supervise(ctx context.Context, s *supervisor, pid int) {
	defer close(s.done)
	t := time.NewTicker(s.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if processAlive(pid) {
			continue
		}
		noticed := time.Now()
		c.logger.Error("embedded postgres exited unexpectedly; restarting it", slog.Int("pid", pid), slog.Int("port", c.port))
		ev, ok := c.restart(ctx, s)
		if !ok {
			return
		}
		ev.DiedPID = pid
		ev.Downtime = time.Since(noticed)
		pid = ev.PID
		c.logger.Info("embedded postgres restarted", slog.Int("pid", pid), slog.Int("port", c.port),
			slog.Int("attempts", ev.Attempts), slog.Duration("downtime", ev.Downtime))
		if s.opts.OnRestart != nil {
			s.opts.OnRestart()
		}
		s.mu.Lock()
		s.events = append(s.events, ev)
		close(s.changed)
		s.changed = make(chan struct{})
		s.mu.Unlock()
	}
}

// restart starts the server again until it answers or ctx ends. Right after
// a postmaster was killed its backends may still hold the shared memory
// segment for a moment, and PostgreSQL refuses to start until they are gone:
// those attempts fail and are retried.
func (c *Cluster) restart(ctx context.Context, s *supervisor) (RestartEvent, bool) {
	step := s.opts.RestartBackoffMin
	for attempt := 1; ; attempt++ {
		pid, err := c.startAgain(ctx)
		if err == nil {
			return RestartEvent{PID: pid, Attempts: attempt}, true
		}
		if ctx.Err() != nil {
			return RestartEvent{}, false
		}
		wait := step/2 + rand.N(step/2+1)
		c.logger.Warn("restart embedded postgres failed; retrying", slog.Int("attempt", attempt),
			slog.Duration("retry_in", wait), slog.Any("error", err))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return RestartEvent{}, false
		case <-t.C:
		}
		step = min(step*2, s.opts.RestartBackoffMax)
	}
}

// startAgain is one restart attempt on the cluster's port.
func (c *Cluster) startAgain(ctx context.Context) (int, error) {
	port := c.port
	adopted, err := c.adoptOrClearStale(ctx)
	if err != nil {
		return 0, err
	}
	if !adopted {
		c.port = port
		if err := c.startServer(ctx, Options{Port: port, NoSync: c.noSync}); err != nil {
			return 0, err
		}
	}
	if c.port != port {
		return 0, fmt.Errorf("server came back on port %d, want %d", c.port, port)
	}
	return c.postmasterPID()
}

// postmasterPID reads the postmaster's PID from postmaster.pid.
func (c *Cluster) postmasterPID() (int, error) {
	b, err := os.ReadFile(filepath.Join(c.pgdata, "postmaster.pid"))
	if err != nil {
		return 0, fmt.Errorf("read postmaster.pid: %w", err)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("postmaster.pid holds no PID: %q", first)
	}
	return pid, nil
}
