package derp

import (
	"net/url"
	"testing"

	"tailscale.com/tailcfg"
)

func TestForPeerAt(t *testing.T) {
	t.Parallel()
	base := func(host string) *tailcfg.DERPMap {
		n := &tailcfg.DERPNode{Name: "999a", RegionID: 999, HostName: host, DERPPort: 3000, STUNPort: -1}
		setIP(n, host)
		s := &tailcfg.DERPNode{Name: "999stun0", RegionID: 999, HostName: host, STUNPort: 3478, STUNOnly: true}
		setIP(s, host)
		return &tailcfg.DERPMap{OmitDefaultRegions: true, Regions: map[int]*tailcfg.DERPRegion{
			999: {RegionID: 999, RegionCode: "coder", Nodes: []*tailcfg.DERPNode{n, s}},
			1:   {RegionID: 1, RegionCode: "far", Nodes: []*tailcfg.DERPNode{{Name: "1a", RegionID: 1, HostName: "derp.example.com", DERPPort: 443}}},
		}}
	}
	tests := []struct {
		name       string
		nodeHost   string
		coderURL   string
		wantHost   string
		wantIPv4   string
		wantIPv6   string
		wantSameAs bool // the input map itself is returned
	}{
		{"container via docker bridge name", "127.0.0.1", "http://host.docker.internal:3000/", "host.docker.internal", "", "", false},
		{"container via bridge address", "127.0.0.1", "http://172.17.0.1:3000", "172.17.0.1", "172.17.0.1", "none", false},
		{"localhost node, IPv6 URL", "localhost", "http://[fd00::1]:3000", "fd00::1", "none", "fd00::1", false},
		{"peer on the server host", "127.0.0.1", "http://localhost:3000", "127.0.0.1", "127.0.0.1", "none", true},
		{"peer on the server host, ::1", "::1", "http://[::1]:3000", "::1", "none", "::1", true},
		{"public node untouched", "coder.example.com", "http://10.0.0.5:3000", "coder.example.com", "", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			in := base(tt.nodeHost)
			u, err := url.Parse(tt.coderURL)
			if err != nil {
				t.Fatal(err)
			}
			out := ForPeerAt(in, u)
			if (out == in) != tt.wantSameAs {
				t.Fatalf("returned the input map: %v, want %v", out == in, tt.wantSameAs)
			}
			for _, n := range out.Regions[999].Nodes {
				if n.HostName != tt.wantHost || n.IPv4 != tt.wantIPv4 || n.IPv6 != tt.wantIPv6 {
					t.Errorf("node %s: host %q ipv4 %q ipv6 %q, want %q %q %q", n.Name, n.HostName, n.IPv4, n.IPv6, tt.wantHost, tt.wantIPv4, tt.wantIPv6)
				}
			}
			if got := out.Regions[999].Nodes; got[0].DERPPort != 3000 || got[1].STUNPort != 3478 {
				t.Errorf("ports changed: derp %d stun %d", got[0].DERPPort, got[1].STUNPort)
			}
			if h := out.Regions[1].Nodes[0].HostName; h != "derp.example.com" {
				t.Errorf("other region's node rewritten to %q", h)
			}
			// The caller's map is never modified.
			if h := in.Regions[999].Nodes[0].HostName; h != tt.nodeHost {
				t.Errorf("input map modified: host %q", h)
			}
			if err := ValidateMap(out); err != nil {
				t.Errorf("rewritten map invalid: %v", err)
			}
		})
	}
	if ForPeerAt(nil, &url.URL{Host: "x"}) != nil {
		t.Error("nil map should stay nil")
	}
}
