package coordinator_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"

	"github.com/wgmesh/coder/coordinator"
	"github.com/wgmesh/coder/tunnel"
)

const waitFor = 20 * time.Second

// server is a coordinator served over websockets by httptest, the way
// coderd serves it: the peer ID comes from the URL (coderd takes it from the
// authenticated agent or the client's request).
type server struct {
	coord coordinator.Coordinator
	http  *httptest.Server
	maps  *coordinator.DERPMapPublisher
	keys  *coordinator.NodeKeys
	// tweak, when set, adjusts every socket's options.
	tweak func(*coordinator.ServeOptions)

	mu    sync.Mutex
	auths map[uuid.UUID]coordinator.TunnelAuth
	ended map[uuid.UUID]chan error
	// cancels end the latest socket of each peer with a cause (revoke).
	cancels map[uuid.UUID]context.CancelCauseFunc
}

func newServer(t *testing.T, opts coordinator.InMemoryOptions) *server {
	t.Helper()
	return newServerWith(t, coordinator.NewInMemoryWithOptions(opts))
}

// newServerWith serves coord (closed in cleanup).
func newServerWith(t *testing.T, coord coordinator.Coordinator) *server {
	t.Helper()
	s := &server{
		coord: coord,
		maps:  coordinator.NewDERPMapPublisher(nil),
		keys:  coordinator.NewNodeKeys(),
		auths: map[uuid.UUID]coordinator.TunnelAuth{},
		ended: map[uuid.UUID]chan error{},

		cancels: map[uuid.UUID]context.CancelCauseFunc{},
	}
	s.http = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(func() {
		s.http.CloseClientConnections()
		s.http.Close()
		_ = s.coord.Close()
	})
	return s
}

func (s *server) setAuth(id uuid.UUID, a coordinator.TunnelAuth) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.auths[id] = a
}

// endedChan returns a channel receiving ServeWebsocket's result for id.
func (s *server) endedChan(id uuid.UUID) chan error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := s.ended[id]
	if ch == nil {
		ch = make(chan error, 16)
		s.ended[id] = ch
	}
	return ch
}

func (s *server) serve(w http.ResponseWriter, r *http.Request) {
	id, err := uuid.Parse(r.URL.Query().Get("id"))
	if err != nil {
		http.Error(w, "bad id", http.StatusBadRequest)
		return
	}
	ws, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	s.mu.Lock()
	auth := s.auths[id]
	tweak := s.tweak
	s.mu.Unlock()
	opts := coordinator.ServeOptions{
		Coordinator: s.coord, ID: id, Name: "peer-" + id.String()[:8], Auth: auth, DERPMaps: s.maps,
		NodeKeys: s.keys,
	}
	if k := r.URL.Query().Get("node_key"); k != "" {
		if err := opts.NodeKey.UnmarshalText([]byte(k)); err != nil {
			_ = ws.Close(websocket.StatusPolicyViolation, "bad node key")
			return
		}
	}
	if tweak != nil {
		tweak(&opts)
	}
	ctx, cancel := context.WithCancelCause(r.Context())
	defer cancel(nil)
	s.mu.Lock()
	s.cancels[id] = cancel
	s.mu.Unlock()
	err = coordinator.ServeWebsocket(ctx, ws, opts)
	s.endedChan(id) <- err
}

// cancelPeer ends the context of id's latest socket with cause, as coderd
// does when it revokes the peer's access.
func (s *server) cancelPeer(id uuid.UUID, cause error) {
	s.mu.Lock()
	cancel := s.cancels[id]
	s.mu.Unlock()
	cancel(cause)
}

func (s *server) url(id uuid.UUID) string {
	return "ws" + strings.TrimPrefix(s.http.URL, "http") + "/?id=" + id.String()
}

// peer is a raw protocol client.
type peer struct {
	t      *testing.T
	id     uuid.UUID
	ws     *websocket.Conn
	frames chan *coordinator.Envelope
	done   chan error // read loop's final error
}

func (s *server) dial(t *testing.T, id uuid.UUID) *peer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, s.url(id), nil)
	if err != nil {
		t.Fatalf("dial coordinator: %v", err)
	}
	ws.SetReadLimit(4 << 20)
	p := &peer{t: t, id: id, ws: ws, frames: make(chan *coordinator.Envelope, 256), done: make(chan error, 1)}
	go func() {
		for {
			_, data, err := ws.Read(context.Background())
			if err != nil {
				close(p.frames)
				p.done <- err
				return
			}
			env, err := coordinator.DecodeEnvelope(data)
			if err != nil {
				t.Errorf("peer %s got bad frame %s: %v", id, data, err)
				continue
			}
			p.frames <- env
		}
	}()
	t.Cleanup(func() {
		_ = ws.CloseNow()
		<-p.done
	})
	return p
}

func (p *peer) sendRaw(typ websocket.MessageType, data []byte) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := p.ws.Write(ctx, typ, data); err != nil {
		p.t.Fatalf("write: %v", err)
	}
}

func (p *peer) send(env coordinator.Envelope) {
	p.t.Helper()
	env.Version = coordinator.ProtocolVersion
	data, err := json.Marshal(env)
	if err != nil {
		p.t.Fatal(err)
	}
	p.sendRaw(websocket.MessageText, data)
}

