package derp_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"tailscale.com/tailcfg"

	"github.com/wgmesh/coder/derp"
)

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

const extraJSON = `{"Regions":{"10":{"RegionID":10,"RegionCode":"fra","RegionName":"Frankfurt",
 "Nodes":[{"Name":"10a","RegionID":10,"HostName":"derp-fra.example.internal"}]}}}`

func TestBuildMap(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	extraPath := write("extra.json", extraJSON)
	dupPath := write("dup.json", `{"Regions":{"999":{"RegionID":999,"RegionCode":"x","Nodes":[{"Name":"x","RegionID":999,"HostName":"h"}]}}}`)
	dupKeysPath := write("dupkeys.json", `{"Regions":{"5":{"RegionID":5,"RegionCode":"a","Nodes":[{"Name":"a","RegionID":5,"HostName":"h"}]},
	  "5":{"RegionID":5,"RegionCode":"b","Nodes":[{"Name":"b","RegionID":5,"HostName":"h"}]}}}`)
	badPath := write("bad.json", `{"Regions": [`)
	emptyNodesPath := write("empty.json", `{"Regions":{"7":{"RegionID":7,"RegionCode":"e","Nodes":[]}}}`)

	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/map.json":
			_, _ = w.Write([]byte(`{"Regions":{"20":{"RegionID":20,"RegionCode":"nyc","Nodes":[{"Name":"20a","RegionID":20,"HostName":"10.0.0.20","IPv4":"10.0.0.20"}]}}}`))
		default:
			http.NotFound(w, r)
		}
	}))
	defer hs.Close()

	type check func(t *testing.T, m *tailcfg.DERPMap)
	tests := []struct {
		name    string
		opts    derp.MapOptions
		wantErr string
		check   check
	}{
		{
			name: "embedded https hostname defaults",
			opts: derp.MapOptions{EnableEmbedded: true, AccessURL: mustURL(t, "https://coder.example.com")},
			check: func(t *testing.T, m *tailcfg.DERPMap) {
				r := m.Regions[999]
				if r == nil || r.RegionCode != "coder" || r.RegionName != "Coder Embedded Relay" || len(r.Nodes) != 1 {
					t.Fatalf("region %+v", r)
				}
				n := r.Nodes[0]
				if n.HostName != "coder.example.com" || n.DERPPort != 443 || n.IPv4 != "" || n.STUNPort != -1 || n.RegionID != 999 {
					t.Fatalf("node %+v", n)
				}
			},
		},
		{
			name: "embedded http ip with port and stun",
			opts: derp.MapOptions{
				EnableEmbedded: true, EmbeddedRegionID: 900, RegionCode: "lab", RegionName: "Lab",
				AccessURL: mustURL(t, "http://127.0.0.1:3000"), STUNAddresses: []string{"0.0.0.0:3478", "stun.internal:3479"},
			},
			check: func(t *testing.T, m *tailcfg.DERPMap) {
				r := m.Regions[900]
				if r == nil || r.RegionCode != "lab" || len(r.Nodes) != 3 {
					t.Fatalf("region %+v", r)
				}
				if n := r.Nodes[0]; n.DERPPort != 3000 || n.IPv4 != "127.0.0.1" || n.HostName != "127.0.0.1" {
					t.Fatalf("relay node %+v", n)
				}
				if n := r.Nodes[1]; !n.STUNOnly || n.STUNPort != 3478 || n.HostName != "127.0.0.1" || n.IPv4 != "127.0.0.1" {
					t.Fatalf("stun node %+v", n)
				}
				if n := r.Nodes[2]; !n.STUNOnly || n.STUNPort != 3479 || n.HostName != "stun.internal" {
					t.Fatalf("stun node %+v", n)
				}
			},
		},
		{
			name: "embedded ipv6",
			opts: derp.MapOptions{EnableEmbedded: true, AccessURL: mustURL(t, "https://[::1]:8443")},
			check: func(t *testing.T, m *tailcfg.DERPMap) {
				n := m.Regions[999].Nodes[0]
				if n.IPv6 != "::1" || n.IPv4 != "none" || n.DERPPort != 8443 {
					t.Fatalf("node %+v", n)
				}
			},
		},
		{
			name: "embedded plus file plus url",
			opts: derp.MapOptions{EnableEmbedded: true, AccessURL: mustURL(t, "https://c.example.com"),
				ExtraConfigPath: extraPath, ExtraConfigURL: hs.URL + "/map.json"},
			check: func(t *testing.T, m *tailcfg.DERPMap) {
				if len(m.Regions) != 3 || m.Regions[10] == nil || m.Regions[20] == nil || m.Regions[999] == nil {
					t.Fatalf("regions %v", m.RegionIDs())
				}
			},
		},
		{
			name: "embedded disabled extra only",
			opts: derp.MapOptions{ExtraConfigPath: extraPath},
			check: func(t *testing.T, m *tailcfg.DERPMap) {
				if len(m.Regions) != 1 || m.Regions[10] == nil {
					t.Fatalf("regions %v", m.RegionIDs())
				}
			},
		},
		{name: "nothing at all", opts: derp.MapOptions{}, wantErr: "embedded relay is disabled"},
		{name: "embedded without access url", opts: derp.MapOptions{EnableEmbedded: true}, wantErr: "access URL is required"},
		{name: "bad scheme", opts: derp.MapOptions{EnableEmbedded: true, AccessURL: mustURL(t, "ftp://x")}, wantErr: "must be http or https"},
		{name: "bad stun address", opts: derp.MapOptions{EnableEmbedded: true, AccessURL: mustURL(t, "https://x"), STUNAddresses: []string{"nope"}}, wantErr: "STUN address"},
		{name: "duplicate region across sources", opts: derp.MapOptions{EnableEmbedded: true, AccessURL: mustURL(t, "https://x"), ExtraConfigPath: dupPath}, wantErr: "duplicate DERP region ID 999"},
		{name: "duplicate region keys in file", opts: derp.MapOptions{ExtraConfigPath: dupKeysPath}, wantErr: "duplicate DERP region ID 5"},
		{name: "bad json", opts: derp.MapOptions{ExtraConfigPath: badPath}, wantErr: "decode DERP map"},
		{name: "missing file", opts: derp.MapOptions{ExtraConfigPath: filepath.Join(dir, "missing.json")}, wantErr: "read DERP config file"},
		{name: "url 404", opts: derp.MapOptions{ExtraConfigURL: hs.URL + "/nope"}, wantErr: "404"},
		{name: "empty region in file", opts: derp.MapOptions{ExtraConfigPath: emptyNodesPath}, wantErr: "has no nodes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := derp.BuildMap(context.Background(), tt.opts)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("BuildMap: %v", err)
			}
			if !m.OmitDefaultRegions {
				t.Fatal("OmitDefaultRegions not set")
			}
			tt.check(t, m)
			// The map survives a JSON round trip (it is sent to peers).
			b, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			back, err := derp.ParseMap(b)
			if err != nil {
				t.Fatal(err)
			}
			if err := derp.ValidateMap(back); err != nil {
				t.Fatalf("round-tripped map invalid: %v", err)
			}
		})
	}
}

