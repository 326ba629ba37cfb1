package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/wgmesh/coder/codersdk"
)

func (r *root) tokensCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "tokens",
		Aliases: []string{"token"},
		Short:   "Manage personal API tokens",
		Args:    cobra.NoArgs,
		RunE:    func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(r.tokensCreateCommand(), r.tokensListCommand(), r.tokensRemoveCommand())
	return cmd
}

func (r *root) tokensCreateCommand() *cobra.Command {
	var name string
	var lifetime time.Duration
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create a token (printed alone on stdout)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			client, err := r.client()
			if err != nil {
				return err
			}
			resp, err := client.CreateToken(cmd.Context(), codersdk.Me, codersdk.CreateTokenRequest{
				TokenName: name, Lifetime: lifetime,
			})
			if err != nil {
				return fmt.Errorf("create token: %w", err)
			}
			fmt.Fprintln(r.stdout, resp.Key)
			return nil
		},
	}
	cmd.Flags().StringVarP(&name, "name", "n", "", "Token name (unique per user); generated when empty.")
	cmd.Flags().DurationVar(&lifetime, "lifetime", 30*24*time.Hour, "How long the token lasts.")
	return cmd
}

func (r *root) tokensListCommand() *cobra.Command {
	var out outputFormat
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List your tokens",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := out.validate(); err != nil {
				return err
			}
			client, err := r.client()
			if err != nil {
				return err
			}
			keys, err := client.Tokens(cmd.Context(), codersdk.Me)
			if err != nil {
				return fmt.Errorf("list tokens: %w", err)
			}
			if out.value == "json" {
				return writeJSON(r.stdout, keys)
			}
			rows := make([][]string, 0, len(keys))
			for _, k := range keys {
				rows = append(rows, []string{k.ID, k.TokenName, humanTime(k.LastUsed), humanTime(k.ExpiresAt), humanTime(k.CreatedAt)})
			}
			return writeTable(r.stdout, []string{"ID", "NAME", "LAST USED", "EXPIRES AT", "CREATED AT"}, rows)
		},
	}
	addOutputFlag(cmd, &out, "table")
	return cmd
}

func (r *root) tokensRemoveCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "remove <name>",
		Aliases: []string{"rm", "delete"},
		Short:   "Delete a token by name",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			client, err := r.client()
			if err != nil {
				return err
			}
			key, err := client.APIKeyByName(cmd.Context(), codersdk.Me, args[0])
			if err != nil {
				return fmt.Errorf("find token %q: %w", args[0], err)
			}
			if err := client.DeleteAPIKey(cmd.Context(), codersdk.Me, key.ID); err != nil {
				return fmt.Errorf("delete token %q: %w", args[0], err)
			}
			fmt.Fprintf(r.stdout, "Token %s deleted.\n", args[0])
			return nil
		},
	}
}
