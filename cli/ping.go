package cli

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/wgmesh/coder/tunnel"
)

// pingPath describes the path of one pong.
func pingPath(p tunnel.PingResult) string {
	if p.Direct {
		return "direct " + p.Endpoint
	}
	if p.DERPRegionCode != "" {
		return "via DERP(" + p.DERPRegionCode + ")"
	}
	return fmt.Sprintf("via DERP(%d)", p.DERPRegionID)
}

// noDirectReason guesses why no direct path was established, from our
// side's view of the network.
func noDirectReason(st tunnel.Status, nr tunnel.NetcheckReport, haveReport bool) string {
	switch {
	case st.BlockEndpoints:
		return "direct connections are disabled by the deployment or this client"
	case haveReport && !nr.UDP:
		return "UDP is blocked on this network (no STUN answer), so only DERP works"
	case haveReport && nr.MappingVariesByDestIP != nil && *nr.MappingVariesByDestIP:
		return "this side is behind a hard NAT (mapping varies by destination); a direct path needs an easy NAT on the workspace side"
	default:
		return "the workspace side may block UDP or be behind a hard NAT; traffic is relayed"
	}
}

func (r *root) pingCommand() *cobra.Command {
	var (
		o        reachOptions
		count    int
		interval time.Duration
		timeout  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "ping [owner/]WORKSPACE[.AGENT]",
		Short: "Ping a workspace agent through the mesh and show the path",
		Long: "Send disco pings to the agent and print each pong's latency and path (via DERP or direct\n" +
			"ip:port). Stops early once a direct path is in use; the last line says whether one was established.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if count < 1 {
				return errors.New("-n must be at least 1")
			}
			if timeout <= 0 {
				return errors.New("--timeout must be positive")
			}
			if interval <= 0 {
				return errors.New("--wait must be positive")
			}
			rc, err := r.reach(ctx, args[0], o, "ping")
			if err != nil {
				return err
			}
			defer rc.close()
			rc.status.Clear()
			ip := rc.conn.AgentIP()
			direct := false
			var lastPath string
			t := time.NewTicker(interval)
			defer t.Stop()
			for i := 0; i < count; i++ {
				if i > 0 {
					select {
					case <-ctx.Done():
						return ctx.Err()
					case <-t.C:
					}
				}
				pctx, cancel := context.WithTimeout(ctx, timeout)
				p, err := rc.conn.Ping(pctx)
				cancel()
				if err != nil {
					fmt.Fprintf(r.stdout, "ping %s (%s): timeout after %s\n", rc.ws.Name, ip, timeout)
					continue
				}
				lastPath = pingPath(p)
				fmt.Fprintf(r.stdout, "pong from %s (%s) %s in %s\n", rc.ws.Name, ip, lastPath, p.Latency.Round(10*time.Microsecond))
				if p.Direct {
					direct = true
					break
				}
			}
			if direct {
				fmt.Fprintf(r.stdout, "✔ direct connection established: %s\n", lastPath)
				return nil
			}
			nr, ok := rc.conn.TunnelConn().NetcheckReport(ctx)
			if lastPath == "" {
				return fmt.Errorf("no pong from %s after %d pings", rc.ws.Name, count)
			}
			fmt.Fprintf(r.stdout, "✘ no direct connection after %d pings, relayed %s: %s\n", count, lastPath,
				noDirectReason(rc.conn.TunnelConn().Status(), nr, ok))
			return nil
		},
	}
	addReachFlags(cmd, &o, false)
	cmd.Flags().IntVarP(&count, "num", "n", 10, "Number of pings to send (stops early on a direct path).")
	cmd.Flags().DurationVar(&interval, "wait", time.Second, "How long to wait between pings.")
	// --interval is this CLI's older name of --wait.
	cmd.Flags().DurationVar(&interval, "interval", time.Second, "Same as --wait.")
	_ = cmd.Flags().MarkHidden("interval")
	cmd.Flags().DurationVarP(&timeout, "timeout", "t", 5*time.Second, "How long to wait for a ping to complete.")
	return cmd
}
