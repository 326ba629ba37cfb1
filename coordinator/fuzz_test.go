package coordinator_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"
	"github.com/google/uuid"

	"github.com/wgmesh/coder/coordinator"
	"github.com/wgmesh/coder/tunnel"
)

// acceptableNode is the model of the coordinator's node check: a node must
// decode and claim only the address assigned to its peer (no node key is
// pinned for the fuzzed peer).
func acceptableNode(peerID uuid.UUID, raw json.RawMessage) bool {
	var n tunnel.Node
	if json.Unmarshal(raw, &n) != nil {
		return false
	}
	return tunnel.CheckAssignedAddresses(peerID, &n) == nil
}

// fuzzAgent is the one agent the fuzzed peer may open a tunnel to.
var fuzzAgent = uuid.MustParse("6b0e8c1e-2f57-4c4e-9a0b-7a4b1f1f0001")

// maxFuzzFrames bounds the frames one input sends (each line of the input
// is one text frame).
const maxFuzzFrames = 16

// FuzzServeWebsocket sends arbitrary frames to a coordinator websocket
// served by ServeWebsocket, as a client allowed to reach one agent, and
// checks against the protocol's rules (DecodeEnvelope and the peer →
// coordinator types):
//   - frames are handled in order; the first malformed frame closes the
//     socket with 1007 (1008 for another version, a coordinator-only type
//     or a node that does not decode or claims an address not assigned to
//     the peer), a disconnect with 1000, and anything else keeps it open;
//   - the close reason is valid UTF-8 within the 123 bytes a close frame
//     allows (RFC 6455 5.5.1; browsers fail the connection otherwise);
//   - every frame the server sends decodes and is of a coordinator → peer
//     type;
//   - the other peers are unaffected: the agent's registration stays up and
//     only ever hears of the fuzzed peer (the only tunnel it may open), with
//     node bytes the peer actually sent.
func FuzzServeWebsocket(f *testing.F) {
	// Fuzzed peers that drop without a goodbye are forgotten after a
	// second, so a long run does not pile them up.
	coord := coordinator.NewInMemoryWithOptions(coordinator.InMemoryOptions{LostTimeout: time.Second})
	f.Cleanup(func() { _ = coord.Close() })
	maps := coordinator.NewDERPMapPublisher(nil)

	agentCtx, stopAgent := context.WithCancel(context.Background())
	f.Cleanup(stopAgent)
	agentReqs, agentResps := coord.Coordinate(agentCtx, fuzzAgent, "agent", nil)
	f.Cleanup(func() { close(agentReqs) })
	agentReqs <- &coordinator.Request{Type: coordinator.TypeUpdateSelf, Node: []byte(`{"key":"agent"}`)}

	peers := make(chan uuid.UUID, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		id := <-peers
		_ = coordinator.ServeWebsocket(r.Context(), ws, coordinator.ServeOptions{
			Coordinator: coord, ID: id, Name: "fuzz", Auth: coordinator.AllowTunnelsTo(fuzzAgent), DERPMaps: maps,
			PingInterval: time.Minute,
		})
	}))
	f.Cleanup(srv.Close)
	wsURL := "ws" + strings.TrimPrefix(srv.URL, "http")
	// Every fuzzed peer so far and the nodes it published: the agent may
	// hear of them (late updates of an earlier input included) and of
	// nothing else.
	published := map[uuid.UUID][][]byte{}

	f.Fuzz(func(t *testing.T, input []byte) {
		// Each input is a new peer. "@ADDR@" in an input stands for the
		// address coderd assigned to it, so a seed can announce a node the
		// coordinator accepts.
		peerID := uuid.New()
		input = bytes.ReplaceAll(input, []byte("@ADDR@"), []byte(tunnel.PrefixFromUUID(peerID).String()))
		frames := bytes.Split(input, []byte("\n"))
		if len(frames) > maxFuzzFrames {
			frames = frames[:maxFuzzFrames]
		}
		// The model: the close the rules predict, and the nodes the peer
		// may legitimately have published.
		wantCode, wantOpen := websocket.StatusCode(-1), true
		var sent [][]byte
		for _, fr := range frames {
			env, err := coordinator.DecodeEnvelope(fr)
			switch {
			case errors.Is(err, coordinator.ErrUnknownVersion):
				wantCode = websocket.StatusPolicyViolation
			case err != nil:
				wantCode = websocket.StatusInvalidFramePayloadData
			case env.Type == coordinator.TypeDisconnect:
				wantCode = websocket.StatusNormalClosure
			case env.Type != coordinator.TypeUpdateSelf && env.Type != coordinator.TypeAddTunnel && env.Type != coordinator.TypeRemoveTunnel:
				wantCode = websocket.StatusPolicyViolation
			case env.Type == coordinator.TypeUpdateSelf && !acceptableNode(peerID, env.Node):
				wantCode = websocket.StatusPolicyViolation
			case env.Type == coordinator.TypeUpdateSelf:
				sent = append(sent, env.Node)
			}
			if wantCode != -1 {
				wantOpen = false
				break
			}
		}

		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		published[peerID] = sent
		peers <- peerID
		ws, _, err := websocket.Dial(ctx, wsURL, nil)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		defer ws.CloseNow()
		ws.SetReadLimit(4 << 20)

		for _, fr := range frames {
			if err := ws.Write(ctx, websocket.MessageText, fr); err != nil {
				break // the server may already have closed
			}
		}
		if wantOpen {
			// Every frame was acceptable: a goodbye must now end the
			// socket cleanly, which also proves all frames were read.
			_ = ws.Write(ctx, websocket.MessageText, []byte(`{"version":1,"type":"disconnect"}`))
			wantCode = websocket.StatusNormalClosure
		}

		for {
			_, data, err := ws.Read(ctx)
			if err != nil {
				var ce websocket.CloseError
				if !errors.As(err, &ce) {
					t.Fatalf("socket ended without a close frame: %v", err)
				}
				if ce.Code != wantCode {
					t.Fatalf("closed with %d %q, want %d", ce.Code, ce.Reason, wantCode)
				}
				if !utf8.ValidString(ce.Reason) || len(ce.Reason) > 123 {
					t.Fatalf("close reason is not valid UTF-8 within 123 bytes: %q", ce.Reason)
				}
				break
			}
			env, err := coordinator.DecodeEnvelope(data)
			if err != nil {
				t.Fatalf("server sent an invalid frame %q: %v", data, err)
			}
			switch env.Type {
			case coordinator.TypePeerUpdate, coordinator.TypeDERPMap, coordinator.TypeError:
			default:
				t.Fatalf("server sent a peer → coordinator frame %q", data)
			}
		}

		// The agent: still registered, and it heard only of fuzzed peers,
		// with nodes they sent.
	drain:
		for {
			select {
			case resp, ok := <-agentResps:
				if !ok {
					t.Fatal("the agent's registration was dropped")
				}
				for _, u := range resp.Updates {
					if u.ID == fuzzAgent {
						t.Fatalf("the agent heard about itself: %+v", u)
					}
					nodes, known := published[u.ID]
					if !known {
						t.Fatalf("the agent heard of peer %s, which never connected", u.ID)
					}
					if u.Kind == coordinator.KindNode && !containsJSON(nodes, u.Node) {
						t.Fatalf("the agent got node %s of %s, which that peer never sent", u.Node, u.ID)
					}
				}
			default:
				break drain
			}
		}
	})
}

// containsJSON reports whether node is one of sent, compared as compacted
// JSON.
func containsJSON(sent [][]byte, node []byte) bool {
	var want bytes.Buffer
	if err := json.Compact(&want, node); err != nil {
		return false
	}
	for _, s := range sent {
		var got bytes.Buffer
		if json.Compact(&got, s) == nil && bytes.Equal(got.Bytes(), want.Bytes()) {
			return true
		}
	}
	return false
}
