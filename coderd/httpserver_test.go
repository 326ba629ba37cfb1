package coderd_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"

	"github.com/wgmesh/coder/coderd"
	"github.com/wgmesh/coder/coderd/coderdtest"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/codersdk/agentsdk"
	"github.com/wgmesh/coder/database"
	"github.com/wgmesh/coder/database/dbtestutil"
)

// TestHTTPServerSlowClients serves coderd with coderd.NewHTTPServer and
// short limits: a slowloris client dribbling its headers, and one dribbling
// a request body, are cut off, while a websocket (agent logs, followed)
// kept open well past the read timeouts still delivers.
func TestHTTPServerSlowClients(t *testing.T) {
	t.Parallel()
	const limit = 300 * time.Millisecond
	store := database.NewStore(dbtestutil.NewPoolFor(t, dbtestutil.NewDB(t)))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse("http://" + ln.Addr().String())
	api, err := coderd.New(coderd.Options{Database: store, AccessURL: u})
	if err != nil {
		t.Fatal(err)
	}
	srv := coderd.NewHTTPServer(api.Handler(), coderd.HTTPServerOptions{ReadHeaderTimeout: limit, ReadTimeout: limit, IdleTimeout: 10 * limit})
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = srv.Close()
		_ = api.Close()
	})
	addr := ln.Addr().String()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// dribble writes head, then one byte of filler every 50ms, until the
	// server closes the connection; it returns what the server answered.
	// The filler never ends the request, so only a server timeout stops it.
	dribble := func(t *testing.T, head string) string {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := io.WriteString(c, head); err != nil {
			t.Fatal(err)
		}
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					if _, err := c.Write([]byte("a")); err != nil {
						return
					}
				}
			}
		}()
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
		data, err := io.ReadAll(c)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("the server kept a dribbling client for 30s (answered %q)", data)
		}
		return string(data)
	}

	t.Run("slow headers", func(t *testing.T) {
		dribble(t, "GET /api/v2/buildinfo HTTP/1.1\r\nHost: "+addr+"\r\nX-Slow: ")
	})
	t.Run("slow body", func(t *testing.T) {
		got := dribble(t, "POST /api/v2/users/login HTTP/1.1\r\nHost: "+addr+"\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n{\"email\":\"")
		if got != "" && !strings.HasPrefix(got, "HTTP/1.1 400") {
			t.Fatalf("slow body answered %q", got)
		}
	})

	// Legitimate: a normal request, and a websocket held open past the
	// timeouts.
	owner := codersdk.New(u)
	first := coderdtest.CreateFirstUser(t, owner)
	agentID, agentToken := insertAgent(t, store, uuid.MustParse(first.UserID))
	ws, _, err := websocket.Dial(ctx, fmt.Sprintf("ws://%s/api/v2/workspaceagents/%s/logs?follow", addr, agentID),
		&websocket.DialOptions{HTTPHeader: http.Header{codersdk.SessionTokenHeader: {owner.SessionToken()}}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	// Outlive every limit (header, body and idle) several times over.
	select {
	case <-time.After(15 * limit):
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	ac := agentsdk.New(u, agentToken)
	if _, err := ac.PatchLogs(ctx, agentsdk.PatchLogsRequest{LogSourceID: uuid.New(), BatchSeq: 1, Logs: []agentsdk.Log{{CreatedAt: time.Now(), Output: "still-streaming", Level: codersdk.LogLevelInfo}}}); err != nil {
		t.Fatalf("send agent log: %v", err)
	}
	for {
		_, data, err := ws.Read(ctx)
		if err != nil {
			t.Fatalf("the websocket died after the read timeout: %v", err)
		}
		if strings.Contains(string(data), "still-streaming") {
			break
		}
	}
	// A plain request with a body still works.
	res, err := http.Post("http://"+addr+"/api/v2/users/login", "application/json", bufio.NewReader(strings.NewReader(`{"email":"`+first.Email+`","password":"`+coderdtest.FirstUserPassword+`"}`)))
	if err != nil {
		t.Fatal(err)
	}
	_ = res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("login: %d", res.StatusCode)
	}
}
