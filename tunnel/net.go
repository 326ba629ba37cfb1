package tunnel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
)

// DialContext dials addr ("[ip]:port" or "ip:port", IP literal only) on the
// tailnet. network is "tcp", "tcp4", "tcp6", "udp", "udp4" or "udp6". Dials
// fail at once when no peer serves the address, and fail when the Conn closes.
func (c *Conn) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, fmt.Errorf("tunnel: dial %s: address must be ip:port: %w", addr, err)
	}
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	if c.isClosed() {
		return nil, ErrClosed
	}
	if _, ok := c.peerKeyForIP(ap.Addr()); !ok {
		return nil, fmt.Errorf("tunnel: dial %s: no peer for %v", addr, ap.Addr())
	}
	// Pending dials fail when the Conn closes.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(c.ctx, cancel)
	defer stop()

	switch network {
	case "tcp", "tcp4", "tcp6":
		conn, err := c.netStack.DialContextTCP(ctx, ap)
		if err != nil {
			if c.ctx.Err() != nil {
				return nil, fmt.Errorf("tunnel: dial %s: %w", addr, ErrClosed)
			}
			return nil, fmt.Errorf("tunnel: dial tcp %s: %w", addr, err)
		}
		return c.tcpConns.track(conn, ap.Addr()), nil
	case "udp", "udp4", "udp6":
		conn, err := c.netStack.DialContextUDP(ctx, ap)
		if err != nil {
			if c.ctx.Err() != nil {
				return nil, fmt.Errorf("tunnel: dial %s: %w", addr, ErrClosed)
			}
			return nil, fmt.Errorf("tunnel: dial udp %s: %w", addr, err)
		}
		return conn, nil
	default:
		return nil, fmt.Errorf("tunnel: dial: unsupported network %q", network)
	}
}

// Listen opens a TCP port on our tailnet addresses. network is "tcp", "tcp4"
// or "tcp6"; addr is ":port" (all our addresses) or "[ip]:port" with one of
// our addresses. Port 0 is not supported.
func (c *Conn) Listen(network, addr string) (net.Listener, error) {
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, fmt.Errorf("tunnel: listen: unsupported network %q", network)
	}
	ip, port, err := c.parseListenAddr(addr)
	if err != nil {
		return nil, err
	}
	l := &listener{
		c:      c,
		ip:     ip,
		port:   port,
		conns:  make(chan net.Conn),
		closed: make(chan struct{}),
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	for _, other := range c.tcpListeners[port] {
		if !other.ip.IsValid() || !ip.IsValid() || other.ip == ip {
			return nil, fmt.Errorf("tunnel: listen %s: address already in use", addr)
		}
	}
	c.tcpListeners[port] = append(c.tcpListeners[port], l)
	return l, nil
}

