// Package healthcheck runs coderd's health checks: the bounded, cached
// database probe behind /healthz and the full report behind
// /api/v2/debug/health (database, DERP relays, STUN servers, provisioner
// daemons).
package healthcheck

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"tailscale.com/derp/derphttp"
	"tailscale.com/net/netmon"
	"tailscale.com/net/stun"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"
	"tailscale.com/types/logger"

	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/tunnel"
)

// DefaultCheckTimeout bounds each check of Run.
const DefaultCheckTimeout = 10 * time.Second

// Options are what Run checks.
type Options struct {
	// PingDB makes one round trip to the database.
	PingDB func(ctx context.Context) error
	// DERPMap returns the map handed to peers; nil or empty skips DERP and STUN.
	DERPMap func() *tailcfg.DERPMap
	// ProvisionerDaemons lists the registered daemons, with Live set.
	ProvisionerDaemons func(ctx context.Context) ([]codersdk.ProvisionerDaemonItem, error)
	// DERPPlainHTTP reaches relays over plain HTTP (an http:// access URL).
	DERPPlainHTTP bool
	// AdmitProbeKey, when set, makes the DERP probe's random node key known
	// to a relay that admits only known keys, until release is called.
	AdmitProbeKey func(k key.NodePublic) (release func(), err error)
	// Replicas lists the live replicas; nil means a single node.
	Replicas func() []codersdk.Replica
	// Timeout bounds each check (default DefaultCheckTimeout).
	Timeout time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Run runs every check concurrently, each bounded by opts.Timeout, and
// returns the summarized report.
func Run(ctx context.Context, opts Options) codersdk.HealthReport {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultCheckTimeout
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.DERPPlainHTTP {
		tunnel.UseDERPPlainHTTP()
	}
	start := opts.Now()
	var m *tailcfg.DERPMap
	if opts.DERPMap != nil {
		m = opts.DERPMap()
	}
	r := codersdk.HealthReport{Time: start.UTC()}
	var wg sync.WaitGroup
	run := func(f func(ctx context.Context)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, opts.Timeout)
			defer cancel()
			f(cctx)
		}()
	}
	run(func(ctx context.Context) { r.Database = checkDatabase(ctx, opts.PingDB) })
	run(func(ctx context.Context) { r.DERP = checkDERP(ctx, m, opts.AdmitProbeKey) })
	run(func(ctx context.Context) { r.STUN = checkSTUN(ctx, m) })
	run(func(ctx context.Context) { r.ProvisionerDaemons = checkDaemons(ctx, opts.ProvisionerDaemons) })
	r.Replicas = checkReplicas(opts.Replicas)
	wg.Wait()
	r.DurationMS = ms(opts.Now().Sub(start))
	r.Summarize()
	return r
}

