package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/wgmesh/coder/agent/agentssh"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/codersdk/agentproto"
	"github.com/wgmesh/coder/codersdk/agentsdk"
)

// lifecycleReporter delivers lifecycle changes to coderd in order, retrying
// each until acknowledged.
type lifecycleReporter struct {
	logger  *slog.Logger
	mu      sync.Mutex
	pending []agentsdk.PostLifecycleRequest
	notify  chan struct{}
}

func newLifecycleReporter(logger *slog.Logger) *lifecycleReporter {
	return &lifecycleReporter{logger: logger, notify: make(chan struct{}, 1)}
}

func (l *lifecycleReporter) report(req agentsdk.PostLifecycleRequest) {
	l.mu.Lock()
	l.pending = append(l.pending, req)
	l.mu.Unlock()
	select {
	case l.notify <- struct{}{}:
	default:
	}
}

func (l *lifecycleReporter) head() (agentsdk.PostLifecycleRequest, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.pending) == 0 {
		return agentsdk.PostLifecycleRequest{}, false
	}
	return l.pending[0], true
}

func (l *lifecycleReporter) pop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pending = l.pending[1:]
}

// sendOne posts the head; it returns false when it should be retried.
func (l *lifecycleReporter) sendOne(ctx context.Context, client *agentsdk.Client, req agentsdk.PostLifecycleRequest) bool {
	err := client.PostLifecycle(ctx, req)
	if err == nil {
		return true
	}
	if apiErr, ok := codersdk.AsError(err); ok && apiErr.StatusCode() == http.StatusBadRequest {
		l.logger.Warn("coderd refused a lifecycle state; dropping it", "state", req.State, "error", err)
		return true
	}
	l.logger.Debug("report lifecycle failed; retrying", "state", req.State, "error", err)
	return false
}

func (l *lifecycleReporter) run(ctx context.Context, client *agentsdk.Client, bo *backoff) {
	for {
		req, ok := l.head()
		if !ok {
			select {
			case <-ctx.Done():
				return
			case <-l.notify:
			}
			continue
		}
		if l.sendOne(ctx, client, req) {
			l.pop()
			bo.reset()
			continue
		}
		if !bo.wait(ctx) {
			return
		}
	}
}

func (l *lifecycleReporter) flush(ctx context.Context, client *agentsdk.Client, bo *backoff) {
	for {
		req, ok := l.head()
		if !ok {
			return
		}
		if l.sendOne(ctx, client, req) {
			l.pop()
			bo.reset()
			continue
		}
		if !bo.wait(ctx) {
			return
		}
	}
}

// statsLoop reports stats on the interval coderd returns.
func (a *Agent) statsLoop(ctx context.Context) {
	interval := 30 * time.Second
	var lastRx, lastTx int64
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		stats, rx, tx := a.collectStats(ctx)
		stats.RxBytes, stats.TxBytes = counterDelta(rx, lastRx), counterDelta(tx, lastTx)
		res, err := a.opts.Client.PostStats(ctx, stats)
		if err != nil {
			a.logger.Debug("report stats failed", "error", err)
		} else {
			lastRx, lastTx = rx, tx
			if res.ReportInterval > 0 {
				interval = res.ReportInterval
			}
		}
		timer.Reset(interval)
	}
}

// counterDelta is the growth of a cumulative counter since last; a counter
// that went down (a peer left and took its bytes with it) counts from zero.
func counterDelta(cur, last int64) int64 {
	if cur < last {
		return cur
	}
	return cur - last
}

