package cli_test

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/wgmesh/coder/coderd/coderdtest"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/database"
	"github.com/wgmesh/coder/database/dbtestutil"
	"github.com/wgmesh/coder/internal/hatest"
)

// haEnv is an HA deployment (built binary, real HAProxy, one PostgreSQL)
// with an owner, and a reachEnv whose database is the shared one, to add
// workspaces and run agents.
type haEnv struct {
	cluster *hatest.Cluster
	reach   *reachEnv
	pool    *database.Store
	bin     string // the built coder binary
}

func newHAEnv(t testing.TB, replicas int, serverArgs ...string) *haEnv {
	t.Helper()
	return newHAEnvWith(t, hatest.Options{Replicas: replicas, Args: serverArgs})
}

// newHAEnvWith starts the deployment of opts; the binary is built here and
// the database is a fresh test database unless opts names one.
func newHAEnvWith(t testing.TB, opts hatest.Options) *haEnv {
	t.Helper()
	replicas := opts.Replicas
	bin := buildCoder(t)
	opts.Binary = bin
	if opts.PostgresURL == "" {
		opts.PostgresURL = dbtestutil.NewDB(t)
	}
	dbURL := opts.PostgresURL
	cluster := hatest.Start(t, opts)
	lb, err := url.Parse(cluster.URL)
	if err != nil {
		t.Fatal(err)
	}
	client := codersdk.New(lb)
	first := coderdtest.CreateFirstUser(t, client)
	owner, err := uuid.Parse(first.UserID)
	if err != nil {
		t.Fatal(err)
	}
	store := database.NewStore(dbtestutil.NewPoolFor(t, dbURL))
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config")
	if err := os.MkdirAll(cfg, 0o700); err != nil {
		t.Fatal(err)
	}
	e := &reachEnv{t: t, client: client, srv: &coderdtest.Server{URL: lb, DB: store}, owner: owner,
		env: []string{"HOME=" + dir, "CODER_CONFIG_DIR=" + cfg}, cfgDir: cfg, home: dir}
	e.pointCLI(cluster.URL)
	// Every replica lists all of them.
	waitFor(t, time.Minute, "every replica registered", func() (bool, error) {
		rs, err := client.Replicas(context.Background())
		return err == nil && len(rs) == replicas, err
	})
	return &haEnv{cluster: cluster, reach: e, pool: store, bin: bin}
}

// pointCLI makes the CLI config talk to u.
func (e *reachEnv) pointCLI(u string) {
	e.t.Helper()
	for name, v := range map[string]string{"url": u, "session": e.client.SessionToken()} {
		if err := os.WriteFile(filepath.Join(e.cfgDir, name), []byte(v), 0o600); err != nil {
			e.t.Fatal(err)
		}
	}
}

// agentReplica returns the URL of the replica whose coordinator serves
// peer id (from the coordinator's tables and the replica list).
func (h *haEnv) agentReplica(t testing.TB, id uuid.UUID) string {
	t.Helper()
	ctx := context.Background()
	var coord uuid.UUID
	waitFor(t, time.Minute, "the peer registered", func() (bool, error) {
		err := h.pool.Pool().QueryRow(ctx, `SELECT coordinator_id FROM tailnet_peers WHERE id = $1 AND status = 'ok'`, id).Scan(&coord)
		return err == nil, nil
	})
	rs, err := h.reach.client.Replicas(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if r.ID == coord {
			return r.RelayAddress
		}
	}
	t.Fatalf("coordinator %s is no replica of %v", coord, rs)
	return ""
}

// TestHACrossReplica: an agent connected through replica A, `coder ssh`
// through replica B (each pinned to one replica by URL): the client and
// the agent exchange nodes through the PostgreSQL coordinator and the
// session works.
func TestHACrossReplica(t *testing.T) {
	t.Parallel()
	h := newHAEnv(t, 2)
	a, b := h.cluster.Replicas[0], h.cluster.Replicas[1]
	e := h.reach
	agentID, token := e.addWorkspace("ws1")
	e.srv.URL, _ = url.Parse(a.URL) // the agent talks to replica A only
	e.runAgent(token)
	e.waitConnected(agentID)
	if got := h.agentReplica(t, agentID); got != a.URL {
		t.Fatalf("agent coordinated by %s, want replica A %s", got, a.URL)
	}
	e.pointCLI(b.URL) // the client talks to replica B only
	res := runCLI(t, e.env, nil, "ssh", "ws1", "--", "echo", "cross-replica")
	if res.code != 0 || strings.TrimSpace(res.stdout) != "cross-replica" {
		t.Fatalf("ssh via replica B: exit %d stdout %q stderr %q", res.code, res.stdout, res.stderr)
	}
}

