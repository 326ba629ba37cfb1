package coderd_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/wgmesh/coder/coderd"
	"github.com/wgmesh/coder/coderd/coderdtest"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/codersdk/agentproto"
	"github.com/wgmesh/coder/codersdk/agentsdk"
	"github.com/wgmesh/coder/tunnel"
)

// agentStatTotals sums what the agent reported through report-stats.
type agentStatTotals struct {
	rows               int64
	rx, tx             int64
	maxSSH, latestSSH  int64
	latestSSHProtoConn int64
	maxLatencyMS       float64
}

func readAgentStats(t *testing.T, e *agentEnv, agentID uuid.UUID) agentStatTotals {
	t.Helper()
	ctx := context.Background()
	var s agentStatTotals
	err := e.pool.QueryRow(ctx, `SELECT count(*), coalesce(sum(rx_bytes), 0), coalesce(sum(tx_bytes), 0),
		coalesce(max(session_count_ssh), 0), coalesce(max(connection_median_latency_ms), -1)
		FROM workspace_agent_stats WHERE agent_id = $1`, agentID).
		Scan(&s.rows, &s.rx, &s.tx, &s.maxSSH, &s.maxLatencyMS)
	if err != nil {
		t.Fatalf("read stats: %v", err)
	}
	if s.rows == 0 {
		return s
	}
	latest, err := e.store.GetLatestWorkspaceAgentStat(ctx, agentID)
	if err != nil {
		t.Fatalf("latest stat: %v", err)
	}
	s.latestSSH = latest.SessionCountSsh
	var byProto map[string]int64
	if err := json.Unmarshal(latest.ConnectionsByProto, &byProto); err != nil {
		t.Fatalf("decode connections_by_proto %q: %v", latest.ConnectionsByProto, err)
	}
	s.latestSSHProtoConn = byProto["ssh"]
	return s
}

func TestAgentStatsReported(t *testing.T) {
	t.Parallel()
	e := newAgentEnvWith(t, func(o *coderd.AgentOptions) { o.StatsReportInterval = 100 * time.Millisecond })
	owner := e.client()
	first := coderdtest.CreateFirstUser(t, owner)
	agentID, token := insertAgent(t, e.store, uuid.MustParse(first.UserID))
	runAgent(t, e.url, token)
	waitAgent(t, owner, agentID, "ready", func(a codersdk.WorkspaceAgent) bool {
		return a.LifecycleState == codersdk.WorkspaceAgentLifecycleReady
	})

	sc := dialAgentSSH(t, owner, e.derpMap, agentID)
	// An open session moving 256 KiB each way.
	sess, err := sc.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	stdin, err := sess.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := sess.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.Start("cat"); err != nil {
		t.Fatal(err)
	}
	payload := make([]byte, 256<<10)
	_, _ = rand.Read(payload)
	go func() { _, _ = stdin.Write(payload) }()
	echoed := make([]byte, len(payload))
	if _, err := io.ReadFull(stdout, echoed); err != nil || !bytes.Equal(echoed, payload) {
		t.Fatalf("echo through cat: %v", err)
	}

	var st agentStatTotals
	eventually(t, 60*time.Second, "stats with an open SSH session and the bytes moved", func() bool {
		st = readAgentStats(t, e, agentID)
		// A latency was measured to the user's peer (-1 means none).
		return st.latestSSH >= 1 && st.latestSSHProtoConn >= 1 && st.rx >= int64(len(payload)) &&
			st.tx >= int64(len(payload)) && st.maxLatencyMS >= 0
	})

	// After the session ends, the counts go back to zero.
	_ = stdin.Close()
	if err := sess.Wait(); err != nil {
		t.Fatalf("session: %v", err)
	}
	_ = sc.Close()
	eventually(t, 60*time.Second, "stats after the session ended", func() bool {
		st = readAgentStats(t, e, agentID)
		return st.latestSSH == 0 && st.latestSSHProtoConn == 0
	})
	if st.maxSSH < 1 {
		t.Fatalf("no report counted the SSH session: %+v", st)
	}
}