// collectStats gathers session counts, the median latency to active peers
// and the cumulative rx/tx byte counters of the mesh.
func (a *Agent) collectStats(ctx context.Context) (agentsdk.Stats, int64, int64) {
	a.mu.Lock()
	conn, sshSrv, rptyOpen := a.conn, a.ssh, a.rptyOpen
	a.mu.Unlock()
	stats := agentsdk.Stats{ConnectionsByProto: map[string]int64{}, ConnectionMedianLatencyMS: -1}
	if sshSrv != nil {
		cs := sshSrv.ConnStats()
		stats.ConnectionsByProto["ssh"] = cs.Conns
		stats.ConnectionCount += cs.Conns
		stats.SessionCountSSH = cs.Sessions[agentssh.SessionTypeSSH] + cs.Sessions[agentssh.SessionTypeSFTP]
		stats.SessionCountVSCode = cs.Sessions[agentssh.SessionTypeVSCode]
		stats.SessionCountJetBrains = cs.Sessions[agentssh.SessionTypeJetBrains]
	}
	stats.SessionCountReconnectingPTY = rptyOpen
	if rptyOpen > 0 {
		stats.ConnectionsByProto["reconnecting-pty"] = rptyOpen
		stats.ConnectionCount += rptyOpen
	}
	var rx, tx int64
	if conn != nil {
		st := conn.Status()
		var lat []float64
		for _, p := range st.Peers {
			rx += p.RxBytes
			tx += p.TxBytes
			if !p.Active || p.Lost || len(p.Addresses) == 0 {
				continue
			}
			pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			res, err := conn.Ping(pctx, p.Addresses[0].Addr())
			cancel()
			if err == nil {
				lat = append(lat, float64(res.Latency)/float64(time.Millisecond))
			}
		}
		if len(lat) > 0 {
			sort.Float64s(lat)
			stats.ConnectionMedianLatencyMS = lat[len(lat)/2]
		}
	}
	return stats, rx, tx
}

// metadataLoop runs every metadata script on its interval and reports the
// results.
func (a *Agent) metadataLoop(ctx context.Context, m agentsdk.Manifest) {
	if len(m.Metadata) == 0 {
		return
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, md := range m.Metadata {
		wg.Add(1)
		go func() {
			defer wg.Done()
			interval := time.Duration(md.Interval) * time.Second
			if interval <= 0 {
				interval = 10 * time.Second
			}
			timeout := time.Duration(md.Timeout) * time.Second
			if timeout <= 0 || timeout > interval {
				timeout = interval
			}
			timer := time.NewTimer(0)
			defer timer.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-timer.C:
				}
				res := a.collectMetadata(ctx, m, md, timeout)
				if err := a.opts.Client.PostMetadata(ctx, agentsdk.PostMetadataRequest{Metadata: []agentsdk.MetadataResult{res}}); err != nil {
					a.logger.Debug("report metadata failed", "key", md.Key, "error", err)
				}
				timer.Reset(interval)
			}
		}()
	}
}

func (a *Agent) collectMetadata(ctx context.Context, m agentsdk.Manifest, md agentsdk.MetadataDescription, timeout time.Duration) agentsdk.MetadataResult {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, a.shell(), "-c", md.Script)
	cmd.Env = a.env(m)
	if dir := expandDir(m.Directory); dir != "" {
		cmd.Dir = dir
	}
	cmd.WaitDelay = time.Second
	var out strings.Builder
	cmd.Stdout = &limitedWriter{w: &out, n: 64 << 10}
	cmd.Stderr = cmd.Stdout
	err := cmd.Run()
	res := agentsdk.MetadataResult{Key: md.Key, CollectedAt: time.Now(), Value: strings.TrimSpace(out.String())}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		res.Error = "metadata script timed out"
	} else if err != nil {
		res.Error = err.Error()
	}
	return res
}

type limitedWriter struct {
	w io.Writer
	n int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	total := len(p)
	if l.n <= 0 {
		return total, nil
	}
	if len(p) > l.n {
		p = p[:l.n]
	}
	n, err := l.w.Write(p)
	l.n -= n
	if err != nil {
		return n, err
	}
	return total, nil
}