// checkReplicas warns about version mismatches, replicas reporting an
// error and replicas whose relays do not mesh.
func checkReplicas(list func() []codersdk.Replica) codersdk.ReplicasHealth {
	h := codersdk.ReplicasHealth{HealthSection: codersdk.NewHealthSection(), Replicas: []codersdk.Replica{}}
	if list == nil {
		return h
	}
	h.Enabled = true
	h.Replicas = append(h.Replicas, list()...)
	versions := map[string][]string{}
	for _, r := range h.Replicas {
		versions[r.Version] = append(versions[r.Version], r.Hostname)
		if r.Error != "" {
			h.Warn(fmt.Sprintf("replica %s (%s): %s", r.ID, r.Hostname, r.Error))
		}
		if r.RelayAddress == "" && len(h.Replicas) > 1 {
			h.Warn(fmt.Sprintf("replica %s (%s) has no --derp-server-relay-url: its relay does not mesh with the others", r.ID, r.Hostname))
		}
	}
	if len(versions) > 1 {
		h.Warn(fmt.Sprintf("replicas run %d different versions: upgrade every replica to the same version", len(versions)))
	}
	return h
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func checkDatabase(ctx context.Context, ping func(context.Context) error) codersdk.DatabaseHealth {
	h := codersdk.DatabaseHealth{HealthSection: codersdk.NewHealthSection()}
	if ping == nil {
		h.SetError("no database configured")
		return h
	}
	start := time.Now()
	err := ping(ctx)
	h.LatencyMS = ms(time.Since(start))
	if err != nil {
		h.SetError(fmt.Sprintf("ping database: %v", err))
		return h
	}
	h.Reachable = true
	if h.LatencyMS > 100 {
		h.Warn(fmt.Sprintf("database round trip took %.0f ms (over 100 ms slows every request)", h.LatencyMS))
	}
	return h
}

// checkDERP connects to every node of every region with the DERP protocol
// and pings the relay. A region is healthy when one of its nodes is; the
// section is unhealthy when a whole region is.
func checkDERP(ctx context.Context, m *tailcfg.DERPMap, admit func(key.NodePublic) (func(), error)) codersdk.DERPHealth {
	h := codersdk.DERPHealth{HealthSection: codersdk.NewHealthSection(), Regions: []codersdk.DERPRegionHealth{}}
	if m == nil || len(m.Regions) == 0 {
		h.SetError("the DERP map has no regions: peers that cannot connect directly cannot connect at all")
		return h
	}
	ids := m.RegionIDs()
	regions := make([]codersdk.DERPRegionHealth, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		region := m.Regions[id]
		var relays []*tailcfg.DERPNode
		for _, n := range region.Nodes {
			if !n.STUNOnly {
				relays = append(relays, n)
			}
		}
		rh := codersdk.DERPRegionHealth{
			HealthSection: codersdk.NewHealthSection(), RegionID: id, RegionCode: region.RegionCode,
			RegionName: region.RegionName, Nodes: make([]codersdk.DERPNodeHealth, len(relays)),
		}
		for j, node := range relays {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rh.Nodes[j] = checkDERPNode(ctx, region, node, admit)
			}()
		}
		regions[i] = rh
	}
	wg.Wait()
	for i := range regions {
		rh := &regions[i]
		healthy := 0
		for _, n := range rh.Nodes {
			if n.Healthy {
				healthy++
			} else {
				rh.Warn(fmt.Sprintf("node %s: %s", n.Name, n.Error))
			}
		}
		switch {
		case len(rh.Nodes) == 0:
			rh.SetError("region has no relay nodes")
		case healthy == 0:
			rh.SetError("no node of the region answers")
		}
		if !rh.Healthy {
			h.SetError(fmt.Sprintf("region %d (%s) is unreachable", rh.RegionID, rh.RegionCode))
		} else if rh.Severity != codersdk.HealthSeverityOK {
			h.Warn(fmt.Sprintf("region %d (%s) has unreachable nodes", rh.RegionID, rh.RegionCode))
		}
	}
	h.Regions = regions
	return h
}

func checkDERPNode(ctx context.Context, region *tailcfg.DERPRegion, node *tailcfg.DERPNode, admit func(key.NodePublic) (func(), error)) codersdk.DERPNodeHealth {
	h := codersdk.DERPNodeHealth{HealthSection: codersdk.NewHealthSection(), Name: node.Name, HostName: node.HostName}
	single := *region
	single.Nodes = []*tailcfg.DERPNode{node}
	probeKey := key.NewNode()
	if admit != nil {
		release, err := admit(probeKey.Public())
		if err != nil {
			h.SetError(fmt.Sprintf("admit the probe's node key: %v", err))
			return h
		}
		defer release()
	}
	c := derphttp.NewRegionClient(probeKey, logger.Discard, netmon.NewStatic(), func() *tailcfg.DERPRegion { return &single })
	defer c.Close()
	start := time.Now()
	if err := c.Connect(ctx); err != nil {
		h.SetError(fmt.Sprintf("connect: %v", err))
		return h
	}
	h.ConnectMS = ms(time.Since(start))
	// Pongs are handled by the receive loop; it ends when c is closed.
	recvDone := make(chan struct{})
	go func() {
		defer close(recvDone)
		for {
			if _, err := c.Recv(); err != nil {
				return
			}
		}
	}()
	defer func() {
		_ = c.Close()
		<-recvDone
	}()
	start = time.Now()
	if err := c.Ping(ctx); err != nil {
		h.SetError(fmt.Sprintf("ping the relay: %v", err))
		return h
	}
	h.RoundTripMS = ms(time.Since(start))
	return h
}

// checkSTUN sends a binding request to every STUN server of the map.
func checkSTUN(ctx context.Context, m *tailcfg.DERPMap) codersdk.STUNHealth {
	h := codersdk.STUNHealth{HealthSection: codersdk.NewHealthSection(), Servers: []codersdk.STUNNodeHealth{}}
	if m != nil {
		for _, id := range m.RegionIDs() {
			for _, node := range m.Regions[id].Nodes {
				if node.STUNPort < 0 {
					continue
				}
				host := node.HostName
				switch {
				case node.STUNTestIP != "":
					host = node.STUNTestIP
				case node.IPv4 != "" && node.IPv4 != "none":
					host = node.IPv4
				}
				port := node.STUNPort
				if port == 0 {
					port = 3478
				}
				h.Servers = append(h.Servers, codersdk.STUNNodeHealth{
					HealthSection: codersdk.NewHealthSection(), RegionID: id, NodeName: node.Name,
					Address: net.JoinHostPort(host, strconv.Itoa(port)),
				})
			}
		}
	}
	h.Enabled = len(h.Servers) > 0
	if !h.Enabled {
		h.Warn("no STUN servers: peers cannot learn their public addresses, so connections go through DERP")
		return h
	}
	var wg sync.WaitGroup
	for i := range h.Servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stunProbe(ctx, &h.Servers[i])
		}()
	}
	wg.Wait()
	ok := 0
	for _, s := range h.Servers {
		if s.Healthy {
			ok++
		} else {
			h.Warn(fmt.Sprintf("STUN server %s (%s): %s", s.NodeName, s.Address, s.Error))
		}
	}
	if ok == 0 {
		h.SetError("no STUN server answers")
	}
	return h
}

