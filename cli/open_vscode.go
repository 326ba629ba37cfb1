package cli

import (
	"context"
	"fmt"
	"net/url"
	"os/exec"
	"path"
	"strings"

	"github.com/spf13/cobra"

	"github.com/wgmesh/coder/codersdk"
)

// EnvOpenVSCodeGenerateToken is the environment twin of coder open vscode
// --generate-token.
const EnvOpenVSCodeGenerateToken = "CODER_OPEN_VSCODE_GENERATE_TOKEN"

// vscodeURI builds the URI the Coder VS Code extension (coder.coder-remote)
// handles: vscode://coder.coder-remote/open?owner=&workspace=&agent=&url=
// [&folder=][&token=]. agent is set only when the workspace has several.
func vscodeURI(deployment *url.URL, ws codersdk.Workspace, agent string, folder, token string) string {
	q := url.Values{}
	q.Set("owner", ws.OwnerName)
	q.Set("workspace", ws.Name)
	if agent != "" {
		q.Set("agent", agent)
	}
	q.Set("url", deployment.String())
	if folder != "" {
		q.Set("folder", folder)
	}
	if token != "" {
		q.Set("token", token)
	}
	u := url.URL{Scheme: "vscode", Host: "coder.coder-remote", Path: "/open", RawQuery: q.Encode()}
	return u.String()
}

// vscodeFolder resolves the folder to open: an absolute DIR as given, a
// relative one (or none) against the agent's expanded directory
// (coder_agent.dir); "" when there is nothing to resolve against.
func vscodeFolder(ag codersdk.WorkspaceAgent, dir string) (string, error) {
	base := ag.ExpandedDirectory
	if base == "" {
		base = ag.Directory
	}
	switch {
	case dir == "":
		return base, nil
	case strings.HasPrefix(dir, "/"):
		return path.Clean(dir), nil
	case strings.HasPrefix(dir, "~"):
		return "", fmt.Errorf("directory %q: use an absolute path or one relative to the agent's directory", dir)
	case base == "":
		return "", fmt.Errorf("directory %q is relative and agent %q has no directory (coder_agent.dir) to resolve it against", dir, ag.Name)
	default:
		return path.Join(base, dir), nil
	}
}

// openVSCodeCommand is `coder open vscode WORKSPACE[.AGENT] [DIR]`: it
// prints the vscode:// URI (with a fresh API token only when
// --generate-token asks for one) and, when a display is available, opens
// it with xdg-open.
func (r *root) openVSCodeCommand() *cobra.Command {
	var generateToken, noOpen bool
	cmd := &cobra.Command{
		Use:   "vscode [owner/]WORKSPACE[.AGENT] [DIRECTORY]",
		Short: "Open a workspace in VS Code Desktop (prints the vscode:// URI)",
		Args:  cobra.RangeArgs(1, 2),
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
			dir := ""
			if len(args) > 1 {
				dir = args[1]
			}
			folder, err := vscodeFolder(ag, dir)
			if err != nil {
				return err
			}
			token := ""
			if generateToken {
				if token, err = r.vscodeToken(ctx, client); err != nil {
					return err
				}
			}
			agent := ""
			if len(workspaceAgents(ws)) > 1 {
				agent = ag.Name
			}
			uri := vscodeURI(client.URL, ws, agent, folder, token)
			fmt.Fprintln(r.stdout, uri)
			if noOpen || (r.env["DISPLAY"] == "" && r.env["WAYLAND_DISPLAY"] == "") {
				return nil
			}
			if err := exec.CommandContext(ctx, "xdg-open", uri).Run(); err != nil {
				fmt.Fprintf(r.stderr, "Could not open VS Code (%v); open the URI above.\n", err)
			}
			return nil
		},
	}
	fs := cmd.Flags()
	fs.BoolVar(&generateToken, "generate-token", false, "Generate an API token and include it in the vscode:// URI (for a VS Code not yet logged in to this deployment).")
	envFlag(fs, "generate-token", EnvOpenVSCodeGenerateToken)
	fs.BoolVar(&noOpen, "no-open", false, "Only print the URI, even when a display is available.")
	return cmd
}

// vscodeToken creates an API token for VS Code (default lifetime).
func (r *root) vscodeToken(ctx context.Context, client *codersdk.Client) (string, error) {
	key, err := client.CreateToken(ctx, codersdk.Me, codersdk.CreateTokenRequest{})
	if err != nil {
		return "", fmt.Errorf("generate a token for VS Code: %w", err)
	}
	return key.Key, nil
}
