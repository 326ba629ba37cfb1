package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/wgmesh/coder/codersdk/agentproto"
	"github.com/wgmesh/coder/codersdk/workspacesdk"
)

// formatBits renders a throughput in bits per second.
func formatBits(bps float64) string {
	switch {
	case bps >= 1e9:
		return fmt.Sprintf("%.2f Gbits/sec", bps/1e9)
	case bps >= 1e6:
		return fmt.Sprintf("%.2f Mbits/sec", bps/1e6)
	case bps >= 1e3:
		return fmt.Sprintf("%.2f Kbits/sec", bps/1e3)
	default:
		return fmt.Sprintf("%.0f bits/sec", bps)
	}
}

func (r *root) speedtestCommand() *cobra.Command {
	var (
		o         reachOptions
		duration  time.Duration
		direction string
		out       outputFormat
	)
	cmd := &cobra.Command{
		Use:   "speedtest [owner/]WORKSPACE[.AGENT]",
		Short: "Measure throughput through the mesh to a workspace agent",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if err := out.validate(); err != nil {
				return err
			}
			var dir string
			switch direction {
			case "down", "download":
				dir = agentproto.SpeedtestDownload
			case "up", "upload":
				dir = agentproto.SpeedtestUpload
			default:
				return fmt.Errorf("--direction %q: want up or down", direction)
			}
			rc, err := r.reach(ctx, args[0], o, "speedtest")
			if err != nil {
				return err
			}
			defer rc.close()
			rc.status.Clear()
			path := "via DERP"
			if p, err := rc.conn.Ping(ctx); err == nil {
				path = pingPath(p)
			}
			table := out.value == "table"
			if table {
				fmt.Fprintf(r.stdout, "Speed test %s %s for %s (%s)\n", dir, rc.ws.Name, duration, path)
				fmt.Fprintln(r.stdout, "Interval            Transfer       Throughput")
			}
			printRow := func(iv workspacesdk.SpeedtestInterval) {
				fmt.Fprintf(r.stdout, "%6.2f-%-6.2f sec   %8.2f MiB   %s\n", iv.Start.Seconds(), iv.End.Seconds(),
					float64(iv.Bytes)/(1<<20), formatBits(iv.BitsPerSecond()))
			}
			var onInterval func(workspacesdk.SpeedtestInterval)
			if table {
				onInterval = printRow
			}
			res, err := rc.conn.Speedtest(ctx, dir, duration, time.Second, onInterval)
			if err != nil {
				return err
			}
			if !table {
				return writeJSON(r.stdout, res)
			}
			fmt.Fprintln(r.stdout, "----------------------------------------------")
			printRow(res.Total)
			return nil
		},
	}
	addReachFlags(cmd, &o, false)
	cmd.Flags().DurationVarP(&duration, "time", "t", 5*time.Second, "How long to run the test (at most 30s).")
	cmd.Flags().StringVar(&direction, "direction", "down", "up (client to workspace) or down (workspace to client).")
	addOutputFlag(cmd, &out, "table")
	return cmd
}
