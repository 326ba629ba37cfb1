package derp

import (
	"net"
	"net/netip"
	"net/url"
	"strings"

	"tailscale.com/tailcfg"
)

// ForPeerAt returns the DERP map as seen by a peer that reaches coderd at
// coderURL. A node whose host is a loopback name or address (127.0.0.0/8, ::1,
// "localhost") can only be the server's own host: from a peer that reaches
// coderd at another host — an agent in a container reaching it through the
// Docker bridge as host.docker.internal, say — such a node would point at the
// peer itself. Those nodes get coderURL's host instead (ports are kept: the
// same server, another address). The map is copied; m is not modified. When
// coderURL's host is itself loopback, or nil, m is returned unchanged.
func ForPeerAt(m *tailcfg.DERPMap, coderURL *url.URL) *tailcfg.DERPMap {
	if m == nil || coderURL == nil {
		return m
	}
	host := coderURL.Hostname()
	if host == "" || isLoopbackHost(host) {
		return m
	}
	changed := false
	for _, r := range m.Regions {
		if r == nil {
			continue
		}
		for _, n := range r.Nodes {
			if n != nil && isLoopbackHost(n.HostName) {
				changed = true
			}
		}
	}
	if !changed {
		return m
	}
	out := m.Clone()
	for _, r := range out.Regions {
		if r == nil {
			continue
		}
		for _, n := range r.Nodes {
			if n == nil || !isLoopbackHost(n.HostName) {
				continue
			}
			n.HostName = host
			n.IPv4, n.IPv6 = "", ""
			setIP(n, host)
		}
	}
	return out
}

// isLoopbackHost reports whether host is "localhost" (or a name below it) or a
// loopback address.
func isLoopbackHost(host string) bool {
	h := strings.TrimSuffix(strings.ToLower(host), ".")
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return true
	}
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	if ip, err := netip.ParseAddr(h); err == nil {
		return ip.Unmap().IsLoopback()
	}
	if ip := net.ParseIP(h); ip != nil {
		return ip.IsLoopback()
	}
	return false
}
