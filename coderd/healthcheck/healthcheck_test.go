package healthcheck_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"tailscale.com/tailcfg"

	"github.com/wgmesh/coder/coderd/healthcheck"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/derp"
)

// TestDBProbeBoundedAndCached: a burst of /healthz checks costs one ping
// per TTL, a hung database answers within the timeout, and recovery shows
// once the cached failure expired.
func TestDBProbeBoundedAndCached(t *testing.T) {
	t.Parallel()
	pings := 0
	down := true
	ping := func(ctx context.Context) error {
		pings++
		if down {
			<-ctx.Done() // a database that never answers
			return ctx.Err()
		}
		return nil
	}
	p := healthcheck.NewDBProbe(ping, 20*time.Millisecond, time.Hour)
	for i := 0; i < 50; i++ {
		err := p.Check(context.Background())
		if !errors.Is(err, healthcheck.ErrDatabaseUnreachable) {
			t.Fatalf("check %d: %v, want ErrDatabaseUnreachable", i, err)
		}
	}
	if pings != 1 {
		t.Fatalf("%d pings for 50 checks within the TTL, want 1", pings)
	}

	down = false
	p = healthcheck.NewDBProbe(ping, 20*time.Millisecond, 0)
	if err := p.Check(context.Background()); err != nil {
		t.Fatalf("check with the database up: %v", err)
	}
}

// TestSTUNSection asks a real STUN server and a port where none listens.
func TestSTUNSection(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	addr, closer, err := derp.ListenSTUN(ctx, "127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = closer.Close() })
	dead, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadPort := dead.LocalAddr().(*net.UDPAddr).Port
	_ = dead.Close()

	stunMap := func(ports ...int) *tailcfg.DERPMap {
		r := &tailcfg.DERPRegion{RegionID: 1, RegionCode: "t"}
		for i, p := range ports {
			r.Nodes = append(r.Nodes, &tailcfg.DERPNode{Name: "s" + strconv.Itoa(i), RegionID: 1, HostName: "127.0.0.1",
				IPv4: "127.0.0.1", STUNPort: p, STUNOnly: true})
		}
		return &tailcfg.DERPMap{Regions: map[int]*tailcfg.DERPRegion{1: r}}
	}
	live := addr.(*net.UDPAddr).Port
	for _, tc := range []struct {
		name     string
		m        *tailcfg.DERPMap
		healthy  bool
		severity codersdk.HealthSeverity
	}{
		{"answering server", stunMap(live), true, codersdk.HealthSeverityOK},
		{"one of two answers", stunMap(live, deadPort), true, codersdk.HealthSeverityWarning},
		{"nothing answers", stunMap(deadPort), false, codersdk.HealthSeverityError},
		{"no STUN configured", stunMap(-1), true, codersdk.HealthSeverityWarning},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rep := healthcheck.Run(context.Background(), healthcheck.Options{
				DERPMap: func() *tailcfg.DERPMap { return tc.m },
				Timeout: 5 * time.Second,
			})
			if rep.STUN.Healthy != tc.healthy || rep.STUN.Severity != tc.severity {
				t.Fatalf("STUN section %+v, want healthy=%v severity=%s", rep.STUN, tc.healthy, tc.severity)
			}
			for _, s := range rep.STUN.Servers {
				if s.Healthy && s.MappedAddress == "" {
					t.Fatalf("healthy server without a mapped address: %+v", s)
				}
			}
		})
	}
}

// TestReplicasSection: a single node has a healthy, disabled section;
// replicas of different versions, an erroring replica and a replica that
// cannot mesh are warnings (the deployment works, degraded).
func TestReplicasSection(t *testing.T) {
	mk := func(host, version, relay, errMsg string) codersdk.Replica {
		return codersdk.Replica{ID: uuid.New(), Hostname: host, Version: version, RelayAddress: relay, Error: errMsg}
	}
	tests := []struct {
		name     string
		replicas func() []codersdk.Replica
		enabled  bool
		warnings []string
	}{
		{"single node", nil, false, nil},
		{"healthy pair", func() []codersdk.Replica {
			return []codersdk.Replica{mk("a", "v1", "http://a", ""), mk("b", "v1", "http://b", "")}
		}, true, nil},
		{"version mismatch", func() []codersdk.Replica {
			return []codersdk.Replica{mk("a", "v1", "http://a", ""), mk("b", "v2", "http://b", "")}
		}, true, []string{"2 different versions"}},
		{"no relay URL", func() []codersdk.Replica {
			return []codersdk.Replica{mk("a", "v1", "http://a", ""), mk("b", "v1", "", "")}
		}, true, []string{"does not mesh"}},
		{"replica error", func() []codersdk.Replica {
			return []codersdk.Replica{mk("a", "v1", "http://a", "DERP mesh: boom")}
		}, true, []string{"DERP mesh: boom"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := healthcheck.Run(context.Background(), healthcheck.Options{Replicas: tt.replicas})
			h := rep.Replicas
			if !h.Healthy || h.Enabled != tt.enabled || len(h.Warnings) != len(tt.warnings) {
				t.Fatalf("section %+v, want enabled=%v warnings %v", h, tt.enabled, tt.warnings)
			}
			for i, w := range tt.warnings {
				if !strings.Contains(h.Warnings[i], w) {
					t.Fatalf("warning %q, want it to contain %q", h.Warnings[i], w)
				}
			}
		})
	}
}
