package coderd_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
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

// TestWorkspaceAgentPTYCrossSite is the cross-site attack on the web
// terminal: a page on another origin navigates the victim's browser to the
// terminal URL (a plain GET with the session cookie), or opens a websocket
// to it from its own origin (the cookie rides along). Neither may start the
// command: nothing reaches the agent before the upgrade succeeded.
func TestWorkspaceAgentPTYCrossSite(t *testing.T) {
	t.Parallel()
	e := newAppsEnv(t, coderd.AppsOptions{})
	owner := codersdk.New(e.url)
	first := coderdtest.CreateFirstUser(t, owner)
	agentID, token := insertAgent(t, e.store, uuid.MustParse(first.UserID))
	runAgent(t, e.url, token)
	waitAgent(t, owner, agentID, "connected", func(a codersdk.WorkspaceAgent) bool { return a.Status == codersdk.WorkspaceAgentConnected })

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	dir := t.TempDir()
	cookie := &http.Cookie{Name: codersdk.SessionTokenCookie, Value: owner.SessionToken()}
	ptyURL := func(scheme, marker string) string {
		return fmt.Sprintf("%s://%s/api/v2/workspaceagents/%s/pty?reconnect=%s&height=24&width=80&command=%s",
			scheme, e.addr, agentID, uuid.New(), url.QueryEscape("touch "+filepath.Join(dir, marker)))
	}

	attacks := []struct {
		name   string
		marker string
		run    func(t *testing.T, u string) int
	}{
		{"plain GET navigation", "get", func(t *testing.T, u string) int {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.AddCookie(cookie)
			req.Header.Set("Sec-Fetch-Site", "cross-site")
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, res.Body)
			_ = res.Body.Close()
			return res.StatusCode
		}},
		{"foreign-origin websocket", "origin", func(t *testing.T, u string) int {
			h := http.Header{"Origin": {"http://evil.example"}}
			h.Add("Cookie", cookie.String())
			c, res, err := websocket.Dial(ctx, strings.Replace(u, "http://", "ws://", 1), &websocket.DialOptions{HTTPHeader: h})
			if err == nil {
				c.CloseNow()
				t.Fatal("a foreign origin got a terminal websocket")
			}
			if res == nil {
				t.Fatalf("dial: %v", err)
			}
			return res.StatusCode
		}},
		{"same-site sibling origin websocket", "sibling", func(t *testing.T, u string) int {
			h := http.Header{"Origin": {"http://app--ws--alice.localhost"}}
			h.Add("Cookie", cookie.String())
			c, res, err := websocket.Dial(ctx, strings.Replace(u, "http://", "ws://", 1), &websocket.DialOptions{HTTPHeader: h})
			if err == nil {
				c.CloseNow()
				t.Fatal("a sibling origin got a terminal websocket")
			}
			if res == nil {
				t.Fatalf("dial: %v", err)
			}
			return res.StatusCode
		}},
	}
	for _, a := range attacks {
		status := a.run(t, ptyURL("http", a.marker))
		if status < 400 || status >= 500 {
			t.Errorf("%s: status %d, want a 4xx refusal", a.name, status)
		}
	}

	// Barrier: a legitimate terminal (no Origin, as the CLI; then the
	// dashboard's own origin) runs a command to completion. Had an attack
	// reached the agent, its command would have run by now.
	for _, origin := range []string{"", e.url.String()} {
		h := http.Header{}
		h.Add("Cookie", cookie.String())
		if origin != "" {
			h.Set("Origin", origin)
		}
		u := fmt.Sprintf("ws://%s/api/v2/workspaceagents/%s/pty?reconnect=%s&command=%s", e.addr, agentID, uuid.New(), url.QueryEscape("echo legit-$((6*7))"))
		c, _, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPHeader: h})
		if err != nil {
			t.Fatalf("legitimate terminal (origin %q): %v", origin, err)
		}
		readUntil(ctx, t, c, "legit-42")
		c.CloseNow()
	}
	for _, a := range attacks {
		if _, err := os.Stat(filepath.Join(dir, a.marker)); err == nil {
			t.Errorf("%s: the attacker's command ran on the agent", a.name)
		} else if !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
	}
}

// TestWebsocketEndpointsRefuseCrossSite audits every websocket endpoint: a
// plain GET with the session cookie gets 426 and a foreign-origin upgrade
// 403, while the same upgrade from no origin (the CLI) succeeds.
func TestWebsocketEndpointsRefuseCrossSite(t *testing.T) {
	t.Parallel()
	e := newAppsEnv(t, coderd.AppsOptions{})
	owner := codersdk.New(e.url)
	first := coderdtest.CreateFirstUser(t, owner)
	agentID, agentToken := insertAgent(t, e.store, uuid.MustParse(first.UserID))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	userAuth := http.Header{"Cookie": {(&http.Cookie{Name: codersdk.SessionTokenCookie, Value: owner.SessionToken()}).String()}}
	agentAuth := http.Header{codersdk.SessionTokenHeader: {agentToken}}
	endpoints := []struct {
		path string
		auth http.Header
	}{
		{"/api/v2/workspaceagents/" + agentID.String() + "/coordinate", userAuth},
		{"/api/v2/workspaceagents/" + agentID.String() + "/logs?follow", userAuth},
		{"/api/v2/workspaceagents/" + agentID.String() + "/pty", userAuth},
		{"/api/v2/workspaceagents/me/coordinate", agentAuth},
	}
	for _, ep := range endpoints {
		t.Run(ep.path, func(t *testing.T) {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.url.String()+ep.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header = ep.auth.Clone()
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_ = res.Body.Close()
			if res.StatusCode != http.StatusUpgradeRequired {
				t.Errorf("plain GET: status %d, want 426", res.StatusCode)
			}
			for _, h := range []http.Header{{"Origin": {"http://evil.example"}}, {"Sec-Fetch-Site": {"cross-site"}}, {"Sec-Fetch-Site": {"same-site"}}} {
				hdr := ep.auth.Clone()
				for k, v := range h {
					hdr[k] = v
				}
				c, res, err := websocket.Dial(ctx, "ws://"+e.addr+ep.path, &websocket.DialOptions{HTTPHeader: hdr})
				if err == nil {
					c.CloseNow()
					t.Fatalf("%v: got a websocket", h)
				}
				if res == nil || res.StatusCode != http.StatusForbidden {
					t.Errorf("%v: %v %v, want 403", h, res, err)
				}
			}
			c, _, err := websocket.Dial(ctx, "ws://"+e.addr+ep.path, &websocket.DialOptions{HTTPHeader: ep.auth.Clone()})
			if err != nil {
				t.Fatalf("legitimate upgrade: %v", err)
			}
			c.CloseNow()
		})
	}
}
