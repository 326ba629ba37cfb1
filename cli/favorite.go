package cli

import (
	"fmt"

	"github.com/spf13/cobra"
)

// favoriteCommand is `coder favorite WS` (favorite=true) or
// `coder unfavorite WS`: favorites are listed first by coder list.
func (r *root) favoriteCommand(favorite bool) *cobra.Command {
	use, short, aliases := "favorite", "Add a workspace to your favorites", []string{"fav", "favourite"}
	if !favorite {
		use, short, aliases = "unfavorite", "Remove a workspace from your favorites", []string{"unfav", "unfavourite"}
	}
	return &cobra.Command{
		Use:     use + " [owner/]WORKSPACE",
		Short:   short,
		Aliases: aliases,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			client, ws, err := r.clientAndWorkspace(ctx, args[0])
			if err != nil {
				return err
			}
			if favorite {
				if err := client.FavoriteWorkspace(ctx, ws.ID); err != nil {
					return fmt.Errorf("favorite workspace %q: %w", ws.Name, err)
				}
				fmt.Fprintf(r.stdout, "Workspace %q added to favorites.\n", ws.Name)
				return nil
			}
			if err := client.UnfavoriteWorkspace(ctx, ws.ID); err != nil {
				return fmt.Errorf("unfavorite workspace %q: %w", ws.Name, err)
			}
			fmt.Fprintf(r.stdout, "Workspace %q removed from favorites.\n", ws.Name)
			return nil
		},
	}
}
