package natlab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Roles of the plain-socket probe that checks a lab's NAT behaviour (no
// tailscale involved): a STUN-like server in the internet namespace that
// tells each sender the address it saw, and a client on a site's host.
const (
	RoleProbeServer = "probe-server"
	RoleProbeClient = "probe-client"
)

// ProbePort is the UDP and TCP port of the probe server on InternetAddr and
// InternetAltAddr; ProbeAltPort is a second UDP socket on InternetAddr that
// only ever sends (used to test the NAT's filtering).
const (
	ProbePort    = 3478
	ProbeAltPort = 3479
)

// ProbeRoles returns the probe roles, for Main.
func ProbeRoles() map[string]Role {
	return map[string]Role{
		RoleProbeServer: probeServerRole,
		RoleProbeClient: probeClientRole,
	}
}

// ProbeServerReady is what the probe server reports when ready.
type ProbeServerReady struct {
	UDP []string `json:"udp"`
	TCP string   `json:"tcp"`
}

// probeServerRole answers "probe <nonce>" datagrams with "<nonce> <observed
// source address>" from the socket that received them. "probe-alt <nonce>"
// is answered first from the ProbeAltPort socket and then from the receiving
// socket, so that a client that got the second answer knows whether the NAT
// let the first one through. TCP connections get the observed address and
// then an echo of what they send.
func probeServerRole(ctx context.Context, logger *slog.Logger) (any, Handler, func(), error) {
	var conns []*net.UDPConn
	closeAll := func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}
	listen := func(a netip.Addr, port uint16) (*net.UDPConn, error) {
		c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, port)))
		if err != nil {
			return nil, fmt.Errorf("probe server: %w", err)
		}
		conns = append(conns, c)
		return c, nil
	}
	main1, err := listen(InternetAddr, ProbePort)
	if err != nil {
		return nil, nil, nil, err
	}
	main2, err := listen(InternetAltAddr, ProbePort)
	if err != nil {
		closeAll()
		return nil, nil, nil, err
	}
	alt, err := listen(InternetAddr, ProbeAltPort)
	if err != nil {
		closeAll()
		return nil, nil, nil, err
	}
	ln, err := net.Listen("tcp4", netip.AddrPortFrom(InternetAddr, ProbePort).String())
	if err != nil {
		closeAll()
		return nil, nil, nil, fmt.Errorf("probe server: %w", err)
	}
	var wg sync.WaitGroup
	serveUDP := func(c *net.UDPConn) {
		defer wg.Done()
		buf := make([]byte, 1500)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			kind, nonce, _ := strings.Cut(string(buf[:n]), " ")
			answer := []byte(nonce + " " + from.String())
			switch kind {
			case "probe-alt":
				if _, err := alt.WriteToUDPAddrPort(answer, from); err != nil {
					logger.Warn("probe server: alt write", "err", err)
				}
				fallthrough
			case "probe":
				if _, err := c.WriteToUDPAddrPort(answer, from); err != nil {
					logger.Warn("probe server: write", "err", err)
				}
			}
		}
	}
	wg.Add(3)
	go serveUDP(main1)
	go serveUDP(main2)
	go func() { // the alt socket only sends; drain it so it never fills
		defer wg.Done()
		buf := make([]byte, 1500)
		for {
			if _, _, err := alt.ReadFromUDPAddrPort(buf); err != nil {
				return
			}
		}
	}()
	conCtx, cancel := context.WithCancel(ctx)
	wg.Add(1)
	go func() {
		defer wg.Done()
		var cwg sync.WaitGroup
		defer cwg.Wait()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			cwg.Add(1)
			go func() {
				defer cwg.Done()
				defer c.Close()
				stop := context.AfterFunc(conCtx, func() { _ = c.Close() })
				defer stop()
				if _, err := fmt.Fprintf(c, "%s\n", c.RemoteAddr()); err != nil {
					return
				}
				buf := make([]byte, 32<<10)
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					if _, err := c.Write(buf[:n]); err != nil {
						return
					}
				}
			}()
		}
	}()
	stop := func() {
		cancel()
		_ = ln.Close()
		closeAll()
		wg.Wait()
	}
	ready := ProbeServerReady{TCP: ln.Addr().String()}
	for _, c := range []*net.UDPConn{main1, main2} {
		ready.UDP = append(ready.UDP, c.LocalAddr().String())
	}
	h := func(ctx context.Context, cmd string, args []string) (any, error) {
		switch cmd {
		case "ping":
			return "pong", nil
		}
		return nil, fmt.Errorf("unknown command %q", cmd)
	}
	return ready, h, stop, nil
}

// ProbeUDPResult maps each probed destination to the source address the
// server saw (the NAT's public mapping); destinations that never answered
// are listed in Missing.
type ProbeUDPResult struct {
	Local   string            `json:"local"`
	Mapped  map[string]string `json:"mapped"`
	Missing []string          `json:"missing,omitempty"`
}

// ProbeAltResult tells which sockets' answers to a "probe-alt" reached the
// client: the probed one (always, unless UDP is blocked) and the server's
// other port on the same address (only through NATs that filter by address,
// not by port).
type ProbeAltResult struct {
	Mapped      string `json:"mapped"`
	AltReceived bool   `json:"alt_received"`
}

// ProbeTCPResult is the server's view of a TCP connection.
type ProbeTCPResult struct {
	Mapped string `json:"mapped"`
	Echoed bool   `json:"echoed"`
}