func TestAgentMetadataReported(t *testing.T) {
	t.Parallel()
	e := newAgentEnv(t)
	owner := e.client()
	first := coderdtest.CreateFirstUser(t, owner)
	agentID, token := insertAgentSpec(t, e.store, uuid.MustParse(first.UserID), agentSpec{metadata: []agentsdk.MetadataDescription{
		{Key: "greeting", DisplayName: "Greeting", Script: "echo hi-$CODER_WORKSPACE_AGENT_NAME", Interval: 1, Timeout: 1},
		{Key: "broken", DisplayName: "Broken", Script: "echo partial; exit 3", Interval: 1, Timeout: 1},
		{Key: "slow", DisplayName: "Slow", Script: "sleep 30", Interval: 1, Timeout: 1},
	}})

	before, err := owner.WorkspaceAgentMetadata(context.Background(), agentID)
	if err != nil {
		t.Fatal(err)
	}
	if len(before) != 3 {
		t.Fatalf("metadata before the agent: %+v", before)
	}
	for _, md := range before {
		if md.Result.CollectedAt != nil || md.Result.Value != "" || md.Description.Interval != 1 {
			t.Fatalf("metadata %q before the agent ran: %+v", md.Description.Key, md)
		}
	}

	started := time.Now()
	runAgent(t, e.url, token)
	want := map[string]codersdk.WorkspaceAgentMetadataResult{
		"greeting": {Value: "hi-main"},
		"broken":   {Value: "partial", Error: "exit status 3"},
		"slow":     {Error: "metadata script timed out"},
	}
	var got map[string]codersdk.WorkspaceAgentMetadataResult
	eventually(t, 60*time.Second, "metadata results", func() bool {
		mds, err := owner.WorkspaceAgentMetadata(context.Background(), agentID)
		if err != nil {
			return false
		}
		got = map[string]codersdk.WorkspaceAgentMetadataResult{}
		for _, md := range mds {
			got[md.Description.Key] = md.Result
		}
		for k, w := range want {
			g := got[k]
			if g.CollectedAt == nil || g.Value != w.Value || g.Error != w.Error {
				return false
			}
		}
		return true
	})
	for k, r := range got {
		if r.CollectedAt.Before(started.Add(-time.Minute)) {
			t.Errorf("%s collected at %v, before the agent started at %v", k, r.CollectedAt, started)
		}
	}
}

func TestAgentAppHealth(t *testing.T) {
	t.Parallel()
	healthy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(healthy.Close)
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(failing.Close)

	e := newAgentEnv(t)
	owner := e.client()
	first := coderdtest.CreateFirstUser(t, owner)
	apps := []agentsdk.App{
		{ID: uuid.New(), Slug: "good", DisplayName: "Good", URL: healthy.URL,
			Healthcheck: codersdk.Healthcheck{URL: healthy.URL, Interval: 1, Threshold: 1}},
		{ID: uuid.New(), Slug: "bad", DisplayName: "Bad", URL: failing.URL,
			Healthcheck: codersdk.Healthcheck{URL: failing.URL, Interval: 1, Threshold: 2}},
		{ID: uuid.New(), Slug: "plain", DisplayName: "Plain", URL: healthy.URL},
	}
	agentID, token := insertAgentSpec(t, e.store, uuid.MustParse(first.UserID), agentSpec{apps: apps})

	health := func(a codersdk.WorkspaceAgent) map[string]codersdk.WorkspaceAppHealth {
		out := map[string]codersdk.WorkspaceAppHealth{}
		for _, app := range a.Apps {
			out[app.Slug] = app.Health
		}
		return out
	}
	a0, err := owner.WorkspaceAgent(context.Background(), agentID)
	if err != nil {
		t.Fatal(err)
	}
	if h := health(a0); h["good"] != codersdk.WorkspaceAppHealthInitializing || h["bad"] != codersdk.WorkspaceAppHealthInitializing || h["plain"] != codersdk.WorkspaceAppHealthDisabled {
		t.Fatalf("before the agent: %v", h)
	}

	runAgent(t, e.url, token)
	got := waitAgent(t, owner, agentID, "app health", func(a codersdk.WorkspaceAgent) bool {
		h := health(a)
		return h["good"] == codersdk.WorkspaceAppHealthHealthy && h["bad"] == codersdk.WorkspaceAppHealthUnhealthy
	})
	if h := health(got); h["plain"] != codersdk.WorkspaceAppHealthDisabled {
		t.Fatalf("app without a health check: %v", h)
	}
}

