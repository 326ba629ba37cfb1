package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"strings"

	"github.com/spf13/cobra"

	"github.com/wgmesh/coder/coderd/workspaceapps"
	"github.com/wgmesh/coder/codersdk"
)

// openCommand is `coder open`.
func (r *root) openCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "open",
		Short: "Open a workspace app in the browser, or a workspace in VS Code",
	}
	cmd.AddCommand(r.openAppCommand(), r.openVSCodeCommand())
	return cmd
}

// openAppCommand is `coder open app [owner/]WORKSPACE[.AGENT] APP`: it prints
// the app's URL (its subdomain URL whenever the deployment has a wildcard
// access URL, since path apps share the dashboard origin and serve only
// the workspace owner; else the path URL) and opens a browser only with
// --open when a display is available.
func (r *root) openAppCommand() *cobra.Command {
	var openBrowser, pathURL bool
	cmd := &cobra.Command{
		Use:   "app [owner/]WORKSPACE[.AGENT] APP",
		Short: "Print (or open) the URL of a workspace app",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			client, err := r.client()
			if err != nil {
				return err
			}
			wsRef, agentName := splitWorkspaceAgent(args[0])
			ws, err := r.lookupWorkspace(ctx, client, wsRef)
			if err != nil {
				return err
			}
			ag, err := pickAgent(ws, agentName)
			if err != nil {
				return err
			}
			var app *codersdk.WorkspaceApp
			slugs := make([]string, 0, len(ag.Apps))
			for i := range ag.Apps {
				if strings.EqualFold(ag.Apps[i].Slug, args[1]) {
					app = &ag.Apps[i]
				}
				slugs = append(slugs, ag.Apps[i].Slug)
			}
			if app == nil {
				if len(slugs) == 0 {
					return fmt.Errorf("agent %q of workspace %q has no apps", ag.Name, ws.Name)
				}
				return fmt.Errorf("agent %q of workspace %q has no app %q; apps: %s", ag.Name, ws.Name, args[1], strings.Join(slugs, ", "))
			}
			var target string
			switch {
			case app.External:
				target = app.URL
			case app.URL == "":
				return fmt.Errorf("app %q runs a command (%s), it has no URL; use 'coder ssh %s'", app.Slug, app.Command, args[0])
			default:
				req := workspaceapps.Request{Owner: ws.OwnerName, Workspace: ws.Name, Agent: ag.Name, App: app.Slug}
				host := ""
				if !pathURL {
					if host, err = appHost(ctx, client); err != nil {
						return err
					}
				}
				if host != "" {
					u, err := workspaceapps.SubdomainAppURL(client.URL, host, req)
					if err != nil {
						return err
					}
					target = u.String()
				} else {
					target = workspaceapps.PathAppURL(client.URL, req).String()
				}
			}
			fmt.Fprintln(r.stdout, target)
			if openBrowser {
				if r.env["DISPLAY"] == "" && r.env["WAYLAND_DISPLAY"] == "" {
					fmt.Fprintln(r.stderr, "No display available; open the URL above in a browser.")
					return nil
				}
				c := exec.CommandContext(ctx, "xdg-open", target)
				if err := c.Run(); err != nil {
					return fmt.Errorf("open browser: %w", err)
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&openBrowser, "open", false, "Open the URL in a browser (when a display is available).")
	cmd.Flags().BoolVar(&pathURL, "path", false, "Print the path-based URL even when the deployment serves apps on subdomains (path apps serve only the workspace owner).")
	return cmd
}

// appHost asks the deployment for its subdomain apps pattern.
func appHost(ctx context.Context, client *codersdk.Client) (string, error) {
	res, err := client.Request(ctx, http.MethodGet, "/api/v2/applications/host", nil)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return "", fmt.Errorf("get applications host: status %d", res.StatusCode)
	}
	var body struct {
		Host string `json:"host"`
	}
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
		return "", errors.Join(errors.New("decode applications host"), err)
	}
	return body.Host, nil
}
