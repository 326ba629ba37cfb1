package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/wgmesh/coder/codersdk"
)

func (r *root) usersCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "users",
		Aliases: []string{"user"},
		Short:   "Manage users",
		Args:    cobra.NoArgs,
		RunE:    func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(
		r.usersCreateCommand(),
		r.usersListCommand(),
		r.usersShowCommand(),
		r.usersStatusCommand("suspend", codersdk.UserStatusSuspended),
		r.usersStatusCommand("activate", codersdk.UserStatusActive),
	)
	return cmd
}

func roleNames(u codersdk.User) string {
	names := []string{}
	for _, role := range u.Roles {
		names = append(names, role.Name)
	}
	if len(names) == 0 {
		return "member"
	}
	return strings.Join(names, ",")
}

func (r *root) usersCreateCommand() *cobra.Command {
	var req codersdk.CreateUserRequest
	var loginType string
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create a user",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			client, err := r.client()
			if err != nil {
				return err
			}
			req.LoginType = codersdk.LoginType(loginType)
			user, err := client.CreateUser(cmd.Context(), req)
			if err != nil {
				return fmt.Errorf("create user: %w", err)
			}
			fmt.Fprintf(r.stdout, "User %s (%s) created with roles %s.\n", user.Username, user.Email, roleNames(user))
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVarP(&req.Username, "username", "u", "", "Username of the new user.")
	fs.StringVarP(&req.Email, "email", "e", "", "Email of the new user.")
	fs.StringVarP(&req.Password, "password", "p", "", "Password of the new user.")
	fs.StringVar(&req.Name, "full-name", "", "Full name of the new user.")
	fs.StringSliceVar(&req.Roles, "role", nil, "Site role to grant (owner, template-admin); repeatable.")
	fs.StringVar(&loginType, "login-type", "password", "How the user logs in: password or token.")
	return cmd
}

func (r *root) usersListCommand() *cobra.Command {
	var out outputFormat
	var search string
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List users",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := out.validate(); err != nil {
				return err
			}
			client, err := r.client()
			if err != nil {
				return err
			}
			var users []codersdk.User
			for {
				page, err := client.Users(cmd.Context(), codersdk.UsersRequest{Search: search, Offset: len(users), Limit: 500})
				if err != nil {
					return fmt.Errorf("list users: %w", err)
				}
				users = append(users, page.Users...)
				if len(page.Users) == 0 || len(users) >= page.Count {
					break
				}
			}
			if users == nil {
				users = []codersdk.User{}
			}
			if out.value == "json" {
				return writeJSON(r.stdout, users)
			}
			rows := make([][]string, 0, len(users))
			for _, u := range users {
				rows = append(rows, []string{u.Username, u.Email, string(u.Status), roleNames(u), humanTime(u.LastSeenAt)})
			}
			return writeTable(r.stdout, []string{"USERNAME", "EMAIL", "STATUS", "ROLES", "LAST SEEN"}, rows)
		},
	}
	addOutputFlag(cmd, &out, "table")
	cmd.Flags().StringVar(&search, "search", "", `Filter: text matched against username and email, "status:suspended".`)
	return cmd
}

func (r *root) usersShowCommand() *cobra.Command {
	var out outputFormat
	cmd := &cobra.Command{
		Use:   "show <username|user_id|me>",
		Short: "Show a user",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := out.validate(); err != nil {
				return err
			}
			client, err := r.client()
			if err != nil {
				return err
			}
			if err := checkUserArg(args[0]); err != nil {
				return err
			}
			user, err := client.User(cmd.Context(), args[0])
			if err != nil {
				return fmt.Errorf("get user %q: %w", args[0], err)
			}
			if out.value == "json" {
				return writeJSON(r.stdout, user)
			}
			return writeTable(r.stdout, []string{"FIELD", "VALUE"}, [][]string{
				{"ID", user.ID.String()},
				{"Username", user.Username},
				{"Email", user.Email},
				{"Name", user.Name},
				{"Status", string(user.Status)},
				{"Roles", roleNames(user)},
				{"Login type", string(user.LoginType)},
				{"Created", humanTime(user.CreatedAt)},
				{"Last seen", humanTime(user.LastSeenAt)},
			})
		},
	}
	addOutputFlag(cmd, &out, "table")
	return cmd
}

func (r *root) usersStatusCommand(verb string, status codersdk.UserStatus) *cobra.Command {
	return &cobra.Command{
		Use:   verb + " <username|user_id>",
		Short: strings.ToUpper(verb[:1]) + verb[1:] + " a user",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			client, err := r.client()
			if err != nil {
				return err
			}
			if err := checkUserArg(args[0]); err != nil {
				return err
			}
			user, err := client.UpdateUserStatus(cmd.Context(), args[0], status)
			if err != nil {
				return fmt.Errorf("%s user %q: %w", verb, args[0], err)
			}
			fmt.Fprintf(r.stdout, "User %s is now %s.\n", user.Username, user.Status)
			return nil
		},
	}
}
