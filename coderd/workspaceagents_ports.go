package coderd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/wgmesh/coder/coderd/httpapi"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/codersdk/agentproto"
)

// listeningPortsTimeout bounds one listening-ports question to an agent
// (above the mesh's own reach timeout, workspaceapps.DefaultReachTimeout).
const listeningPortsTimeout = 30 * time.Second

// workspaceAgentListeningPorts serves
// GET /api/v2/workspaceagents/{workspaceagent}/listening-ports: the TCP
// ports listening inside the workspace, asked of the agent's HTTP API over
// the mesh. Like the terminal it needs the right to connect to the
// workspace (403 otherwise); an agent that is not connected is 409.
func (api *API) workspaceAgentListeningPorts(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	agent, ok := api.authorizedAgent(w, r, true)
	if !ok {
		return
	}
	if status := api.agentStatus(agent); status != codersdk.WorkspaceAgentConnected {
		httpapi.Write(ctx, w, http.StatusConflict, codersdk.Response{
			Message: fmt.Sprintf("The workspace agent is %s; listening ports are known only while it is connected.", status),
		})
		return
	}
	ports, err := api.askListeningPorts(ctx, agent.ID)
	if err != nil {
		api.logger.WarnContext(ctx, "ask agent for listening ports", "agent_id", agent.ID, "error", err)
		httpapi.Write(ctx, w, http.StatusBadGateway, codersdk.Response{
			Message: "Failed to ask the workspace agent for its listening ports.", Detail: err.Error(),
		})
		return
	}
	httpapi.Write(ctx, w, http.StatusOK, ports)
}

// askListeningPorts asks the agent's HTTP API (agentproto.HTTPAPIPort) for
// its listening ports.
func (api *API) askListeningPorts(ctx context.Context, agentID uuid.UUID) (codersdk.WorkspaceAgentListeningPortsResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, listeningPortsTimeout)
	defer cancel()
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return api.apps.mesh.DialTailnet(ctx, agentID, agentproto.HTTPAPIPort)
		},
		DisableKeepAlives: true,
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://agent"+agentproto.ListeningPortsPath, nil)
	if err != nil {
		return codersdk.WorkspaceAgentListeningPortsResponse{}, err
	}
	res, err := hc.Do(req)
	if err != nil {
		return codersdk.WorkspaceAgentListeningPortsResponse{}, fmt.Errorf("request: %w", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		var e agentproto.HTTPError
		_ = json.NewDecoder(io.LimitReader(res.Body, 4<<10)).Decode(&e)
		return codersdk.WorkspaceAgentListeningPortsResponse{}, fmt.Errorf("agent answered %d: %s", res.StatusCode, e.Message)
	}
	var body agentproto.ListeningPortsResponse
	if err := json.NewDecoder(io.LimitReader(res.Body, 1<<20)).Decode(&body); err != nil {
		return codersdk.WorkspaceAgentListeningPortsResponse{}, fmt.Errorf("decode: %w", err)
	}
	out := codersdk.WorkspaceAgentListeningPortsResponse{Ports: make([]codersdk.WorkspaceAgentListeningPort, 0, len(body.Ports))}
	for _, p := range body.Ports {
		out.Ports = append(out.Ports, codersdk.WorkspaceAgentListeningPort{Network: p.Network, Port: p.Port, ProcessName: p.Process})
	}
	return out, nil
}
