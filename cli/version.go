package cli

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/wgmesh/coder/coderd/buildinfo"
)

// versionInfo is the `coder version -o json` output.
type versionInfo struct {
	Version     string `json:"version"`
	ExternalURL string `json:"external_url"`
	GoVersion   string `json:"go_version"`
	Platform    string `json:"platform"`
}

func (r *root) versionCommand() *cobra.Command {
	var out outputFormat
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Show the version",
		Args:  cobra.NoArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			if out.value == "text" {
				out.value = "table"
			}
			if err := out.validate(); err != nil {
				return err
			}
			info := versionInfo{
				Version:     buildinfo.Version(),
				ExternalURL: buildinfo.ExternalURL,
				GoVersion:   runtime.Version(),
				Platform:    runtime.GOOS + "/" + runtime.GOARCH,
			}
			if out.value == "json" {
				return writeJSON(r.stdout, info)
			}
			fmt.Fprintf(r.stdout, "Coder %s (%s, %s)\n%s\n", info.Version, info.Platform, info.GoVersion, info.ExternalURL)
			return nil
		},
	}
	addOutputFlag(cmd, &out, "text")
	return cmd
}
