package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
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

// clientAndWorkspace is the start of most workspace commands: the
// signed-in client and the workspace that arg ([owner/]name) names.
func (r *root) clientAndWorkspace(ctx context.Context, arg string) (*codersdk.Client, codersdk.Workspace, error) {
	client, err := r.client()
	if err != nil {
		return nil, codersdk.Workspace{}, err
	}
	ws, err := r.workspaceByArg(ctx, client, arg)
	return client, ws, err
}

// workspaceByArg looks up the workspace arg ([owner/]name) names.
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
		params    parameterFlags
		startAt   string
		stopAfter string
	)
	cmd := &cobra.Command{
		Use:   "create [owner/]NAME",
		Short: "Create a workspace",
		Long: "Create a workspace. On a terminal, a missing name, template (-t) or parameter value is asked for;\n" +
			"-y takes the defaults and asks nothing (a required parameter must then be given).",
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			client, err := r.client()
			if err != nil {
				return err
			}
			var arg string
			if len(args) == 1 {
				arg = args[0]
			} else {
				pr, ok := r.prompter()
				if !ok || yes {
					return errors.New("a workspace name is required: coder create NAME")
				}
				if arg, err = pr.line("Workspace name", func(s string) string {
					if _, _, err := workspaceRef(s); err != nil {
						return err.Error()
					}
					return ""
				}); err != nil {
					return err
				}
			}
			owner, name, err := workspaceRef(arg)
			if err != nil {
				return err
			}
			var t codersdk.Template
			switch {
			case template != "":
				if err := checkTemplateArg(template); err != nil {
					return err
				}
				if t, err = client.TemplateByName(ctx, template); err != nil {
					return fmt.Errorf("template %q: %w", template, err)
				}
			case yes:
				return errors.New("a template is required: -t TEMPLATE")
			default:
				if t, err = r.pickTemplate(ctx, client); err != nil {
					return err
				}
			}
			var copied map[string]string
			if params.copyFrom != "" {
				if copied, err = r.copyParameters(ctx, client, params.copyFrom); err != nil {
					return err
				}
			}
			values, err := r.resolveBuildParameters(ctx, client, params, buildParameterRequest{
				versionID: t.ActiveVersionID, creating: true, yes: yes, copied: copied,
			})
			if err != nil {
				return err
			}
			if !yes {
				ok, err := r.confirmAny(fmt.Sprintf("Create workspace %q from template %q?", name, t.Name))
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
	fs.StringVarP(&template, "template", "t", "", "Template name (asked for on a terminal when not given).")
	envFlag(fs, "template", "CODER_TEMPLATE_NAME")
	fs.BoolVarP(&yes, "yes", "y", false, "Do not ask anything: no confirmation, parameter defaults.")
	addParameterFlags(cmd, &params, true)
	addCreateScheduleFlags(cmd, &startAt, &stopAfter)
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
		params      parameterFlags
	)
	cmd := &cobra.Command{
		Use:   use + " [owner/]NAME",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			client, ws, err := r.clientAndWorkspace(ctx, args[0])
			if err != nil {
				return err
			}
			if question := transitionQuestion(transition, ws.Name); question != "" && !yes {
				ok, err := r.confirm(question)
				if err != nil {
					return err
				}
				if !ok {
					return errors.New("canceled")
				}
			}
			var values []codersdk.WorkspaceBuildParameter
			if transition != codersdk.WorkspaceTransitionDelete {
				if values, err = r.resolveBuildParameters(ctx, client, params, buildParameterRequest{versionID: ws.LatestBuild.TemplateVersionID, yes: yes}); err != nil {
					return err
				}
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
	if transition == codersdk.WorkspaceTransitionDelete {
		cmd.Aliases = []string{"rm"}
	}
	fs := cmd.Flags()
	// -y is accepted by every transition so scripts can pass it uniformly;
	// stop and delete ask for confirmation.
	fs.BoolVarP(&yes, "yes", "y", false, "Do not ask for confirmation (stop and delete ask).")
	if transition == codersdk.WorkspaceTransitionDelete {
		fs.BoolVar(&orphan, "orphan", false, "Delete the workspace without running terraform destroy (for a broken template); resources are left behind.")
	} else {
		addParameterFlags(cmd, &params, false)
	}
	return cmd
}

// transitionQuestion is the confirmation a transition asks for ("" for
// none): stop and delete, as Coder's CLI does.
func transitionQuestion(t codersdk.WorkspaceTransition, name string) string {
	switch t {
	case codersdk.WorkspaceTransitionStop:
		return fmt.Sprintf("Stop workspace %q?", name)
	case codersdk.WorkspaceTransitionDelete:
		return fmt.Sprintf("Delete workspace %q and all its resources?", name)
	}
	return ""
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
	var (
		params parameterFlags
		yes    bool
	)
	cmd := &cobra.Command{
		Use:   "restart [owner/]NAME",
		Short: "Stop then start a workspace",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			client, ws, err := r.clientAndWorkspace(ctx, args[0])
			if err != nil {
				return err
			}
			values, err := r.resolveBuildParameters(ctx, client, params, buildParameterRequest{versionID: ws.LatestBuild.TemplateVersionID, yes: yes})
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
	addParameterFlags(cmd, &params, false)
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "Do not ask for confirmation (accepted for scripts; restart does not ask).")
	return cmd
}

// workspaceCommands returns the workspace commands for the root.
func (r *root) workspaceCommands() []*cobra.Command {
	return []*cobra.Command{
		r.createCommand(), r.listCommand(), r.showCommand(),
		r.transitionCommand("start", "Start a workspace", codersdk.WorkspaceTransitionStart),
		r.transitionCommand("stop", "Stop a workspace", codersdk.WorkspaceTransitionStop),
		r.transitionCommand("delete", "Delete a workspace", codersdk.WorkspaceTransitionDelete),
		r.restartCommand(), r.scheduleCommand(), r.updateCommand(),
		r.templatesCommand(), r.provisionerCommand(),
	}
}
