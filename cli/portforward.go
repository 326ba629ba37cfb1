package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/wgmesh/coder/codersdk/agentproto"
)

// portMapping is one forwarded port: a local listen address and the port
// the agent dials on 127.0.0.1 in the workspace.
type portMapping struct {
	network    string
	listenAddr string
	remotePort int
}

// parsePortRange parses "P" or "A-B".
func parsePortRange(s string) (lo, hi int, err error) {
	a, b, isRange := strings.Cut(s, "-")
	lo, err = strconv.Atoi(a)
	if err != nil || lo < 1 || lo > 65535 {
		return 0, 0, fmt.Errorf("bad port %q", a)
	}
	hi = lo
	if isRange {
		hi, err = strconv.Atoi(b)
		if err != nil || hi < 1 || hi > 65535 {
			return 0, 0, fmt.Errorf("bad port %q", b)
		}
		if hi < lo {
			return 0, 0, fmt.Errorf("range %q is reversed", s)
		}
	}
	return lo, hi, nil
}

// parsePortSpec parses "[BIND:]LOCAL[:REMOTE]" where LOCAL and REMOTE may be
// ranges of the same length ("8000-8010:9000-9010").
func parsePortSpec(network, spec string) ([]portMapping, error) {
	bind := "127.0.0.1"
	parts := strings.Split(spec, ":")
	if strings.HasPrefix(spec, "[") {
		// IPv6 bind address: [::1]:LOCAL[:REMOTE]
		end := strings.Index(spec, "]")
		if end < 0 || end+1 >= len(spec) || spec[end+1] != ':' {
			return nil, fmt.Errorf("--%s %q: bad IPv6 bind address", network, spec)
		}
		bind = spec[1:end]
		parts = strings.Split(spec[end+2:], ":")
	} else if len(parts) == 3 {
		bind, parts = parts[0], parts[1:]
	}
	if len(parts) < 1 || len(parts) > 2 {
		return nil, fmt.Errorf("--%s %q: want [BIND:]LOCAL[:REMOTE]", network, spec)
	}
	if net.ParseIP(bind) == nil {
		return nil, fmt.Errorf("--%s %q: bind address %q is not an IP", network, spec, bind)
	}
	llo, lhi, err := parsePortRange(parts[0])
	if err != nil {
		return nil, fmt.Errorf("--%s %q: %w", network, spec, err)
	}
	rlo, rhi := llo, lhi
	if len(parts) == 2 {
		if rlo, rhi, err = parsePortRange(parts[1]); err != nil {
			return nil, fmt.Errorf("--%s %q: %w", network, spec, err)
		}
	}
	if lhi-llo != rhi-rlo {
		return nil, fmt.Errorf("--%s %q: local and remote ranges differ in length", network, spec)
	}
	if lhi-llo > 1000 {
		return nil, fmt.Errorf("--%s %q: at most 1001 ports per range", network, spec)
	}
	out := make([]portMapping, 0, lhi-llo+1)
	for i := 0; i <= lhi-llo; i++ {
		out = append(out, portMapping{network: network, listenAddr: net.JoinHostPort(bind, strconv.Itoa(llo+i)), remotePort: rlo + i})
	}
	return out, nil
}

// defaultUDPIdleTimeout ends a UDP session without traffic.
const defaultUDPIdleTimeout = 2 * time.Minute

