package coderd_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"
	gossh "golang.org/x/crypto/ssh"
	tsderp "tailscale.com/derp"
	"tailscale.com/derp/derphttp"
	"tailscale.com/net/netmon"
	"tailscale.com/types/key"

	"github.com/wgmesh/coder/coderd"
	"github.com/wgmesh/coder/coderd/coderdtest"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/codersdk/agentsdk"
	"github.com/wgmesh/coder/codersdk/workspacesdk"
	"github.com/wgmesh/coder/database"
	"github.com/wgmesh/coder/derp"
	"github.com/wgmesh/coder/tunnel"
)

// TestRogueAgentCannotDivertAppTraffic is the mesh spoofing attack against
// a real coderd: the attacker's own agent announces the victim agent's
// tailnet address on its coordination socket. coderd refuses the node and
// closes the socket, and the shared app proxy keeps reaching the victim.
func TestRogueAgentCannotDivertAppTraffic(t *testing.T) {
	t.Parallel()
	e := newAppsEnv(t, coderd.AppsOptions{})
	owner := codersdk.New(e.url)
	first := coderdtest.CreateFirstUser(t, owner)
	up := newUpstream(t)
	victimID, victimToken := insertAgent(t, e.store, uuid.MustParse(first.UserID))
	insertApps(t, e.store, victimID, testApp{slug: "app", url: fmt.Sprintf("http://127.0.0.1:%d", up.port), share: database.AppSharingLevelOwner})
	ws := workspaceOfAgent(t, e.store, victimID)
	runAgent(t, e.url, victimToken)
	waitAgent(t, owner, victimID, "connected", func(a codersdk.WorkspaceAgent) bool { return a.Status == codersdk.WorkspaceAgentConnected })
	appURL := fmt.Sprintf("%s/@%s/%s/apps/app/who", e.url, first.Username, ws.Name)
	get := func() (int, string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, appURL, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set(codersdk.SessionTokenHeader, owner.SessionToken())
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if code, body := get(); code != http.StatusOK || !strings.Contains(body, "upstream path=/who") {
		t.Fatalf("legitimate app request: %d %s", code, body)
	}

	// The attacker's agent (another workspace, another token).
	_, rogueToken := insertAgent(t, e.store, uuid.MustParse(first.UserID))
	rogue := agentsdk.New(e.url, rogueToken)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sock, err := rogue.DialCoordinator(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer sock.CloseNow()
	k := key.NewNode().Public()
	spoof := tunnel.Node{
		ID: tunnel.NodeIDFromKey(k), Key: k, DiscoKey: key.NewDisco().Public(), PreferredDERP: 1,
		Addresses: []netip.Prefix{tunnel.AgentPrefix(victimID)},
	}
	writeNode(ctx, t, sock, spoof)
	if code := readUntilClosed(ctx, sock); code != websocket.StatusPolicyViolation {
		t.Fatalf("spoofing agent's socket ended with %v, want policy violation", code)
	}
	// The proxy still reaches the victim, every time.
	for i := range 10 {
		if code, body := get(); code != http.StatusOK || !strings.Contains(body, "upstream path=/who") {
			t.Fatalf("app request %d after the spoof: %d %s", i, code, body)
		}
	}
}

// TestRogueClientCannotSpoofAddress: a user's client may only announce the
// address coderd hands out for its client ID.
func TestRogueClientCannotSpoofAddress(t *testing.T) {
	t.Parallel()
	e := newAgentEnv(t)
	owner := e.client()
	first := coderdtest.CreateFirstUser(t, owner)
	agentID, token := insertAgent(t, e.store, uuid.MustParse(first.UserID))
	otherID, _ := insertAgent(t, e.store, uuid.MustParse(first.UserID))
	runAgent(t, e.url, token)
	waitAgent(t, owner, agentID, "connected", func(a codersdk.WorkspaceAgent) bool { return a.Status == codersdk.WorkspaceAgentConnected })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	clientID := uuid.New()
	identity, err := owner.TailnetClient(ctx, clientID)
	if err != nil {
		t.Fatal(err)
	}
	if !tunnel.TailnetPrefix.Contains(identity.Address.Addr()) || identity.Address == tunnel.AgentPrefix(agentID) {
		t.Fatalf("assigned address %s", identity.Address)
	}
	for _, tc := range []struct {
		name string
		addr netip.Prefix
	}{
		{"agent's address", tunnel.AgentPrefix(agentID)},
		{"another agent's address", tunnel.AgentPrefix(otherID)},
		{"made-up address", tunnel.RandomPrefix()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sock, err := owner.DialClientCoordinator(ctx, agentID, clientID, key.NodePublic{})
			if err != nil {
				t.Fatal(err)
			}
			defer sock.CloseNow()
			k := key.NewNode().Public()
			writeNode(ctx, t, sock, tunnel.Node{ID: tunnel.NodeIDFromKey(k), Key: k, DiscoKey: key.NewDisco().Public(), Addresses: []netip.Prefix{tc.addr}})
			if code := readUntilClosed(ctx, sock); code != websocket.StatusPolicyViolation {
				t.Fatalf("socket ended with %v, want policy violation", code)
			}
		})
	}
	// The legitimate client (its assigned address) reaches the agent.
	conn, err := workspacesdk.DialAgent(ctx, owner, agentID, &workspacesdk.DialAgentOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sc, err := conn.NewSSHClient(ctx)
	if err != nil {
		t.Fatalf("legitimate client: %v", err)
	}
	_ = sc.Close()
}

// TestAgentHostKeyPinned: the agent reports its SSH host key; coderd's app
// proxy and SDK clients (coder ssh) accept only that key. An SSH server at
// the agent's address presenting another key is refused by both.
func TestAgentHostKeyPinned(t *testing.T) {
	t.Parallel()
	e := newAppsEnv(t, coderd.AppsOptions{})
	owner := codersdk.New(e.url)
	first := coderdtest.CreateFirstUser(t, owner)
	up := newUpstream(t)
	upURL := fmt.Sprintf("http://127.0.0.1:%d", up.port)
	start := func() (uuid.UUID, string) {
		id, tok := insertAgent(t, e.store, uuid.MustParse(first.UserID))
		insertApps(t, e.store, id, testApp{slug: "app", url: upURL, share: database.AppSharingLevelOwner})
		runAgent(t, e.url, tok)
		a := waitAgent(t, owner, id, "connected with a host key", func(a codersdk.WorkspaceAgent) bool {
			return a.Status == codersdk.WorkspaceAgentConnected && a.SSHHostKey != ""
		})
		if _, _, _, _, err := gossh.ParseAuthorizedKey([]byte(a.SSHHostKey)); err != nil {
			t.Fatalf("reported host key %q: %v", a.SSHHostKey, err)
		}
		return id, a.SSHHostKey
	}
	appStatus := func(agentID uuid.UUID) (int, string) {
		t.Helper()
		ws := workspaceOfAgent(t, e.store, agentID)
		req, err := http.NewRequest(http.MethodGet, fmt.Sprintf("%s/@%s/%s/apps/app/x", e.url, first.Username, ws.Name), nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set(codersdk.SessionTokenHeader, owner.SessionToken())
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	// Legitimate: the reported key matches the server.
	good, _ := start()
	if code, body := appStatus(good); code != http.StatusOK || !strings.Contains(body, "upstream path=/x") {
		t.Fatalf("app with the pinned key: %d %s", code, body)
	}
	conn, err := workspacesdk.DialAgent(ctx, owner, good, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.VerifyHostKey(ctx); err != nil {
		t.Fatalf("verify the pinned key: %v", err)
	}

	// Attack: coderd holds a key other than the one the SSH server at the
	// agent's address presents.
	bad, _ := start()
	_, other, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	otherSigner, err := gossh.NewSignerFromKey(other)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.store.UpdateWorkspaceAgentSSHHostKeyByID(ctx, database.UpdateWorkspaceAgentSSHHostKeyByIDParams{
		ID: bad, SshHostKey: strings.TrimSpace(string(gossh.MarshalAuthorizedKey(otherSigner.PublicKey()))),
	}); err != nil {
		t.Fatal(err)
	}
	if code, body := appStatus(bad); code == http.StatusOK || strings.Contains(body, "upstream") {
		t.Fatalf("app proxy accepted a server with another host key: %d %s", code, body)
	}
	badConn, err := workspacesdk.DialAgent(ctx, owner, bad, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer badConn.Close()
	if err := badConn.VerifyHostKey(ctx); !errors.Is(err, workspacesdk.ErrHostKeyMismatch) {
		t.Fatalf("SDK client with another pinned key: %v, want ErrHostKeyMismatch", err)
	}
}

// TestEmbeddedRelayAdmission: coderd's /derp refuses a random node key
// (the open relay) while a real client and agent connected through the
// coordinator relay their traffic (DERP only).
func TestEmbeddedRelayAdmission(t *testing.T) {
	t.Parallel()
	srv := derp.NewServer(nil, key.NodePrivate{})
	t.Cleanup(func() { _ = srv.Close() })
	e := newAgentEnvWith(t, func(o *coderd.AgentOptions) {
		o.DERPServer = srv
		o.DERPMap = nil // the embedded region at the access URL
		o.DisableDirectConnections = true
	})
	owner := e.client()
	first := coderdtest.CreateFirstUser(t, owner)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	// Attack: a stranger's key.
	stranger := key.NewNode()
	c, err := derphttp.NewClient(stranger, e.url.String()+"/derp", t.Logf, netmon.NewStatic())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if err := c.Connect(ctx); err == nil {
		if err = c.Send(stranger.Public(), []byte("relay me")); err == nil {
			m, err := c.Recv()
			if err == nil {
				t.Fatalf("coderd's relay admitted an unknown node key (got %T)", m)
			}
			var _ tsderp.ReceivedMessage = m
		}
	}

	// Legitimate: an agent and a client on the coordinator, relayed only.
	agentID, token := insertAgent(t, e.store, uuid.MustParse(first.UserID))
	runAgent(t, e.url, token)
	waitAgent(t, owner, agentID, "connected", func(a codersdk.WorkspaceAgent) bool { return a.Status == codersdk.WorkspaceAgentConnected })
	conn, err := workspacesdk.DialAgent(ctx, owner, agentID, &workspacesdk.DialAgentOptions{BlockEndpoints: true})
	if err != nil {
		t.Fatalf("client through the admitted relay: %v", err)
	}
	defer conn.Close()
	sc, err := conn.NewSSHClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out, _, code := sshRun(t, sc, "echo relayed")
	if code != 0 || strings.TrimSpace(out) != "relayed" {
		t.Fatalf("ssh over the relay: %q exit %d", out, code)
	}
}

func writeNode(ctx context.Context, t *testing.T, sock *websocket.Conn, n tunnel.Node) {
	t.Helper()
	raw, err := json.Marshal(n)
	if err != nil {
		t.Fatal(err)
	}
	if err := sock.Write(ctx, websocket.MessageText, []byte(`{"version":1,"type":"update_self","node":`+string(raw)+`}`)); err != nil {
		t.Fatal(err)
	}
}

// readUntilClosed reads frames until the server closes the socket and
// returns the close status.
func readUntilClosed(ctx context.Context, sock *websocket.Conn) websocket.StatusCode {
	for {
		if _, _, err := sock.Read(ctx); err != nil {
			return websocket.CloseStatus(err)
		}
	}
}
