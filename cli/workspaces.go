package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/wgmesh/coder/codersdk"
)

// workspaceRef splits "[owner/]name" (owner defaults to "me") and checks
// both parts with the server's name rules before they become part of an API
// path: "..", "/", "?", "#", "%" or an empty part must not rewrite the
// request into a call to another endpoint.
func workspaceRef(arg string) (owner, name string, err error) {
	owner, name = codersdk.Me, arg
	if o, n, ok := strings.Cut(arg, "/"); ok {
		owner, name = o, n
	}
	if d := codersdk.UserRefValid(owner); d != "" {
		return "", "", fmt.Errorf("invalid workspace %q: the owner %s", arg, d)
	}
	if d := codersdk.NameValid(name); d != "" {
		return "", "", fmt.Errorf("invalid workspace %q: the name %s", arg, d)
	}
	return owner, name, nil
}

// checkUserArg checks a user argument ("me", a username or an ID) before it
// becomes part of an API path.
func checkUserArg(arg string) error {
	if d := codersdk.UserRefValid(arg); d != "" {
		return fmt.Errorf("invalid user %q: %s", arg, d)
	}
	return nil
}

// checkTemplateArg checks a template name before it becomes part of an API
// path.
func checkTemplateArg(arg string) error {
	if d := codersdk.NameValid(arg); d != "" {
		return fmt.Errorf("invalid template name %q: %s", arg, d)
	}
	return nil
}

func (r *root) workspaceByArg(ctx context.Context, client *codersdk.Client, arg string) (codersdk.Workspace, error) {
	owner, name, err := workspaceRef(arg)
	if err != nil {
		return codersdk.Workspace{}, err
	}
	ws, err := client.WorkspaceByOwnerAndName(ctx, owner, name)
	if err != nil {
		return ws, fmt.Errorf("workspace %q: %w", arg, err)
	}
	return ws, nil
}

// parseParameters turns repeated name=value into build parameters.
func parseParameters(raw []string) ([]codersdk.WorkspaceBuildParameter, error) {
	out := make([]codersdk.WorkspaceBuildParameter, 0, len(raw))
	for _, kv := range raw {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("invalid parameter %q: want name=value", kv)
		}
		out = append(out, codersdk.WorkspaceBuildParameter{Name: k, Value: v})
	}
	return out, nil
}

// followBuild streams a build's logs and fails unless it succeeded.
func (r *root) followBuild(ctx context.Context, client *codersdk.Client, b codersdk.WorkspaceBuild) error {
	job, err := r.followJob(ctx, client, b.Job, func(ctx context.Context, after int64) (<-chan codersdk.ProvisionerJobLog, io.Closer, error) {
		return client.WorkspaceBuildLogsAfter(ctx, b.ID, after, true)
	}, func(ctx context.Context) (codersdk.ProvisionerJob, error) {
		nb, err := client.WorkspaceBuild(ctx, b.ID)
		return nb.Job, err
	})
	if err != nil {
		return err
	}
	if job.Status != codersdk.ProvisionerJobSucceeded {
		return fmt.Errorf("workspace build %s: %s", job.Status, job.Error)
	}
	return nil
}

