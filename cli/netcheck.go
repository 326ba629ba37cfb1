package cli

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"time"

	"github.com/spf13/cobra"

	"github.com/wgmesh/coder/codersdk/workspacesdk"
	"github.com/wgmesh/coder/tunnel"
)

// netcheckOutput is `coder netcheck -o json`.
type netcheckOutput struct {
	tunnel.NetcheckReport
	// Regions names the DERP regions by ID.
	Regions map[int]string `json:"regions"`
	// PreferredRegion is the code of the preferred region.
	PreferredRegion string `json:"preferred_region,omitempty"`
}

func (r *root) netcheckCommand() *cobra.Command {
	var (
		out     outputFormat
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "netcheck",
		Short: "Report this machine's network conditions for the mesh (DERP latency, UDP, NAT)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if err := out.validate(); err != nil {
				return err
			}
			client, err := r.client()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			info, err := client.AgentConnectionInfo(ctx)
			if err != nil {
				return fmt.Errorf("get mesh connection info: %w", err)
			}
			logger, closeLog, err := r.openLogger("", "netcheck")
			if err != nil {
				return err
			}
			defer closeLog()
			conn, err := tunnel.NewConn(workspacesdk.TunnelOptions(client, info, tunnel.Options{
				Addresses: []netip.Prefix{tunnel.RandomPrefix()},
				Logger:    logger,
			}))
			if err != nil {
				return fmt.Errorf("create tunnel: %w", err)
			}
			defer conn.Close()
			var report tunnel.NetcheckReport
			t := time.NewTicker(100 * time.Millisecond)
			defer t.Stop()
			for {
				var ok bool
				report, ok = conn.NetcheckReport(ctx)
				if ok {
					break
				}
				select {
				case <-ctx.Done():
					return fmt.Errorf("no netcheck report within %s: STUN and DERP of the deployment are unreachable", timeout)
				case <-t.C:
				}
			}
			res := netcheckOutput{NetcheckReport: report, Regions: map[int]string{}}
			for id, reg := range info.DERPMap.Regions {
				res.Regions[id] = reg.RegionCode
			}
			res.PreferredRegion = res.Regions[report.PreferredDERP]
			if out.value == "json" {
				return writeJSON(r.stdout, res)
			}
			yesNo := func(b bool) string {
				if b {
					return "yes"
				}
				return "no"
			}
			fmt.Fprintf(r.stdout, "Report:\n")
			fmt.Fprintf(r.stdout, "  * UDP: %s\n", yesNo(report.UDP))
			fmt.Fprintf(r.stdout, "  * IPv4: %s", yesNo(report.IPv4))
			if report.GlobalV4 != "" {
				fmt.Fprintf(r.stdout, ", public endpoint %s", report.GlobalV4)
			}
			fmt.Fprintln(r.stdout)
			fmt.Fprintf(r.stdout, "  * IPv6: %s", yesNo(report.IPv6))
			if report.GlobalV6 != "" {
				fmt.Fprintf(r.stdout, ", public endpoint %s", report.GlobalV6)
			}
			fmt.Fprintln(r.stdout)
			switch {
			case report.MappingVariesByDestIP == nil:
				fmt.Fprintln(r.stdout, "  * NAT mapping varies by destination (hard NAT): unknown")
			default:
				fmt.Fprintf(r.stdout, "  * NAT mapping varies by destination (hard NAT): %s\n", yesNo(*report.MappingVariesByDestIP))
			}
			fmt.Fprintf(r.stdout, "  * Preferred DERP region: %d (%s)\n", report.PreferredDERP, res.PreferredRegion)
			fmt.Fprintln(r.stdout, "  * DERP latency:")
			ids := make([]int, 0, len(info.DERPMap.Regions))
			for id := range info.DERPMap.Regions {
				ids = append(ids, id)
			}
			sort.Ints(ids)
			for _, id := range ids {
				lat := "unreachable"
				if d, ok := report.RegionLatency[id]; ok {
					lat = d.Round(10 * time.Microsecond).String()
				}
				fmt.Fprintf(r.stdout, "    - %d %s: %s\n", id, res.Regions[id], lat)
			}
			return nil
		},
	}
	addOutputFlag(cmd, &out, "table")
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "How long to wait for the report.")
	return cmd
}