// probeClientRole keeps one UDP socket for its whole life (so successive
// probes share a NAT mapping) and answers:
//
//	udp DST...   probe each DST (ip:port) until it answers or the call's
//	             deadline passes; result ProbeUDPResult
//	alt DST      "probe-alt" DST; result ProbeAltResult
//	tcp DST      connect, read the observed address, echo a line; ProbeTCPResult
func probeClientRole(ctx context.Context, logger *slog.Logger) (any, Handler, func(), error) {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("probe client: %w", err)
	}
	c := &probeClient{conn: conn, logger: logger}
	stop := func() { _ = conn.Close() }
	return map[string]string{"local": conn.LocalAddr().String()}, c.handle, stop, nil
}

type probeClient struct {
	conn   *net.UDPConn
	logger *slog.Logger
	seq    int
}

func (c *probeClient) handle(ctx context.Context, cmd string, args []string) (any, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
	}
	switch cmd {
	case "udp":
		return c.probeUDP(ctx, args)
	case "alt":
		if len(args) != 1 {
			return nil, errors.New("alt: want one destination")
		}
		return c.probeAlt(ctx, args[0])
	case "tcp":
		if len(args) != 1 {
			return nil, errors.New("tcp: want one destination")
		}
		return probeTCP(ctx, args[0])
	}
	return nil, fmt.Errorf("unknown command %q", cmd)
}

func (c *probeClient) nonce() string {
	c.seq++
	return fmt.Sprintf("n%d", c.seq)
}

// exchange sends msg to every destination every resend interval until
// done(answers) is true or ctx ends; answers maps nonce → list of (source,
// payload) received.
func (c *probeClient) exchange(ctx context.Context, sends map[netip.AddrPort]string, done func(got map[string][]reply) bool) (map[string][]reply, error) {
	got := map[string][]reply{}
	const resend = 200 * time.Millisecond
	buf := make([]byte, 1500)
	for ctx.Err() == nil {
		for dst, msg := range sends {
			if _, err := c.conn.WriteToUDPAddrPort([]byte(msg), dst); err != nil {
				c.logger.Debug("probe client: send", "dst", dst, "err", err)
			}
		}
		next := time.Now().Add(resend)
		if dl, ok := ctx.Deadline(); ok && dl.Before(next) {
			next = dl
		}
		if err := c.conn.SetReadDeadline(next); err != nil {
			return nil, fmt.Errorf("set deadline: %w", err)
		}
		for {
			n, from, err := c.conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					break
				}
				return nil, fmt.Errorf("read: %w", err)
			}
			nonce, mapped, _ := strings.Cut(string(buf[:n]), " ")
			got[nonce] = append(got[nonce], reply{from: from, mapped: mapped})
			if done(got) {
				return got, nil
			}
		}
	}
	return got, nil
}

type reply struct {
	from   netip.AddrPort
	mapped string
}

func (c *probeClient) probeUDP(ctx context.Context, args []string) (*ProbeUDPResult, error) {
	if len(args) == 0 {
		return nil, errors.New("udp: want destinations")
	}
	sends := map[netip.AddrPort]string{}
	nonces := map[string]string{} // nonce → dst
	for _, a := range args {
		dst, err := netip.ParseAddrPort(a)
		if err != nil {
			return nil, fmt.Errorf("udp: %w", err)
		}
		n := c.nonce()
		sends[dst] = "probe " + n
		nonces[n] = a
	}
	got, err := c.exchange(ctx, sends, func(got map[string][]reply) bool {
		for n := range nonces {
			if len(got[n]) == 0 {
				return false
			}
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	res := &ProbeUDPResult{Local: c.conn.LocalAddr().String(), Mapped: map[string]string{}}
	for n, dst := range nonces {
		if r := got[n]; len(r) > 0 {
			res.Mapped[dst] = r[0].mapped
		} else {
			res.Missing = append(res.Missing, dst)
		}
	}
	return res, nil
}

func (c *probeClient) probeAlt(ctx context.Context, target string) (*ProbeAltResult, error) {
	dst, err := netip.ParseAddrPort(target)
	if err != nil {
		return nil, fmt.Errorf("alt: %w", err)
	}
	n := c.nonce()
	fromDst := func(rs []reply) (reply, bool) {
		for _, r := range rs {
			if r.from == dst {
				return r, true
			}
		}
		return reply{}, false
	}
	// The server sends the alt answer before the direct one along the same
	// path, so once the direct answer is here the alt one has arrived or been
	// dropped by the NAT.
	got, err := c.exchange(ctx, map[netip.AddrPort]string{dst: "probe-alt " + n}, func(got map[string][]reply) bool {
		_, ok := fromDst(got[n])
		return ok
	})
	if err != nil {
		return nil, err
	}
	r, ok := fromDst(got[n])
	if !ok {
		return nil, fmt.Errorf("alt: no answer from %s", dst)
	}
	res := &ProbeAltResult{Mapped: r.mapped}
	for _, r := range got[n] {
		if r.from != dst {
			res.AltReceived = true
		}
	}
	return res, nil
}

func probeTCP(ctx context.Context, target string) (*ProbeTCPResult, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp4", target)
	if err != nil {
		return nil, fmt.Errorf("tcp: %w", err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	br := bufio.NewReader(conn)
	mapped, err := br.ReadString('\n')
	if err != nil {
		return nil, fmt.Errorf("tcp: read mapping: %w", err)
	}
	const msg = "hello through the lab\n"
	if _, err := conn.Write([]byte(msg)); err != nil {
		return nil, fmt.Errorf("tcp: write: %w", err)
	}
	back, err := br.ReadString('\n')
	if err != nil {
		return nil, fmt.Errorf("tcp: read echo: %w", err)
	}
	return &ProbeTCPResult{Mapped: strings.TrimSpace(mapped), Echoed: back == msg}, nil
}