func (r *root) createCommand() *cobra.Command {
	var (
		template  string
		yes       bool
		params    []string
		startAt   string
		stopAfter string
	)
	cmd := &cobra.Command{
		Use:   "create [owner/]NAME",
		Short: "Create a workspace",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			client, err := r.client()
			if err != nil {
				return err
			}
			if template == "" {
				return errors.New("a template is required: -t TEMPLATE")
			}
			owner, name, err := workspaceRef(args[0])
			if err != nil {
				return err
			}
			if err := checkTemplateArg(template); err != nil {
				return err
			}
			t, err := client.TemplateByName(ctx, template)
			if err != nil {
				return fmt.Errorf("template %q: %w", template, err)
			}
			values, err := parseParameters(params)
			if err != nil {
				return err
			}
			if !yes {
				ok, err := r.confirm(fmt.Sprintf("Create workspace %q from template %q?", name, t.Name))
				if err != nil {
					return err
				}
				if !ok {
					return errors.New("canceled")
				}
			}
			req := codersdk.CreateWorkspaceRequest{TemplateID: t.ID, Name: name, RichParameterValues: values}
			if err := r.createSchedule(&req, startAt, stopAfter); err != nil {
				return err
			}
			ws, err := client.CreateWorkspace(ctx, owner, req)
			if err != nil {
				return err
			}
			if err := r.followBuild(ctx, client, ws.LatestBuild); err != nil {
				return err
			}
			fmt.Fprintf(r.stdout, "\nThe %s workspace has been created!\n", ws.Name)
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVarP(&template, "template", "t", "", "Template name.")
	envFlag(fs, "template", "CODER_TEMPLATE_NAME")
	fs.BoolVarP(&yes, "yes", "y", false, "Do not ask for confirmation.")
	fs.StringArrayVar(&params, "parameter", nil, "Rich parameter name=value (repeatable).")
	addCreateScheduleFlags(cmd, &startAt, &stopAfter)
	return cmd
}

func (r *root) listCommand() *cobra.Command {
	var (
		out outputFormat
		all bool
	)
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List workspaces",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := out.validate(); err != nil {
				return err
			}
			client, err := r.client()
			if err != nil {
				return err
			}
			owner := codersdk.Me
			if all {
				owner = ""
			}
			res, err := client.Workspaces(cmd.Context(), owner)
			if err != nil {
				return err
			}
			if out.value == "json" {
				return writeJSON(r.stdout, res.Workspaces)
			}
			rows := make([][]string, 0, len(res.Workspaces))
			for _, ws := range res.Workspaces {
				rows = append(rows, []string{ws.OwnerName + "/" + ws.Name, ws.TemplateName, string(ws.LatestBuild.Status) + dormancyStatus(ws),
					string(ws.LatestBuild.Transition), humanTime(ws.LatestBuild.CreatedAt), agentHealth(ws), strconv.Itoa(workspaceAppCount(ws))})
			}
			return writeTable(r.stdout, []string{"WORKSPACE", "TEMPLATE", "STATUS", "LAST BUILT", "AT", "AGENT", "APPS"}, rows)
		},
	}
	cmd.Flags().BoolVarP(&all, "all", "a", false, "List the workspaces of every user you may see.")
	addOutputFlag(cmd, &out, "table")
	return cmd
}

// workspaceAppCount counts the apps of every agent of the workspace's
// latest build.
// agentHealth is the AGENT column of `coder list`: for each agent (distinct
// values joined by ","), its connection status unless it is connected
// (disconnected, connecting, timeout), else its startup outcome when that
// is not "ready" (starting, start_error, start_timeout, shutting_down...),
// else "connected"; "-" for a workspace without agents. Build status alone
// hides a dead agent or a failed startup script.
func agentHealth(ws codersdk.Workspace) string {
	var out []string
	seen := map[string]bool{}
	for _, a := range workspaceAgents(ws) {
		h := string(a.Status)
		if a.Status == codersdk.WorkspaceAgentConnected && a.LifecycleState != "" &&
			a.LifecycleState != codersdk.WorkspaceAgentLifecycleReady {
			h = string(a.LifecycleState)
		}
		if h == "" {
			h = "unknown"
		}
		if !seen[h] {
			seen[h] = true
			out = append(out, h)
		}
	}
	if len(out) == 0 {
		return "-"
	}
	return strings.Join(out, ",")
}

func workspaceAppCount(ws codersdk.Workspace) int {
	n := 0
	for _, a := range workspaceAgents(ws) {
		n += len(a.Apps)
	}
	return n
}

func (r *root) showCommand() *cobra.Command {
	var out outputFormat
	cmd := &cobra.Command{
		Use:   "show [owner/]NAME",
		Short: "Show a workspace, its latest build, resources and agents",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := out.validate(); err != nil {
				return err
			}
			client, err := r.client()
			if err != nil {
				return err
			}
			ws, err := r.workspaceByArg(cmd.Context(), client, args[0])
			if err != nil {
				return err
			}
			if out.value == "json" {
				return writeJSON(r.stdout, ws)
			}
			fmt.Fprintf(r.stdout, "%s/%s  template %s  status %s (build #%d, %s)\n", ws.OwnerName, ws.Name, ws.TemplateName,
				ws.LatestBuild.Status, ws.LatestBuild.BuildNumber, ws.LatestBuild.Transition)
			if ws.LatestBuild.Job.Error != "" {
				fmt.Fprintf(r.stdout, "error: %s\n", ws.LatestBuild.Job.Error)
			}
			var rows [][]string
			for _, res := range ws.LatestBuild.Resources {
				if res.Hide {
					continue
				}
				rows = append(rows, []string{res.Type + "." + res.Name, string(res.Kind) + ", " + string(res.Lifetime), "", "", ""})
				for _, a := range res.Agents {
					rows = append(rows, []string{"└ agent " + a.Name, "", string(a.Status), string(a.LifecycleState), a.OperatingSystem + "/" + a.Architecture})
				}
			}
			if err := writeTable(r.stdout, []string{"RESOURCE", "KIND", "STATUS", "LIFECYCLE", "PLATFORM"}, rows); err != nil {
				return err
			}
			return r.writeAgentMetadata(cmd.Context(), client, ws) // cli/show_metadata.go
		},
	}
	addOutputFlag(cmd, &out, "table")
	return cmd
}