// stunProbe sends up to three binding requests (UDP may drop one).
func stunProbe(ctx context.Context, s *codersdk.STUNNodeHealth) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "udp", s.Address)
	if err != nil {
		s.SetError(fmt.Sprintf("dial: %v", err))
		return
	}
	defer conn.Close()
	var lastErr error
	for attempt := 0; attempt < 3 && ctx.Err() == nil; attempt++ {
		txID := stun.NewTxID()
		deadline := time.Now().Add(time.Second)
		if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
			deadline = dl
		}
		_ = conn.SetDeadline(deadline)
		start := time.Now()
		if _, err := conn.Write(stun.Request(txID)); err != nil {
			lastErr = fmt.Errorf("send binding request: %w", err)
			continue
		}
		mapped, err := readSTUNResponse(conn, txID)
		if err != nil {
			lastErr = err
			continue
		}
		s.LatencyMS = ms(time.Since(start))
		s.MappedAddress = mapped.String()
		return
	}
	if lastErr == nil {
		lastErr = ctx.Err()
	}
	s.SetError(lastErr.Error())
}

func readSTUNResponse(conn net.Conn, txID stun.TxID) (netip.AddrPort, error) {
	buf := make([]byte, 1500)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			return netip.AddrPort{}, fmt.Errorf("read binding response: %w", err)
		}
		got, addr, err := stun.ParseResponse(buf[:n])
		if err != nil || got != txID {
			continue // not our answer
		}
		return addr, nil
	}
}

func checkDaemons(ctx context.Context, list func(context.Context) ([]codersdk.ProvisionerDaemonItem, error)) codersdk.ProvisionerDaemonsHealth {
	h := codersdk.ProvisionerDaemonsHealth{HealthSection: codersdk.NewHealthSection(), Daemons: []codersdk.ProvisionerDaemonItem{}}
	if list == nil {
		h.SetError("provisioner daemons are not available")
		return h
	}
	daemons, err := list(ctx)
	if err != nil {
		h.SetError(fmt.Sprintf("list provisioner daemons: %v", err))
		return h
	}
	h.Daemons = daemons
	for _, d := range daemons {
		if d.Live {
			h.Live++
		}
	}
	switch {
	case len(daemons) == 0:
		h.SetError("no provisioner daemon is registered: builds stay pending")
	case h.Live == 0:
		h.SetError(fmt.Sprintf("none of the %d registered provisioner daemons was seen recently: builds stay pending", len(daemons)))
	case h.Live < len(daemons):
		h.Warn(fmt.Sprintf("%d of %d registered provisioner daemons were not seen recently", len(daemons)-h.Live, len(daemons)))
	}
	return h
}

// DBProbe answers "can the database be reached?" cheaply for /healthz: one
// bounded ping at a time, its result reused for TTL, so a load balancer
// polling many times a second costs the database at most one ping per TTL.
type DBProbe struct {
	ping    func(ctx context.Context) error
	timeout time.Duration
	ttl     time.Duration
	now     func() time.Time

	mu      sync.Mutex
	checked time.Time
	err     error
}

// ErrDatabaseUnreachable is what DBProbe.Check reports when the ping failed.
var ErrDatabaseUnreachable = errors.New("database unreachable")

// NewDBProbe returns a probe pinging with ping, each ping bounded by
// timeout, each result cached for ttl.
func NewDBProbe(ping func(ctx context.Context) error, timeout, ttl time.Duration) *DBProbe {
	return &DBProbe{ping: ping, timeout: timeout, ttl: ttl, now: time.Now}
}

// Check returns nil when the database answered the last ping (at most TTL
// ago), else an error wrapping ErrDatabaseUnreachable with the cause.
func (p *DBProbe) Check(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.checked.IsZero() && p.now().Sub(p.checked) < p.ttl {
		return p.err
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.timeout)
	defer cancel()
	p.err = nil
	if err := p.ping(pctx); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("no answer within %v", p.timeout)
		}
		p.err = fmt.Errorf("%w: %w", ErrDatabaseUnreachable, err)
	}
	p.checked = p.now()
	return p.err
}