func (r *root) portForwardCommand() *cobra.Command {
	var (
		o        reachOptions
		tcpSpecs []string
		udpSpecs []string
		udpIdle  time.Duration
	)
	cmd := &cobra.Command{
		Use:     "tunnel [owner/]WORKSPACE[.AGENT] --tcp [BIND:]LOCAL[:REMOTE]... --udp [BIND:]LOCAL[:REMOTE]...",
		Aliases: []string{"port-forward"},
		Short:   "Forward local TCP and UDP ports to ports inside a workspace",
		Long: "Listen on local ports and forward each connection through the mesh to the agent, which dials\n" +
			"127.0.0.1:REMOTE in the workspace. Ranges (8000-8010:9000-9010) and a bind address\n" +
			"(127.0.0.1:5432:5432) are accepted. UDP is relayed per local source address: each source\n" +
			"gets its own socket in the workspace, closed after --udp-idle-timeout without traffic.\n" +
			"Runs until interrupted.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if len(tcpSpecs) == 0 && len(udpSpecs) == 0 {
				return errors.New("nothing to forward: pass at least one --tcp or --udp LOCAL:REMOTE")
			}
			if udpIdle <= 0 || udpIdle > agentproto.MaxUDPRelayIdleTimeout {
				return fmt.Errorf("--udp-idle-timeout %s: must be in (0, %s]", udpIdle, agentproto.MaxUDPRelayIdleTimeout)
			}
			var maps []portMapping
			for _, spec := range []struct {
				network string
				specs   []string
			}{{"tcp", tcpSpecs}, {"udp", udpSpecs}} {
				for _, s := range spec.specs {
					m, err := parsePortSpec(spec.network, s)
					if err != nil {
						return err
					}
					maps = append(maps, m...)
				}
			}
			// Listen first: a busy port fails before any network work.
			var (
				closers   []io.Closer
				listeners = make([]net.Listener, len(maps))
				packets   = make([]*net.UDPConn, len(maps))
			)
			closeAll := func() {
				for _, c := range closers {
					_ = c.Close()
				}
			}
			for i, m := range maps {
				var (
					c   io.Closer
					err error
				)
				switch m.network {
				case "udp":
					var addr *net.UDPAddr
					if addr, err = net.ResolveUDPAddr("udp", m.listenAddr); err == nil {
						packets[i], err = net.ListenUDP("udp", addr)
						c = packets[i]
					}
				default:
					listeners[i], err = net.Listen(m.network, m.listenAddr)
					c = listeners[i]
				}
				if err != nil {
					closeAll()
					if errors.Is(err, syscall.EADDRINUSE) {
						if m.network == "udp" {
							return fmt.Errorf("local UDP port %s is already in use (another process has it open); pick another LOCAL port", m.listenAddr)
						}
						return fmt.Errorf("local port %s is already in use (another process listens on it); pick another LOCAL port", m.listenAddr)
					}
					return fmt.Errorf("listen on %s %s: %w", m.network, m.listenAddr, err)
				}
				closers = append(closers, c)
			}
			defer closeAll()
			rc, err := r.reach(ctx, args[0], o, "tunnel")
			if err != nil {
				return err
			}
			defer rc.close()
			rc.status.Clear()
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			var wg sync.WaitGroup
			for i, m := range maps {
				wg.Add(1)
				if m.network == "udp" {
					pc := packets[i]
					fmt.Fprintf(r.stdout, "Forwarding %s %s -> %s:127.0.0.1:%d\n", m.network, pc.LocalAddr(), rc.ws.Name, m.remotePort)
					go func() {
						defer wg.Done()
						r.serveUDPForward(ctx, pc, rc, m, udpIdle)
					}()
					continue
				}
				ln := listeners[i]
				fmt.Fprintf(r.stdout, "Forwarding %s %s -> %s:127.0.0.1:%d\n", m.network, ln.Addr(), rc.ws.Name, m.remotePort)
				go func() {
					defer wg.Done()
					r.serveForward(ctx, ln, rc, m)
				}()
			}
			fmt.Fprintln(r.stdout, "Ready; press Ctrl+C to stop.")
			<-ctx.Done()
			closeAll()
			wg.Wait()
			return nil
		},
	}
	addReachFlags(cmd, &o, false)
	cmd.Flags().StringArrayVar(&tcpSpecs, "tcp", nil, "Forward TCP [BIND:]LOCAL[:REMOTE] (ports or equal-length ranges; repeatable).")
	cmd.Flags().StringArrayVarP(&tcpSpecs, "port", "p", nil, "Alias of --tcp.")
	_ = cmd.Flags().MarkHidden("port")
	cmd.Flags().StringArrayVar(&udpSpecs, "udp", nil, "Forward UDP [BIND:]LOCAL[:REMOTE] (ports or equal-length ranges; repeatable).")
	cmd.Flags().DurationVar(&udpIdle, "udp-idle-timeout", defaultUDPIdleTimeout, "Close a UDP session (one per local source address) after this long without traffic.")
	return cmd
}

// serveForward accepts local connections and pipes each to the remote
// port through the agent, until ctx ends or the listener closes.
func (r *root) serveForward(ctx context.Context, ln net.Listener, rc *reached, m portMapping) {
	var wg sync.WaitGroup
	defer wg.Wait()
	remote := net.JoinHostPort("127.0.0.1", strconv.Itoa(m.remotePort))
	for {
		lc, err := ln.Accept()
		if err != nil {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer lc.Close()
			stop := context.AfterFunc(ctx, func() { _ = lc.Close() })
			defer stop()
			rconn, err := rc.conn.DialContext(ctx, "tcp", remote)
			if err != nil {
				rc.logger.Warn("forward: dial in workspace", "remote", remote, "error", err)
				fmt.Fprintf(r.stderr, "forward %s -> %s: %v\n", lc.LocalAddr(), remote, err)
				return
			}
			defer rconn.Close()
			stop2 := context.AfterFunc(ctx, func() { _ = rconn.Close() })
			defer stop2()
			pipe(lc, rconn)
		}()
	}
}