// transitionCommand builds start, stop and delete.
func (r *root) transitionCommand(use, short string, transition codersdk.WorkspaceTransition) *cobra.Command {
	var (
		yes, orphan bool
		params      []string
	)
	cmd := &cobra.Command{
		Use:   use + " [owner/]NAME",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			client, err := r.client()
			if err != nil {
				return err
			}
			ws, err := r.workspaceByArg(ctx, client, args[0])
			if err != nil {
				return err
			}
			if transition == codersdk.WorkspaceTransitionDelete && !yes {
				ok, err := r.confirm(fmt.Sprintf("Delete workspace %q and all its resources?", ws.Name))
				if err != nil {
					return err
				}
				if !ok {
					return errors.New("canceled")
				}
			}
			values, err := parseParameters(params)
			if err != nil {
				return err
			}
			b, err := client.CreateWorkspaceBuild(ctx, ws.ID, codersdk.CreateWorkspaceBuildRequest{
				Transition: transition, RichParameterValues: values, Orphan: orphan,
			})
			if err != nil {
				return err
			}
			if err := r.followBuild(ctx, client, b); err != nil {
				return err
			}
			fmt.Fprintf(r.stdout, "\nThe %s workspace has been %s.\n", ws.Name, pastTense(transition))
			return nil
		},
	}
	fs := cmd.Flags()
	// -y is accepted by every transition so scripts can pass it uniformly;
	// only delete asks for confirmation.
	fs.BoolVarP(&yes, "yes", "y", false, "Do not ask for confirmation (only delete asks).")
	if transition == codersdk.WorkspaceTransitionDelete {
		fs.BoolVar(&orphan, "orphan", false, "Delete the workspace without running terraform destroy (for a broken template); resources are left behind.")
	} else {
		fs.StringArrayVar(&params, "parameter", nil, "Rich parameter name=value (repeatable).")
	}
	return cmd
}

func pastTense(t codersdk.WorkspaceTransition) string {
	switch t {
	case codersdk.WorkspaceTransitionStart:
		return "started"
	case codersdk.WorkspaceTransitionStop:
		return "stopped"
	default:
		return "deleted"
	}
}

func (r *root) restartCommand() *cobra.Command {
	var params []string
	cmd := &cobra.Command{
		Use:   "restart [owner/]NAME",
		Short: "Stop then start a workspace",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			client, err := r.client()
			if err != nil {
				return err
			}
			ws, err := r.workspaceByArg(ctx, client, args[0])
			if err != nil {
				return err
			}
			values, err := parseParameters(params)
			if err != nil {
				return err
			}
			b, err := client.CreateWorkspaceBuild(ctx, ws.ID, codersdk.CreateWorkspaceBuildRequest{Transition: codersdk.WorkspaceTransitionStop})
			if err != nil {
				return err
			}
			if err := r.followBuild(ctx, client, b); err != nil {
				return err
			}
			b, err = client.CreateWorkspaceBuild(ctx, ws.ID, codersdk.CreateWorkspaceBuildRequest{Transition: codersdk.WorkspaceTransitionStart, RichParameterValues: values})
			if err != nil {
				return err
			}
			if err := r.followBuild(ctx, client, b); err != nil {
				return err
			}
			fmt.Fprintf(r.stdout, "\nThe %s workspace has been restarted.\n", ws.Name)
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&params, "parameter", nil, "Rich parameter name=value (repeatable).")
	cmd.Flags().BoolP("yes", "y", false, "Do not ask for confirmation (accepted for scripts; restart does not ask).")
	return cmd
}

// workspaceCommands returns the workspace commands for the root.
func (r *root) workspaceCommands() []*cobra.Command {
	return []*cobra.Command{
		r.createCommand(), r.listCommand(), r.showCommand(),
		r.transitionCommand("start", "Start a workspace", codersdk.WorkspaceTransitionStart),
		r.transitionCommand("stop", "Stop a workspace", codersdk.WorkspaceTransitionStop),
		r.transitionCommand("delete", "Delete a workspace", codersdk.WorkspaceTransitionDelete),
		r.restartCommand(), r.scheduleCommand(),
		r.templatesCommand(), r.provisionerCommand(),
	}
}