func TestValidateMap(t *testing.T) {
	node := func(name string, region int, host string) *tailcfg.DERPNode {
		return &tailcfg.DERPNode{Name: name, RegionID: region, HostName: host}
	}
	valid := func() *tailcfg.DERPMap {
		return &tailcfg.DERPMap{OmitDefaultRegions: true, Regions: map[int]*tailcfg.DERPRegion{
			1: {RegionID: 1, RegionCode: "a", Nodes: []*tailcfg.DERPNode{node("1a", 1, "a.example")}},
			2: {RegionID: 2, RegionCode: "b", Nodes: []*tailcfg.DERPNode{node("2a", 2, "b.example")}},
		}}
	}
	tests := []struct {
		name    string
		mutate  func(m *tailcfg.DERPMap) *tailcfg.DERPMap
		wantErr string
	}{
		{name: "valid", mutate: func(m *tailcfg.DERPMap) *tailcfg.DERPMap { return m }},
		{name: "nil", mutate: func(*tailcfg.DERPMap) *tailcfg.DERPMap { return nil }, wantErr: "nil"},
		{name: "default regions allowed", mutate: func(m *tailcfg.DERPMap) *tailcfg.DERPMap { m.OmitDefaultRegions = false; return m }, wantErr: "OmitDefaultRegions"},
		{name: "no regions", mutate: func(m *tailcfg.DERPMap) *tailcfg.DERPMap { m.Regions = nil; return m }, wantErr: "no regions"},
		{name: "key mismatch", mutate: func(m *tailcfg.DERPMap) *tailcfg.DERPMap { m.Regions[1].RegionID = 3; return m }, wantErr: "under key 1 has RegionID 3"},
		{name: "null region", mutate: func(m *tailcfg.DERPMap) *tailcfg.DERPMap { m.Regions[1] = nil; return m }, wantErr: "region 1 is null"},
		{name: "no nodes", mutate: func(m *tailcfg.DERPMap) *tailcfg.DERPMap { m.Regions[2].Nodes = nil; return m }, wantErr: "region 2 (b) has no nodes"},
		{name: "missing hostname", mutate: func(m *tailcfg.DERPMap) *tailcfg.DERPMap { m.Regions[1].Nodes[0].HostName = ""; return m }, wantErr: "has no HostName"},
		{name: "unknown region", mutate: func(m *tailcfg.DERPMap) *tailcfg.DERPMap { m.Regions[1].Nodes[0].RegionID = 42; return m }, wantErr: "references unknown region 42"},
		{name: "node in wrong region", mutate: func(m *tailcfg.DERPMap) *tailcfg.DERPMap { m.Regions[1].Nodes[0].RegionID = 2; return m }, wantErr: "listed in region 1 but references region 2"},
		{name: "duplicate code", mutate: func(m *tailcfg.DERPMap) *tailcfg.DERPMap { m.Regions[2].RegionCode = "a"; return m }, wantErr: "share RegionCode"},
		{name: "duplicate node name", mutate: func(m *tailcfg.DERPMap) *tailcfg.DERPMap { m.Regions[2].Nodes[0].Name = "1a"; return m }, wantErr: "used in regions 1 and 2"},
		{name: "home params unknown region", mutate: func(m *tailcfg.DERPMap) *tailcfg.DERPMap {
			m.HomeParams = &tailcfg.DERPHomeParams{RegionScore: map[int]float64{7: 2}}
			return m
		}, wantErr: "unknown region 7"},
		{name: "bad port", mutate: func(m *tailcfg.DERPMap) *tailcfg.DERPMap { m.Regions[1].Nodes[0].DERPPort = 70000; return m }, wantErr: "invalid DERPPort"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := derp.ValidateMap(tt.mutate(valid()))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want containing %q", err, tt.wantErr)
			}
		})
	}
}
