package cli

import (
	"bufio"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/wgmesh/coder/codersdk"
)

// renameCommand is `coder rename [owner/]WORKSPACE NEW_NAME`. coderd
// renames only a workspace that is not running or building; unless -y,
// the user confirms by typing the current name, since resources that
// embed the name (volumes, containers) may be recreated under the new one.
func (r *root) renameCommand() *cobra.Command {
	var yes bool
	cmd := &cobra.Command{
		Use:   "rename [owner/]WORKSPACE NEW_NAME",
		Short: "Rename a workspace",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if d := codersdk.NameValid(args[1]); d != "" {
				return fmt.Errorf("invalid new name %q: %s", args[1], d)
			}
			client, ws, err := r.clientAndWorkspace(ctx, args[0])
			if err != nil {
				return err
			}
			if !yes {
				fmt.Fprintf(r.stderr, "WARNING: a rename can lose data if a resource uses the workspace name in an identifier (e.g. a volume named after it).\n"+
					"Back up your data first. See data.coder_workspace.me.name in the template.\n")
				fmt.Fprintf(r.stderr, "Type %q to confirm the rename: ", ws.Name)
				line, err := bufio.NewReader(r.stdin).ReadString('\n')
				line = strings.TrimSpace(line)
				if err != nil && line == "" {
					return errors.New("no answer on stdin: pass -y to skip the confirmation")
				}
				if line != ws.Name {
					return fmt.Errorf("canceled: %q is not %q", line, ws.Name)
				}
			}
			if err := client.UpdateWorkspace(ctx, ws.ID, codersdk.UpdateWorkspaceRequest{Name: args[1]}); err != nil {
				return fmt.Errorf("rename workspace %q: %w", ws.Name, err)
			}
			fmt.Fprintf(r.stdout, "Workspace %q renamed to %q\n", ws.Name, args[1])
			return nil
		},
	}
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "Do not ask for confirmation.")
	return cmd
}