// ListenPacket opens a UDP port on the tailnet. network is "udp", "udp4" or
// "udp6"; addr is "[ip]:port" with one of our addresses, or ":port", which
// binds our first address of the requested family.
func (c *Conn) ListenPacket(network, addr string) (net.PacketConn, error) {
	ip, port, err := c.parseListenAddr(addr)
	if err != nil {
		return nil, err
	}
	if !ip.IsValid() {
		for _, p := range c.addresses {
			a := p.Addr()
			if network == "udp" || (network == "udp4" && a.Is4()) || (network == "udp6" && a.Is6()) {
				ip = a
				break
			}
		}
		if !ip.IsValid() {
			return nil, fmt.Errorf("tunnel: listen %s %s: no address of that family", network, addr)
		}
	}
	nsNetwork := "udp6"
	if ip.Is4() {
		nsNetwork = "udp4"
	}
	switch {
	case network == "udp", network == nsNetwork:
	default:
		return nil, fmt.Errorf("tunnel: listen packet: unsupported network %q for %v", network, ip)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	pc, err := c.netStack.ListenPacket(nsNetwork, netip.AddrPortFrom(ip, port).String())
	if err != nil {
		return nil, fmt.Errorf("tunnel: listen packet %s: %w", addr, err)
	}
	tpc := &packetConn{PacketConn: pc, c: c}
	c.packetConns[tpc] = struct{}{}
	return tpc, nil
}

func (c *Conn) parseListenAddr(addr string) (netip.Addr, uint16, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return netip.Addr{}, 0, fmt.Errorf("tunnel: listen address %q: %w", addr, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || port == 0 {
		return netip.Addr{}, 0, fmt.Errorf("tunnel: listen address %q: need a port in 1-65535", addr)
	}
	if host == "" {
		return netip.Addr{}, uint16(port), nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, 0, fmt.Errorf("tunnel: listen address %q: %w", addr, err)
	}
	if ip.IsUnspecified() {
		return netip.Addr{}, uint16(port), nil
	}
	for _, p := range c.addresses {
		if p.Addr() == ip {
			return ip, uint16(port), nil
		}
	}
	return netip.Addr{}, 0, fmt.Errorf("tunnel: listen address %q: %v is not one of our addresses", addr, ip)
}

// tcpHandlerForFlow decides what happens to an inbound TCP connection: it
// goes to a Listen()ed port, or it is reset. Never forwarded to the host.
func (c *Conn) tcpHandlerForFlow(src, dst netip.AddrPort) (func(net.Conn), bool) {
	c.mu.Lock()
	var l *listener
	if !c.closed {
		for _, cand := range c.tcpListeners[dst.Port()] {
			if !cand.ip.IsValid() || cand.ip == dst.Addr() {
				l = cand
				break
			}
		}
	}
	c.mu.Unlock()
	if l == nil {
		return nil, true // RST
	}
	return func(nc net.Conn) { l.deliver(c.tcpConns.track(nc, src.Addr())) }, true
}

func (c *Conn) removeListener(l *listener) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ls := c.tcpListeners[l.port]
	for i, cand := range ls {
		if cand == l {
			ls = append(ls[:i:i], ls[i+1:]...)
			break
		}
	}
	if len(ls) == 0 {
		delete(c.tcpListeners, l.port)
	} else {
		c.tcpListeners[l.port] = ls
	}
}

// listener is a net.Listener fed by the netstack TCP flow handler.
type listener struct {
	c     *Conn
	ip    netip.Addr // invalid: all our addresses
	port  uint16
	conns chan net.Conn

	closeOnce sync.Once
	closed    chan struct{}
}

// deliver hands an accepted connection to Accept, or closes it if the
// listener or the Conn closes first.
func (l *listener) deliver(conn net.Conn) {
	select {
	case l.conns <- conn:
	case <-l.closed:
		_ = conn.Close()
	case <-l.c.ctx.Done():
		_ = conn.Close()
	}
}

// Accept implements net.Listener.
func (l *listener) Accept() (net.Conn, error) {
	select {
	case conn := <-l.conns:
		return conn, nil
	case <-l.closed:
		return nil, net.ErrClosed
	case <-l.c.ctx.Done():
		return nil, net.ErrClosed
	}
}

// Close implements net.Listener.
func (l *listener) Close() error {
	l.closeOnce.Do(func() {
		close(l.closed)
		l.c.removeListener(l)
	})
	return nil
}

// Addr implements net.Listener.
func (l *listener) Addr() net.Addr {
	ip := l.ip
	if !ip.IsValid() {
		ip = l.c.addresses[0].Addr()
	}
	return net.TCPAddrFromAddrPort(netip.AddrPortFrom(ip, l.port))
}

// packetConn removes itself from the Conn's registry when closed.
type packetConn struct {
	net.PacketConn
	c    *Conn
	once sync.Once
}

// Close implements net.PacketConn.
func (p *packetConn) Close() error {
	err := p.PacketConn.Close()
	p.once.Do(func() {
		p.c.mu.Lock()
		delete(p.c.packetConns, p)
		p.c.mu.Unlock()
	})
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
