// Package agentproto is the wire contract of the workspace agent's services
// on its tailnet address: the ports, the request and response types, the
// reconnecting-PTY framing with its client side, and the UDP relay framing.
//
// The agent (package agent and its subpackages) implements the contract;
// clients (codersdk/workspacesdk, coderd's terminal and apps proxy, the CLI)
// import only this package, so they do not link the agent's SSH server, PTY
// or SFTP code. It depends on the standard library and uuid only.
//
// # Services
//
// Every service listens on the agent's tailnet address only (TCP):
//
//   - SSHPort and SSHPortAlias: SSH (sessions, direct-tcpip port forwarding,
//     SFTP unless the template disables it).
//   - ReconnectingPTYPort: the web terminal, framed as described at
//     PTYFrameInit.
//   - SpeedtestPort: a throughput test, see SpeedtestRequest.
//   - HTTPAPIPort: a small HTTP API (ListeningPortsPath, LifecyclePath).
//   - UDPRelayPort: UDP to the workspace's loopback, see UDPRelayRequest.
package agentproto

// Ports of the agent's services on its tailnet address.
const (
	// SSHPort serves SSH.
	SSHPort = 1
	// SSHPortAlias serves SSH too, for clients that insist on port 22.
	SSHPortAlias = 22
	// ReconnectingPTYPort serves reconnecting PTYs (the web terminal).
	ReconnectingPTYPort = 2
	// SpeedtestPort serves the speed test.
	SpeedtestPort = 3
	// HTTPAPIPort serves the agent's HTTP API.
	HTTPAPIPort = 4
	// UDPRelayPort serves the UDP relay.
	UDPRelayPort = 5
)

// Paths of the agent's HTTP API on HTTPAPIPort.
const (
	// ListeningPortsPath answers GET with a ListeningPortsResponse.
	ListeningPortsPath = "/api/v0/listening-ports"
	// LifecyclePath answers GET with a LifecycleResponse.
	LifecyclePath = "/api/v0/lifecycle"
)

// ListeningPort is a TCP port listening in the workspace.
type ListeningPort struct {
	Network string `json:"network"`
	Port    uint16 `json:"port"`
	Process string `json:"process_name,omitempty"`
}

// ListeningPortsResponse is the body of a GET of ListeningPortsPath.
type ListeningPortsResponse struct {
	Ports []ListeningPort `json:"ports"`
}

// LifecycleResponse is the body of a GET of LifecyclePath: the agent's
// lifecycle state (the values of codersdk.WorkspaceAgentLifecycle).
type LifecycleResponse struct {
	State string `json:"state"`
}

// HTTPError is the body of an HTTP API response with an error status.
type HTTPError struct {
	Message string `json:"message"`
}
