package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/wgmesh/coder/codersdk"
)

// whoamiCommand is `coder whoami`: the deployment URL and the user the
// session authenticates as.
func (r *root) whoamiCommand() *cobra.Command {
	var out outputFormat
	cmd := &cobra.Command{
		Use:   "whoami",
		Short: "Show the deployment URL and the user you are authenticated as",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out.value != "text" && out.value != "json" {
				return fmt.Errorf("unknown output format %q (want text or json)", out.value)
			}
			client, err := r.client()
			if err != nil {
				return err
			}
			me, err := client.User(cmd.Context(), codersdk.Me)
			if err != nil {
				return fmt.Errorf("get the authenticated user: %w", err)
			}
			if out.value == "json" {
				return writeJSON(r.stdout, struct {
					URL      string              `json:"url"`
					Username string              `json:"username"`
					ID       string              `json:"id"`
					Email    string              `json:"email"`
					Roles    []codersdk.SlimRole `json:"roles"`
				}{client.URL.String(), me.Username, me.ID.String(), me.Email, me.Roles})
			}
			fmt.Fprintf(r.stdout, "Coder is running at %s, You're authenticated as %s !\n", client.URL, me.Username)
			return nil
		},
	}
	cmd.Flags().StringVarP(&out.value, "output", "o", "text", "Output format: text or json.")
	return cmd
}
