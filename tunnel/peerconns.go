package tunnel

import (
	"net"
	"net/netip"
	"sync"
)

// peerConns tracks the TCP connections carried by the tunnel (dialed with
// DialContext or accepted on a Listen()ed port) by their remote address, so
// that removing a peer ends every connection with it at once on this side.
// Without it a removed peer's connections would only notice after TCP
// retransmissions give up (minutes), since no packet reaches the peer any
// more: revoking a user's access would leave their shells running.
type peerConns struct {
	mu    sync.Mutex
	conns map[netip.Addr]map[*trackedConn]struct{}
}

// track wraps nc, registered under its remote address until it is closed.
func (pc *peerConns) track(nc net.Conn, remote netip.Addr) net.Conn {
	t := &trackedConn{Conn: nc, pc: pc, remote: remote.Unmap()}
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if pc.conns == nil {
		pc.conns = map[netip.Addr]map[*trackedConn]struct{}{}
	}
	s := pc.conns[t.remote]
	if s == nil {
		s = map[*trackedConn]struct{}{}
		pc.conns[t.remote] = s
	}
	s[t] = struct{}{}
	return t
}

// closeMatching closes every tracked connection whose remote address is in
// one of prefixes, and returns how many it closed.
func (pc *peerConns) closeMatching(prefixes []netip.Prefix) int {
	var victims []*trackedConn
	pc.mu.Lock()
	for addr, s := range pc.conns {
		for _, p := range prefixes {
			if p.IsValid() && p.Contains(addr) {
				for t := range s {
					victims = append(victims, t)
				}
				break
			}
		}
	}
	pc.mu.Unlock()
	for _, t := range victims {
		_ = t.Close()
	}
	return len(victims)
}

func (pc *peerConns) forget(t *trackedConn) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if s := pc.conns[t.remote]; s != nil {
		delete(s, t)
		if len(s) == 0 {
			delete(pc.conns, t.remote)
		}
	}
}

// trackedConn is a tunnel TCP connection known to peerConns. It keeps the
// half-close of the netstack connection (CloseWrite) available.
type trackedConn struct {
	net.Conn
	pc     *peerConns
	remote netip.Addr
	once   sync.Once
}

// Close implements net.Conn.
func (t *trackedConn) Close() error {
	err := t.Conn.Close()
	t.once.Do(func() { t.pc.forget(t) })
	return err
}

// CloseWrite shuts down the writing side (sends FIN) when the underlying
// connection supports it.
func (t *trackedConn) CloseWrite() error {
	if cw, ok := t.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// CloseRead shuts down the reading side when the underlying connection
// supports it.
func (t *trackedConn) CloseRead() error {
	if cr, ok := t.Conn.(interface{ CloseRead() error }); ok {
		return cr.CloseRead()
	}
	return nil
}
