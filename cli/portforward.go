package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/spf13/cobra"
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

func (r *root) portForwardCommand() *cobra.Command {
	var (
		o        reachOptions
		tcpSpecs []string
	)
	cmd := &cobra.Command{
		Use:     "tunnel [owner/]WORKSPACE[.AGENT] --tcp [BIND:]LOCAL[:REMOTE]...",
		Aliases: []string{"port-forward"},
		Short:   "Forward local TCP ports to ports inside a workspace",
		Long: "Listen on local ports and forward each connection through the mesh to the agent, which dials\n" +
			"127.0.0.1:REMOTE in the workspace. Ranges (8000-8010:9000-9010) and a bind address\n" +
			"(127.0.0.1:5432:5432) are accepted. Runs until interrupted.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if len(tcpSpecs) == 0 {
				return errors.New("nothing to forward: pass at least one --tcp LOCAL:REMOTE")
			}
			var maps []portMapping
			for _, s := range tcpSpecs {
				m, err := parsePortSpec("tcp", s)
				if err != nil {
					return err
				}
				maps = append(maps, m...)
			}
			// Listen first: a busy port fails before any network work.
			listeners := make([]net.Listener, 0, len(maps))
			closeAll := func() {
				for _, ln := range listeners {
					_ = ln.Close()
				}
			}
			for _, m := range maps {
				ln, err := net.Listen(m.network, m.listenAddr)
				if err != nil {
					closeAll()
					if errors.Is(err, syscall.EADDRINUSE) {
						return fmt.Errorf("local port %s is already in use (another process listens on it); pick another LOCAL port", m.listenAddr)
					}
					return fmt.Errorf("listen on %s: %w", m.listenAddr, err)
				}
				listeners = append(listeners, ln)
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
			for i, ln := range listeners {
				m := maps[i]
				fmt.Fprintf(r.stdout, "Forwarding %s %s -> %s:127.0.0.1:%d\n", m.network, ln.Addr(), rc.ws.Name, m.remotePort)
				wg.Add(1)
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