// udpSessionQueue bounds the datagrams of one source waiting for its relay.
const udpSessionQueue = 256

// serveUDPForward reads datagrams from pc and relays each local source
// address through its own relay stream to 127.0.0.1:m.remotePort in the
// workspace, sending the answers back to that source. A session ends after
// idle without traffic; the next datagram from the source opens a new one.
// It returns when pc closes, after every session has ended.
func (r *root) serveUDPForward(ctx context.Context, pc *net.UDPConn, rc *reached, m portMapping, idle time.Duration) {
	var (
		mu       sync.Mutex
		sessions = map[netip.AddrPort]*udpSession{}
		wg       sync.WaitGroup
	)
	defer func() {
		mu.Lock()
		for _, s := range sessions {
			_ = s.Close()
		}
		mu.Unlock()
		wg.Wait()
	}()
	remote := net.JoinHostPort("127.0.0.1", strconv.Itoa(m.remotePort))
	buf := make([]byte, agentproto.MaxUDPDatagram)
	for {
		n, src, err := pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || ctx.Err() != nil {
				return
			}
			rc.logger.Debug("udp forward: read", "listen", pc.LocalAddr().String(), "error", err)
			continue
		}
		data := append([]byte(nil), buf[:n]...)
		mu.Lock()
		s := sessions[src]
		if s == nil {
			s = newUDPSession(pc, src)
			sessions[src] = s
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() {
					mu.Lock()
					if sessions[src] == s {
						delete(sessions, src)
					}
					mu.Unlock()
					_ = s.Close()
				}()
				logger := rc.logger.With("source", src.String(), "remote", remote)
				relay, err := rc.conn.DialUDP(ctx, m.remotePort, idle+30*time.Second)
				if err != nil {
					if ctx.Err() == nil {
						logger.Warn("udp forward: open relay", "error", err)
						fmt.Fprintf(r.stderr, "forward udp %s -> %s: %v\n", src, remote, err)
					}
					return
				}
				logger.Debug("udp session started")
				agentproto.RelayDatagrams(s, relay, idle, logger)
				logger.Debug("udp session ended")
			}()
		}
		mu.Unlock()
		select {
		case s.in <- data:
		default:
			rc.logger.Debug("udp forward: session queue full; dropping datagram", "source", src.String())
		}
	}
}

// udpSession is the local end of one source's relay: a datagram net.Conn
// whose Read yields what the source sent and whose Write answers it.
type udpSession struct {
	pc        *net.UDPConn
	src       netip.AddrPort
	in        chan []byte
	closed    chan struct{}
	closeOnce sync.Once
}

func newUDPSession(pc *net.UDPConn, src netip.AddrPort) *udpSession {
	return &udpSession{pc: pc, src: src, in: make(chan []byte, udpSessionQueue), closed: make(chan struct{})}
}

// Read returns the next datagram from the source.
func (s *udpSession) Read(p []byte) (int, error) {
	select {
	case d := <-s.in:
		return copy(p, d), nil
	case <-s.closed:
		return 0, net.ErrClosed
	}
}

// Write sends p to the source from the local listening socket.
func (s *udpSession) Write(p []byte) (int, error) {
	select {
	case <-s.closed:
		return 0, net.ErrClosed
	default:
	}
	return s.pc.WriteToUDPAddrPort(p, s.src)
}

// Close ends the session (the shared socket stays open).
func (s *udpSession) Close() error {
	s.closeOnce.Do(func() { close(s.closed) })
	return nil
}

func (s *udpSession) LocalAddr() net.Addr  { return s.pc.LocalAddr() }
func (s *udpSession) RemoteAddr() net.Addr { return net.UDPAddrFromAddrPort(s.src) }

// Deadlines are not supported; the relay ends sessions by closing them.
func (s *udpSession) SetDeadline(time.Time) error      { return os.ErrNoDeadline }
func (s *udpSession) SetReadDeadline(time.Time) error  { return os.ErrNoDeadline }
func (s *udpSession) SetWriteDeadline(time.Time) error { return os.ErrNoDeadline }
