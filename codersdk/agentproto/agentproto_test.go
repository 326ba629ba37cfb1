package agentproto_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/wgmesh/coder/codersdk/agentproto"
)

// TestWireContract pins what agents and clients of different versions must
// agree on: the ports and the JSON shapes. A change here breaks deployed
// agents.
func TestWireContract(t *testing.T) {
	t.Parallel()
	ports := map[string]int{
		"ssh": agentproto.SSHPort, "ssh alias": agentproto.SSHPortAlias,
		"reconnecting pty": agentproto.ReconnectingPTYPort, "speedtest": agentproto.SpeedtestPort,
		"http api": agentproto.HTTPAPIPort, "udp relay": agentproto.UDPRelayPort,
	}
	want := map[string]int{"ssh": 1, "ssh alias": 22, "reconnecting pty": 2, "speedtest": 3, "http api": 4, "udp relay": 5}
	for name, p := range want {
		if ports[name] != p {
			t.Errorf("%s port %d, want %d", name, ports[name], p)
		}
	}
	for _, tc := range []struct {
		name string
		v    any
		want string
	}{
		{"ListeningPorts", agentproto.ListeningPortsResponse{Ports: []agentproto.ListeningPort{
			{Network: "tcp", Port: 8080}, {Network: "tcp", Port: 22, Process: "sshd"},
		}}, `{"ports":[{"network":"tcp","port":8080},{"network":"tcp","port":22,"process_name":"sshd"}]}`},
		{"Lifecycle", agentproto.LifecycleResponse{State: "ready"}, `{"state":"ready"}`},
		{"HTTPError", agentproto.HTTPError{Message: "no /proc"}, `{"message":"no /proc"}`},
		{"Speedtest", agentproto.SpeedtestRequest{Direction: agentproto.SpeedtestUpload, Duration: time.Second},
			`{"direction":"upload","duration":1000000000}`},
		{"UDPRelayRequest", agentproto.UDPRelayRequest{Target: "127.0.0.1:53", IdleTimeout: time.Minute},
			`{"target":"127.0.0.1:53","idle_timeout":60000000000}`},
		{"UDPRelayRequestDefaultIdle", agentproto.UDPRelayRequest{Target: "127.0.0.1:53"}, `{"target":"127.0.0.1:53"}`},
		{"UDPRelayAccepted", agentproto.UDPRelayResponse{}, `{}`},
		{"PTYResize", agentproto.PTYResize{Height: 40, Width: 120}, `{"height":40,"width":120}`},
		{"PTYExit", agentproto.PTYExit{ExitCode: 3}, `{"exit_code":3}`},
	} {
		b, err := json.Marshal(tc.v)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if string(b) != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, b, tc.want)
		}
	}
}
