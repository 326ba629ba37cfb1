package cli

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/spf13/cobra"

	"github.com/wgmesh/coder/codersdk"
)

// Environment variables of the login command.
const (
	EnvFirstUserUsername = "CODER_FIRST_USER_USERNAME"
	EnvFirstUserEmail    = "CODER_FIRST_USER_EMAIL"
	EnvFirstUserPassword = "CODER_FIRST_USER_PASSWORD"
	EnvFirstUserFullName = "CODER_FIRST_USER_FULL_NAME"
)

func (r *root) loginCommand() *cobra.Command {
	var username, email, password, fullName string
	cmd := &cobra.Command{
		Use:   "login [url]",
		Short: "Authenticate with a coder deployment",
		Long: "Log in to a deployment and save the URL and session token.\n" +
			"On a deployment without users, this creates the first user (an owner).",
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			dir, err := r.configDir()
			if err != nil {
				return err
			}
			rawURL := r.urlFlag
			if len(args) == 1 {
				rawURL = args[0]
			}
			if rawURL == "" {
				saved, err := dir.read(configFileURL)
				if err != nil {
					return errors.New("no URL given: run 'coder login <url>'")
				}
				rawURL = saved
			}
			serverURL, err := parseURL(rawURL)
			if err != nil {
				return err
			}
			client := codersdk.New(serverURL)
			if _, err := client.BuildInfo(ctx); err != nil {
				return fmt.Errorf("reach %s: %w", serverURL, err)
			}
			hasUser, err := client.HasFirstUser(ctx)
			if err != nil {
				return fmt.Errorf("check for first user: %w", err)
			}

			var token string
			switch {
			case !hasUser:
				token, err = r.createFirstUser(cmd, client, username, email, password, fullName)
			case r.tokenFlag != "":
				token = r.tokenFlag
			default:
				token, err = r.passwordLogin(cmd, client)
			}
			if err != nil {
				return err
			}
			client.SetSessionToken(token)
			me, err := client.User(ctx, codersdk.Me)
			if err != nil {
				return fmt.Errorf("check session: %w", err)
			}
			if err := dir.write(configFileURL, serverURL.String()); err != nil {
				return err
			}
			if err := dir.write(configFileSession, token); err != nil {
				return err
			}
			fmt.Fprintf(r.stdout, "Welcome to Coder, %s! You're authenticated to %s.\n", me.Username, serverURL)
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&username, "first-user-username", "", "Username of the first user (only when the deployment has none).")
	envFlag(fs, "first-user-username", EnvFirstUserUsername)
	fs.StringVar(&email, "first-user-email", "", "Email of the first user.")
	envFlag(fs, "first-user-email", EnvFirstUserEmail)
	fs.StringVar(&password, "first-user-password", "", "Password of the first user.")
	envFlag(fs, "first-user-password", EnvFirstUserPassword)
	fs.StringVar(&fullName, "first-user-full-name", "", "Full name of the first user (optional).")
	envFlag(fs, "first-user-full-name", EnvFirstUserFullName)
	return cmd
}

func (r *root) createFirstUser(cmd *cobra.Command, client *codersdk.Client, username, email, password, fullName string) (string, error) {
	ctx := cmd.Context()
	if username == "" || email == "" || password == "" {
		p, ok := r.prompter()
		if !ok {
			return "", errors.New("the deployment has no users yet: pass --first-user-username, --first-user-email and --first-user-password (or run in a terminal to be prompted)")
		}
		fmt.Fprintln(r.stderr, "Your Coder deployment hasn't been set up! Create the first user (an owner).")
		var err error
		if username == "" {
			if username, err = p.line("Username", nil); err != nil {
				return "", err
			}
		}
		if email == "" {
			if email, err = p.line("Email", func(s string) string {
				if !strings.Contains(s, "@") {
					return "enter a valid email address"
				}
				return ""
			}); err != nil {
				return "", err
			}
		}
		if password == "" {
			if password, err = p.newPassword(); err != nil {
				return "", err
			}
		}
	}
	if _, err := client.CreateFirstUser(ctx, codersdk.CreateFirstUserRequest{
		Email: email, Username: username, Name: fullName, Password: password,
	}); err != nil {
		return "", fmt.Errorf("create first user: %w", err)
	}
	resp, err := client.LoginWithPassword(ctx, codersdk.LoginWithPasswordRequest{Email: email, Password: password})
	if err != nil {
		return "", fmt.Errorf("log in as the first user: %w", err)
	}
	return resp.SessionToken, nil
}

func (r *root) passwordLogin(cmd *cobra.Command, client *codersdk.Client) (string, error) {
	p, ok := r.prompter()
	if !ok {
		return "", errors.New("not a terminal: pass --token (or $CODER_SESSION_TOKEN) to log in non-interactively")
	}
	email, err := p.line("Email", nil)
	if err != nil {
		return "", err
	}
	password, err := p.password("Password")
	if err != nil {
		return "", err
	}
	resp, err := client.LoginWithPassword(cmd.Context(), codersdk.LoginWithPasswordRequest{Email: email, Password: password})
	if err != nil {
		return "", fmt.Errorf("log in: %w", err)
	}
	return resp.SessionToken, nil
}

func (r *root) logoutCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "logout",
		Short: "Log out: end the session on the server and forget it locally",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir, err := r.configDir()
			if err != nil {
				return err
			}
			client, err := r.client()
			if err != nil {
				return err
			}
			if err := client.Logout(cmd.Context()); err != nil {
				// An already invalid session is logged out anyway.
				if apiErr, ok := codersdk.AsError(err); !ok || apiErr.StatusCode() != 401 {
					return fmt.Errorf("log out: %w", err)
				}
			}
			if err := dir.remove(configFileSession); err != nil {
				return err
			}
			fmt.Fprintf(r.stdout, "You are no longer logged in to %s.\n", redact(client.URL))
			return nil
		},
	}
}

func redact(u *url.URL) string { return u.Redacted() }