// updateSelf publishes node (a JSON object) with the address assigned to
// the peer's ID added, as a real peer's node carries it.
func (p *peer) updateSelf(node string) {
	p.t.Helper()
	p.send(coordinator.Envelope{Type: coordinator.TypeUpdateSelf, Node: withAddress(p.t, p.id, node)})
}

// withAddress adds the "addresses" coderd assigns to id to the JSON object node.
func withAddress(t *testing.T, id uuid.UUID, node string) json.RawMessage {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(node), &m); err != nil {
		t.Fatalf("test node %s: %v", node, err)
	}
	m["addresses"] = []string{tunnel.PrefixFromUUID(id).String()}
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// sameNode reports whether the relayed node got is the test node want
// (same "name"), published by id (its assigned address).
func sameNode(t *testing.T, id uuid.UUID, got json.RawMessage, want string) bool {
	t.Helper()
	return string(got) == string(withAddress(t, id, want))
}

func (p *peer) addTunnel(dst uuid.UUID) {
	p.t.Helper()
	p.send(coordinator.Envelope{Type: coordinator.TypeAddTunnel, Dst: &dst})
}

func (p *peer) removeTunnel(dst uuid.UUID) {
	p.t.Helper()
	p.send(coordinator.Envelope{Type: coordinator.TypeRemoveTunnel, Dst: &dst})
}

// next returns the next frame that is not a DERP map.
func (p *peer) next() *coordinator.Envelope {
	p.t.Helper()
	deadline := time.After(waitFor)
	for {
		select {
		case env, ok := <-p.frames:
			if !ok {
				p.t.Fatalf("peer %s: connection closed while waiting for a frame", p.id)
			}
			if env.Type == coordinator.TypeDERPMap {
				continue
			}
			if env.Snapshot {
				// A registration's first view: its node entries are
				// checked as updates; lost entries only list peers.
				env.Updates = withoutLost(env.Updates)
				if len(env.Updates) == 0 {
					continue
				}
			}
			return env
		case <-deadline:
			p.t.Fatalf("peer %s: no frame", p.id)
		}
	}
}

// expectUpdate waits for the next frame and checks it is exactly one
// update about id of kind (and node, when kind is node).
func (p *peer) expectUpdate(id uuid.UUID, kind coordinator.UpdateKind, node string) {
	p.t.Helper()
	env := p.next()
	if env.Type != coordinator.TypePeerUpdate || len(env.Updates) != 1 {
		p.t.Fatalf("peer %s: got %s, want one %s update about %s", p.id, describe(env), kind, id)
	}
	u := env.Updates[0]
	if u.ID != id || u.Kind != kind || (kind == coordinator.KindNode && !sameNode(p.t, id, u.Node, node)) {
		p.t.Fatalf("peer %s: got %s, want %s update about %s (node %s)", p.id, describe(env), kind, id, node)
	}
}

func (p *peer) expectError(contains string) {
	p.t.Helper()
	env := p.next()
	if env.Type != coordinator.TypeError || !strings.Contains(env.Message, contains) {
		p.t.Fatalf("peer %s: got %s, want error containing %q", p.id, describe(env), contains)
	}
}

// expectClosed waits until the server closed the socket and returns the
// close status and reason.
func (p *peer) expectClosed() (websocket.StatusCode, string) {
	p.t.Helper()
	for {
		select {
		case env, ok := <-p.frames:
			if ok {
				if env.Type == coordinator.TypeDERPMap || (env.Snapshot && len(withoutLost(env.Updates)) == 0) {
					continue
				}
				p.t.Fatalf("peer %s: got %s, want the socket closed", p.id, describe(env))
			}
			err := <-p.done
			p.done <- err
			var ce websocket.CloseError
			if !asCloseError(err, &ce) {
				p.t.Fatalf("peer %s: read ended with %v, want a close frame", p.id, err)
			}
			return ce.Code, ce.Reason
		case <-time.After(waitFor):
			p.t.Fatalf("peer %s: socket not closed", p.id)
		}
	}
}

// expectClosedIgnoring is expectClosed, skipping frames of type skip.
func (p *peer) expectClosedIgnoring(skip coordinator.MessageType) (websocket.StatusCode, string) {
	p.t.Helper()
	for {
		select {
		case env, ok := <-p.frames:
			if ok {
				if env.Type == coordinator.TypeDERPMap || env.Type == skip || (env.Snapshot && len(withoutLost(env.Updates)) == 0) {
					continue
				}
				p.t.Fatalf("peer %s: got %s, want the socket closed", p.id, describe(env))
			}
			err := <-p.done
			p.done <- err
			var ce websocket.CloseError
			if !asCloseError(err, &ce) {
				p.t.Fatalf("peer %s: read ended with %v, want a close frame", p.id, err)
			}
			return ce.Code, ce.Reason
		case <-time.After(waitFor):
			p.t.Fatalf("peer %s: socket not closed", p.id)
		}
	}
}

// withoutLost drops the lost entries of a snapshot.
func withoutLost(ups []coordinator.PeerUpdate) []coordinator.PeerUpdate {
	var out []coordinator.PeerUpdate
	for _, u := range ups {
		if u.Kind != coordinator.KindLost {
			out = append(out, u)
		}
	}
	return out
}

func describe(env *coordinator.Envelope) string {
	b, _ := json.Marshal(env)
	return string(b)
}

func node(name string) string { return fmt.Sprintf(`{"name":%q}`, name) }