// TestHACrossReplicaDERPOnly: with direct connections blocked, sessions
// start on the relays. The relay connections of the agent and of each
// client go through the load balancer (round robin over 3 replicas), so they
// generally reach different replicas' relays and the relay mesh carries the
// first packets. Each `coder ssh` is a new client with a new relay
// connection. This is not a deterministic proof of the mesh (with it
// disabled the sessions still come up, much later, once magicsock's retries
// land both on one relay or find a direct path); derp's
// TestMeshRelaysBetweenReplicas is.
func TestHACrossReplicaDERPOnly(t *testing.T) {
	t.Parallel()
	h := newHAEnv(t, 3, "--block-direct-connections")
	e := h.reach
	agentID, token := e.addWorkspace("ws1")
	e.runAgent(token)
	e.waitConnected(agentID)
	for i := range 3 {
		e.pointCLI(h.cluster.Replicas[i].URL)
		res := runCLI(t, e.env, nil, "ssh", "ws1", "--", "echo", "via-derp")
		if res.code != 0 || strings.TrimSpace(res.stdout) != "via-derp" {
			t.Fatalf("ssh %d (DERP only) via replica %d: exit %d stdout %q stderr %q", i, i, res.code, res.stdout, res.stderr)
		}
	}
}

// TestHAKillReplica: with 3 replicas behind HAProxy, the replica serving
// the agent's coordinator connection is stopped — killed with SIGKILL, or
// shut down with SIGTERM — while 20 SSH sessions stream output: no session
// drops, the agent reconnects through the load balancer to another replica,
// and a new `coder ssh` works.
func TestHAKillReplica(t *testing.T) {
	t.Parallel()
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			t.Parallel()
			testStopReplica(t, sig)
		})
	}
	// The sessions ride the relays only: those homed on the killed
	// replica's relay move to another replica's, meshed with the rest.
	t.Run("SIGKILL DERP only", func(t *testing.T) {
		t.Parallel()
		testStopReplica(t, syscall.SIGKILL, "--block-direct-connections")
	})
}

func testStopReplica(t *testing.T, sig syscall.Signal, serverArgs ...string) {
	h := newHAEnv(t, 3, serverArgs...)
	e := h.reach
	agentID, token := e.addWorkspace("ws1")
	e.runAgent(token) // through the load balancer
	e.waitConnected(agentID)
	victim := h.agentReplica(t, agentID)

	const sessions = 20
	type session struct{ lines <-chan string }
	var ss []session
	for range sessions {
		lines, _ := startCLI(t, e.env, "ssh", "ws1", "--", "sh", "-c", "i=0; while :; do i=$((i+1)); echo tick $i; sleep 0.1; done")
		waitLine(t, lines, "tick")
		ss = append(ss, session{lines})
	}

	var stopped *hatest.Replica
	for _, r := range h.cluster.Replicas {
		if r.URL == victim {
			stopped = r
		}
	}
	stopped.Stop(t, sig)

	// The agent comes back on another replica (its old registration is
	// lost after the dead replica's heartbeat lapses, or taken over).
	waitFor(t, time.Minute, "the agent re-registered on a live replica", func() (bool, error) {
		var coord uuid.UUID
		err := h.pool.Pool().QueryRow(context.Background(), `SELECT p.coordinator_id FROM tailnet_peers p
			JOIN replicas r ON r.id = p.coordinator_id WHERE p.id = $1 AND p.status = 'ok' AND r.relay_address <> $2`, agentID, victim).Scan(&coord)
		return err == nil, nil
	})
	// Every established session kept streaming through the kill and the
	// reconnection: each still prints new lines.
	for _, s := range ss {
		// Drain what was buffered, then see fresh output (a dropped
		// session's output ends instead, failing waitLine).
		for drained := false; !drained; {
			select {
			case <-s.lines:
			default:
				drained = true
			}
		}
		waitLine(t, s.lines, "tick")
	}
	// A new connection succeeds after the kill.
	res := runCLI(t, e.env, nil, "ssh", "ws1", "--", "echo", "after-kill")
	if res.code != 0 || strings.TrimSpace(res.stdout) != "after-kill" {
		t.Fatalf("ssh after the kill: exit %d stdout %q stderr %q", res.code, res.stdout, res.stderr)
	}
}
