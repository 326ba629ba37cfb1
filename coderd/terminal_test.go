package coderd_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"

	"github.com/wgmesh/coder/coderd"
	"github.com/wgmesh/coder/coderd/coderdtest"
	"github.com/wgmesh/coder/codersdk"
)

// ptyDial opens the web terminal websocket as the client's user.
func ptyDial(ctx context.Context, e *appsEnv, token string, agentID, reconnect uuid.UUID, command string) (*websocket.Conn, *http.Response, error) {
	u := fmt.Sprintf("ws://%s/api/v2/workspaceagents/%s/pty?reconnect=%s&height=24&width=80&command=%s", e.addr, agentID, reconnect, command)
	return websocket.Dial(ctx, u, &websocket.DialOptions{HTTPHeader: http.Header{codersdk.SessionTokenHeader: {token}}})
}

// readUntil reads terminal output until it contains want.
func readUntil(ctx context.Context, t *testing.T, c *websocket.Conn, want string) string {
	t.Helper()
	var out strings.Builder
	for !strings.Contains(out.String(), want) {
		typ, data, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("read terminal (want %q, have %q): %v", want, out.String(), err)
		}
		if typ != websocket.MessageBinary {
			t.Fatalf("terminal output in a %v message", typ)
		}
		out.Write(data)
	}
	return out.String()
}

func TestWorkspaceAgentPTY(t *testing.T) {
	t.Parallel()
	e := newAppsEnv(t, coderd.AppsOptions{})
	owner := codersdk.New(e.url)
	first := coderdtest.CreateFirstUser(t, owner)
	member, _ := coderdtest.CreateAnotherUser(t, owner)
	agentID, token := insertAgent(t, e.store, uuid.MustParse(first.UserID))
	runAgent(t, e.url, token)
	waitAgent(t, owner, agentID, "connected", func(a codersdk.WorkspaceAgent) bool { return a.Status == codersdk.WorkspaceAgentConnected })

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	id := uuid.New()

	// A member may not open the owner's terminal.
	_, res, err := ptyDial(ctx, e, member.SessionToken(), agentID, id, "")
	if err == nil || res == nil || res.StatusCode != http.StatusForbidden {
		t.Fatalf("member terminal: %v %v", res, err)
	}
	// Nor may an anonymous visitor.
	_, res, err = ptyDial(ctx, e, "", agentID, id, "")
	if err == nil || res == nil || res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("anonymous terminal: %v %v", res, err)
	}

	c, _, err := ptyDial(ctx, e, owner.SessionToken(), agentID, id, "")
	if err != nil {
		t.Fatalf("dial terminal: %v", err)
	}
	if err := c.Write(ctx, websocket.MessageText, []byte(`{"data":"echo hi-$((40+2))\r"}`)); err != nil {
		t.Fatal(err)
	}
	readUntil(ctx, t, c, "hi-42")
	// Resize, then ask the terminal for its size.
	if err := c.Write(ctx, websocket.MessageText, []byte(`{"height":33,"width":111}`)); err != nil {
		t.Fatal(err)
	}
	if err := c.Write(ctx, websocket.MessageText, []byte(`{"data":"stty size\r"}`)); err != nil {
		t.Fatal(err)
	}
	readUntil(ctx, t, c, "33 111")
	c.Close(websocket.StatusNormalClosure, "page reload")

	// Reconnecting with the same ID shows the scrollback of the same shell.
	c2, _, err := ptyDial(ctx, e, owner.SessionToken(), agentID, id, "")
	if err != nil {
		t.Fatalf("reconnect terminal: %v", err)
	}
	defer c2.CloseNow()
	readUntil(ctx, t, c2, "hi-42")
	if err := c2.Write(ctx, websocket.MessageText, []byte(`{"data":"exit 3\r"}`)); err != nil {
		t.Fatal(err)
	}
	for {
		_, _, err := c2.Read(ctx)
		if err == nil {
			continue
		}
		if websocket.CloseStatus(err) != websocket.StatusNormalClosure || !strings.Contains(err.Error(), "exit 3") {
			t.Fatalf("terminal end: %v", err)
		}
		break
	}

	// A one-off command.
	c3, _, err := ptyDial(ctx, e, owner.SessionToken(), agentID, uuid.New(), "echo+one-shot")
	if err != nil {
		t.Fatal(err)
	}
	defer c3.CloseNow()
	readUntil(ctx, t, c3, "one-shot")
}