func TestAgentSpeedtestAndHTTPAPI(t *testing.T) {
	t.Parallel()
	e := newAgentEnv(t)
	owner := e.client()
	first := coderdtest.CreateFirstUser(t, owner)
	agentID, token := insertAgent(t, e.store, uuid.MustParse(first.UserID))
	runAgent(t, e.url, token)
	waitAgent(t, owner, agentID, "ready", func(a codersdk.WorkspaceAgent) bool {
		return a.LifecycleState == codersdk.WorkspaceAgentLifecycleReady
	})
	conn := dialAgentTunnel(t, owner, e.derpMap, agentID)
	ip := tunnel.IPFromUUID(agentID)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	t.Run("speedtest upload", func(t *testing.T) {
		c, err := conn.DialContext(ctx, "tcp", netip.AddrPortFrom(ip, agentproto.SpeedtestPort).String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := json.NewEncoder(c).Encode(agentproto.SpeedtestRequest{Direction: agentproto.SpeedtestUpload, Duration: 10 * time.Second}); err != nil {
			t.Fatal(err)
		}
		const size = 4 << 20
		if _, err := io.CopyN(c, rand.Reader, size); err != nil {
			t.Fatalf("upload: %v", err)
		}
		cw, ok := c.(interface{ CloseWrite() error })
		if !ok {
			t.Fatalf("%T cannot half-close", c)
		}
		if err := cw.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		var n [8]byte
		if _, err := io.ReadFull(c, n[:]); err != nil {
			t.Fatalf("read count: %v", err)
		}
		if got := binary.BigEndian.Uint64(n[:]); got != size {
			t.Fatalf("agent counted %d bytes, sent %d", got, size)
		}
	})
	t.Run("speedtest download", func(t *testing.T) {
		c, err := conn.DialContext(ctx, "tcp", netip.AddrPortFrom(ip, agentproto.SpeedtestPort).String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := json.NewEncoder(c).Encode(agentproto.SpeedtestRequest{Direction: agentproto.SpeedtestDownload, Duration: 300 * time.Millisecond}); err != nil {
			t.Fatal(err)
		}
		// The agent writes for the duration, then closes.
		n, err := io.Copy(io.Discard, c)
		if err != nil {
			t.Fatalf("download: %v", err)
		}
		if n < 32<<10 {
			t.Fatalf("downloaded %d bytes", n)
		}
	})
	t.Run("http api", func(t *testing.T) {
		// A port opened in the workspace (this host) is listed.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		port := uint16(ln.Addr().(*net.TCPAddr).Port)
		hc := &http.Client{Transport: &http.Transport{DialContext: conn.DialContext}}
		defer hc.CloseIdleConnections()
		base := fmt.Sprintf("http://%s", netip.AddrPortFrom(ip, agentproto.HTTPAPIPort))
		get := func(path string, out any) {
			t.Helper()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
			if err != nil {
				t.Fatal(err)
			}
			res, err := hc.Do(req)
			if err != nil {
				t.Fatalf("GET %s: %v", path, err)
			}
			defer res.Body.Close()
			if res.StatusCode != http.StatusOK {
				body, _ := io.ReadAll(res.Body)
				t.Fatalf("GET %s: %d %s", path, res.StatusCode, body)
			}
			if err := json.NewDecoder(res.Body).Decode(out); err != nil {
				t.Fatalf("decode %s: %v", path, err)
			}
		}
		var ports agentproto.ListeningPortsResponse
		get(agentproto.ListeningPortsPath, &ports)
		found := false
		for _, p := range ports.Ports {
			if p.Port == port && p.Network == "tcp" {
				found = true
			}
		}
		if !found {
			t.Fatalf("port %d not listed in %+v", port, ports.Ports)
		}
		var life agentproto.LifecycleResponse
		get(agentproto.LifecyclePath, &life)
		if codersdk.WorkspaceAgentLifecycle(life.State) != codersdk.WorkspaceAgentLifecycleReady {
			t.Fatalf("lifecycle over the agent API: %q", life.State)
		}
	})
}

func TestAgentScriptsInAPI(t *testing.T) {
	t.Parallel()
	e := newAgentEnv(t)
	owner := e.client()
	first := coderdtest.CreateFirstUser(t, owner)
	gate := filepath.Join(t.TempDir(), "go")
	blocking := startScript(fmt.Sprintf("while [ ! -f %q ]; do sleep 0.05; done", gate), 0)
	blocking.StartBlocksLogin = true
	agentID, token := insertAgent(t, e.store, uuid.MustParse(first.UserID), blocking)

	a, err := owner.WorkspaceAgent(context.Background(), agentID)
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Scripts) != 1 || !a.Scripts[0].StartBlocksLogin || !a.Scripts[0].RunOnStart || a.Scripts[0].LogSourceID != blocking.LogSourceID {
		t.Fatalf("scripts: %+v", a.Scripts)
	}
	if a.StartupScriptBehavior != "blocking" || !a.LoginBlocked() {
		t.Fatalf("behavior %q blocked %v", a.StartupScriptBehavior, a.LoginBlocked())
	}
	runAgent(t, e.url, token)
	waitAgent(t, owner, agentID, "starting", func(a codersdk.WorkspaceAgent) bool {
		return a.LifecycleState == codersdk.WorkspaceAgentLifecycleStarting && a.LoginBlocked()
	})
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	waitAgent(t, owner, agentID, "ready and no longer blocking", func(a codersdk.WorkspaceAgent) bool {
		return a.LifecycleState == codersdk.WorkspaceAgentLifecycleReady && !a.LoginBlocked()
	})
}
