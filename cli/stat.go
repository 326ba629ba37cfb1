package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/wgmesh/coder/cli/clistat"
)

// statOutput is the -o flag of the stat commands: text (one line) or json.
type statOutput struct{ value string }

func (o *statOutput) add(cmd *cobra.Command) {
	o.value = "text"
	cmd.Flags().StringVarP(&o.value, "output", "o", "text", "Output format: text or json.")
}

func (o statOutput) validate() error {
	switch o.value {
	case "text", "json":
		return nil
	default:
		return fmt.Errorf("unknown output format %q: use text or json", o.value)
	}
}

func (r *root) writeStat(o statOutput, prefix clistat.Prefix, res clistat.Result) error {
	if o.value == "json" {
		return writeJSON(r.stdout, res)
	}
	_, err := fmt.Fprintln(r.stdout, res.Text(prefix))
	return err
}

// statCommand is `coder stat`: resource use of the workspace (container or
// host) for agent metadata scripts.
func (r *root) statCommand() *cobra.Command {
	var out outputFormat
	var st clistat.Statter
	cmd := &cobra.Command{
		Use:   "stat",
		Short: "Show CPU, memory and disk use of this workspace (container cgroup or host)",
		Long: "Without a subcommand, prints a table of every measurement that applies here.\n" +
			"Inside a container, cpu and mem measure its cgroup (v1 or v2) against its limits;\n" +
			"--host measures the whole machine from /proc. Templates call these from agent metadata scripts.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := out.validate(); err != nil {
				return err
			}
			type row struct {
				Name string `json:"name"`
				clistat.Result
			}
			var rows []row
			add := func(name string, res clistat.Result, err error) error {
				if err != nil {
					return fmt.Errorf("%s: %w", name, err)
				}
				rows = append(rows, row{Name: name, Result: res})
				return nil
			}
			ctx := cmd.Context()
			res, err := st.HostCPU(ctx)
			if err := add("host_cpu", res, err); err != nil {
				return err
			}
			res, err = st.HostMemory()
			if err := add("host_memory", res, err); err != nil {
				return err
			}
			home, err := r.homeDir()
			if err != nil {
				return err
			}
			res, err = st.Disk(home)
			if err := add("home_disk", res, err); err != nil {
				return err
			}
			if st.IsContainerized() {
				res, err = st.ContainerCPU(ctx)
				if err := add("container_cpu", res, err); err != nil {
					return err
				}
				res, err = st.ContainerMemory()
				if err := add("container_memory", res, err); err != nil {
					return err
				}
			}
			if out.value == "json" {
				return writeJSON(r.stdout, rows)
			}
			table := make([][]string, 0, len(rows))
			for _, rw := range rows {
				table = append(table, []string{rw.Name, rw.Text(clistat.PrefixGibi), rw.Source})
			}
			return writeTable(r.stdout, []string{"NAME", "USAGE", "SOURCE"}, table)
		},
	}
	addOutputFlag(cmd, &out, "table")
	cmd.AddCommand(r.statCPUCommand(&st), r.statMemCommand(&st), r.statDiskCommand(&st))
	return cmd
}

func (r *root) statCPUCommand(st *clistat.Statter) *cobra.Command {
	var out statOutput
	var host bool
	cmd := &cobra.Command{
		Use:   "cpu",
		Short: "Show CPU use in cores (of the container, or the host with --host)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := out.validate(); err != nil {
				return err
			}
			measure := st.HostCPU
			if !host && st.IsContainerized() {
				measure = st.ContainerCPU
			}
			res, err := measure(cmd.Context())
			if err != nil {
				return fmt.Errorf("measure CPU: %w", err)
			}
			return r.writeStat(out, clistat.PrefixNone, res)
		},
	}
	cmd.Flags().BoolVar(&host, "host", false, "Measure the host, not the container.")
	out.add(cmd)
	return cmd
}

func (r *root) statMemCommand(st *clistat.Statter) *cobra.Command {
	var out statOutput
	var host bool
	var prefix string
	cmd := &cobra.Command{
		Use:   "mem",
		Short: "Show memory use (of the container, or the host with --host)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := out.validate(); err != nil {
				return err
			}
			p, err := clistat.ParsePrefix(prefix)
			if err != nil {
				return err
			}
			measure := st.HostMemory
			if !host && st.IsContainerized() {
				measure = st.ContainerMemory
			}
			res, err := measure()
			if err != nil {
				return fmt.Errorf("measure memory: %w", err)
			}
			return r.writeStat(out, p, res)
		},
	}
	cmd.Flags().BoolVar(&host, "host", false, "Measure the host, not the container.")
	cmd.Flags().StringVar(&prefix, "prefix", "Gi", "Unit prefix of the text output: Ki, Mi, Gi or Ti.")
	out.add(cmd)
	return cmd
}

func (r *root) statDiskCommand(st *clistat.Statter) *cobra.Command {
	var out statOutput
	var path, prefix string
	cmd := &cobra.Command{
		Use:   "disk",
		Short: "Show disk use of the filesystem holding --path",
		Args:  cobra.NoArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			if err := out.validate(); err != nil {
				return err
			}
			p, err := clistat.ParsePrefix(prefix)
			if err != nil {
				return err
			}
			res, err := st.Disk(path)
			if err != nil {
				return fmt.Errorf("measure disk: %w", err)
			}
			return r.writeStat(out, p, res)
		},
	}
	cmd.Flags().StringVar(&path, "path", "/", "A path on the filesystem to measure.")
	cmd.Flags().StringVar(&prefix, "prefix", "Gi", "Unit prefix of the text output: Ki, Mi, Gi or Ti.")
	out.add(cmd)
	return cmd
}