// appHealthLoop checks each app with a health check URL on its interval:
// initializing until the first success, healthy after a success, unhealthy
// after threshold consecutive failures. Changes are reported to coderd.
func (a *Agent) appHealthLoop(ctx context.Context, m agentsdk.Manifest) {
	type appState struct {
		app      agentsdk.App
		health   codersdk.WorkspaceAppHealth
		failures int32
	}
	var apps []*appState
	for _, app := range m.Apps {
		if app.Healthcheck.URL == "" || app.Healthcheck.Interval <= 0 {
			continue
		}
		apps = append(apps, &appState{app: app, health: codersdk.WorkspaceAppHealthInitializing})
	}
	if len(apps) == 0 {
		return
	}
	client := &http.Client{}
	var mu sync.Mutex
	changed := map[uuid.UUID]codersdk.WorkspaceAppHealth{}
	for _, s := range apps {
		changed[s.app.ID] = s.health
	}
	notify := make(chan struct{}, 1)
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, s := range apps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			interval := time.Duration(s.app.Healthcheck.Interval) * time.Second
			threshold := s.app.Healthcheck.Threshold
			if threshold <= 0 {
				threshold = 1
			}
			ticker := time.NewTicker(interval)
			defer ticker.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-ticker.C:
				}
				ok := checkApp(ctx, client, s.app.Healthcheck.URL, interval)
				next := s.health
				if ok {
					s.failures = 0
					next = codersdk.WorkspaceAppHealthHealthy
				} else {
					s.failures++
					if s.failures >= threshold {
						next = codersdk.WorkspaceAppHealthUnhealthy
					}
				}
				if next != s.health {
					s.health = next
					mu.Lock()
					changed[s.app.ID] = next
					mu.Unlock()
					select {
					case notify <- struct{}{}:
					default:
					}
				}
			}
		}()
	}
	bo := a.newBackoff()
	pending := true
	for {
		if pending {
			mu.Lock()
			req := agentsdk.PostAppHealthsRequest{Healths: changed}
			changed = map[uuid.UUID]codersdk.WorkspaceAppHealth{}
			mu.Unlock()
			if err := a.opts.Client.PostAppHealth(ctx, req); err != nil {
				mu.Lock()
				for id, h := range req.Healths {
					if _, newer := changed[id]; !newer {
						changed[id] = h
					}
				}
				mu.Unlock()
				if !bo.wait(ctx) {
					return
				}
				continue
			}
			bo.reset()
			pending = false
		}
		select {
		case <-ctx.Done():
			return
		case <-notify:
			pending = true
		}
	}
}

func checkApp(ctx context.Context, client *http.Client, url string, timeout time.Duration) bool {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	res, err := client.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
	_ = res.Body.Close()
	return res.StatusCode < 500
}

// serveSpeedtest serves one speed test (agentproto.SpeedtestRequest).
func serveSpeedtest(c net.Conn) {
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(io.LimitReader(c, agentproto.MaxSpeedtestHeader))
	line, err := br.ReadBytes('\n')
	if err != nil {
		return
	}
	var req agentproto.SpeedtestRequest
	if err := json.Unmarshal(line, &req); err != nil {
		return
	}
	// What was read past the header line belongs to an upload.
	rest := make([]byte, br.Buffered())
	_, _ = io.ReadFull(br, rest)
	_ = c.SetReadDeadline(time.Time{})
	if req.Duration <= 0 || req.Duration > agentproto.MaxSpeedtestDuration {
		req.Duration = agentproto.MaxSpeedtestDuration
	}
	deadline := time.Now().Add(req.Duration + 5*time.Second)
	_ = c.SetDeadline(deadline)
	switch req.Direction {
	case agentproto.SpeedtestDownload:
		buf := make([]byte, 32<<10)
		end := time.Now().Add(req.Duration)
		for time.Now().Before(end) {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	case agentproto.SpeedtestUpload:
		n, _ := io.Copy(io.Discard, io.MultiReader(bytes.NewReader(rest), halfCloseReader{c}))
		var out [8]byte
		binary.BigEndian.PutUint64(out[:], uint64(n))
		_, _ = c.Write(out[:])
	}
}

// halfCloseReader reads until the peer closes its write side.
type halfCloseReader struct{ c net.Conn }

func (h halfCloseReader) Read(p []byte) (int, error) { return h.c.Read(p) }

// httpAPI is the agent's HTTP API on tailnet port 4.
func (a *Agent) httpAPI() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+agentproto.ListeningPortsPath, func(w http.ResponseWriter, _ *http.Request) {
		ports, err := listeningPorts()
		w.Header().Set("Content-Type", "application/json")
		if err != nil {
			w.WriteHeader(http.StatusInternalServerError)
			_ = json.NewEncoder(w).Encode(agentproto.HTTPError{Message: err.Error()})
			return
		}
		_ = json.NewEncoder(w).Encode(agentproto.ListeningPortsResponse{Ports: ports})
	})
	mux.HandleFunc("GET "+agentproto.LifecyclePath, func(w http.ResponseWriter, _ *http.Request) {
		state, _ := a.Lifecycle()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(agentproto.LifecycleResponse{State: string(state)})
	})
	return mux
}
