package coderd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"

	"github.com/coder/websocket"
	"github.com/google/uuid"

	"github.com/wgmesh/coder/coderd/httpapi"
	"github.com/wgmesh/coder/coderd/httpmw"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/codersdk/agentproto"
)

// ReconnectingPTYRequest is a text message from the browser on the
// terminal websocket: input for the terminal and/or a new size (a zero
// Height or Width leaves the size alone).
type ReconnectingPTYRequest struct {
	Data   string `json:"data,omitempty"`
	Height uint16 `json:"height,omitempty"`
	Width  uint16 `json:"width,omitempty"`
}

// maxTerminalMessage bounds a browser message.
const maxTerminalMessage = 1 << 20

// workspaceAgentPTY serves GET /api/v2/workspaceagents/{workspaceagent}/pty
// ?reconnect=UUID&height=ROWS&width=COLS&command=CMD as a websocket bridged
// to the agent's reconnecting PTY over coderd's mesh connection. Only users
// who may connect to the workspace (its owner, site owners) get one. The
// browser sends ReconnectingPTYRequest JSON text messages; terminal output
// comes back as binary messages (the scrollback first when reconnect names
// an existing session). When the process exits the socket closes with
// status 1000 and reason "exit N". The upgrade happens before anything
// reaches the agent (acceptWebsocket: 426 for plain requests, 403 for
// foreign origins); an unreachable agent then closes the socket with 1013.
func (api *API) workspaceAgentPTY(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	agent, ok := api.authorizedAgent(w, r, true)
	if !ok {
		return
	}
	if !api.agentInRunningBuild(w, r, httpmw.WorkspaceParam(r), agent) {
		return
	}
	q := r.URL.Query()
	init := agentproto.PTYInit{Command: q.Get("command")}
	var err error
	if v := q.Get("reconnect"); v != "" {
		if init.ID, err = uuid.Parse(v); err != nil {
			httpapi.Write(ctx, w, http.StatusBadRequest, codersdk.Response{Message: "Invalid reconnect ID.", Detail: err.Error()})
			return
		}
	} else {
		init.ID = uuid.New()
	}
	for _, p := range []struct {
		name string
		dst  *uint16
	}{{"height", &init.Height}, {"width", &init.Width}} {
		v := q.Get(p.name)
		if v == "" {
			continue
		}
		n, err := strconv.ParseUint(v, 10, 16)
		if err != nil {
			httpapi.Write(ctx, w, http.StatusBadRequest, codersdk.Response{Message: fmt.Sprintf("Invalid %s.", p.name), Detail: err.Error()})
			return
		}
		*p.dst = uint16(n)
	}
	// Upgrade (refusing plain requests and foreign origins) before anything
	// reaches the agent: a cross-site navigation to this URL must not start
	// the command.
	ws, ok := api.acceptWebsocket(w, r)
	if !ok {
		return
	}
	defer ws.CloseNow()
	if api.agentStatus(agent) != codersdk.WorkspaceAgentConnected {
		_ = ws.Close(websocket.StatusTryAgainLater, "The workspace agent is not connected.")
		return
	}
	nc, err := api.apps.mesh.DialTailnet(ctx, agent.ID, agentproto.ReconnectingPTYPort)
	if err != nil {
		api.logger.WarnContext(ctx, "dial agent for terminal", "agent_id", agent.ID, "error", err)
		_ = ws.Close(websocket.StatusTryAgainLater, "Failed to reach the workspace agent.")
		return
	}
	defer nc.Close()
	pty, err := agentproto.AttachPTY(nc, init)
	if err != nil {
		api.logger.WarnContext(ctx, "start terminal", "agent_id", agent.ID, "error", err)
		_ = ws.Close(websocket.StatusInternalError, "Failed to start the terminal.")
		return
	}
	ws.SetReadLimit(maxTerminalMessage)
	cctx, cancel := api.agentConnContext(ctx)
	defer cancel()
	// Revoking the key, the user or the workspace ends the terminal.
	var revoked atomic.Bool
	defer api.trackUserSession(r, "terminal", httpmw.WorkspaceParam(r).ID, func() {
		revoked.Store(true)
		cancel()
	})()
	stop := context.AfterFunc(cctx, func() { _ = pty.Close() })
	defer stop()

	// Browser → terminal.
	inDone := make(chan struct{})
	go func() {
		defer close(inDone)
		defer cancel()
		for {
			_, data, err := ws.Read(cctx)
			if err != nil {
				return
			}
			var req ReconnectingPTYRequest
			if err := json.Unmarshal(data, &req); err != nil {
				_ = ws.Close(websocket.StatusUnsupportedData, "messages must be JSON")
				return
			}
			if req.Height > 0 && req.Width > 0 {
				if err := pty.Resize(req.Height, req.Width); err != nil {
					return
				}
			}
			if req.Data != "" {
				if _, err := io.WriteString(pty, req.Data); err != nil {
					return
				}
			}
		}
	}()

	// Terminal → browser.
	buf := make([]byte, 32<<10)
	for {
		n, err := pty.Read(buf)
		if n > 0 {
			if werr := ws.Write(cctx, websocket.MessageBinary, buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			if revoked.Load() {
				_ = ws.Close(websocket.StatusPolicyViolation, "access revoked")
			} else if code, ok := pty.ExitCode(); ok {
				_ = ws.Close(websocket.StatusNormalClosure, fmt.Sprintf("exit %d", code))
			} else if errors.Is(err, io.EOF) {
				_ = ws.Close(websocket.StatusNormalClosure, "terminal closed")
			} else {
				_ = ws.Close(websocket.StatusGoingAway, "terminal connection lost")
			}
			break
		}
	}
	cancel()
	_ = pty.Close()
	<-inDone
	_ = ws.CloseNow()
}
