package cli

import (
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/wgmesh/coder/codersdk"
)

// updateCommand is `coder update WORKSPACE`: builds the workspace (a start)
// with its template's active version, asking for the values of parameters
// the new version adds (or, with --always-prompt, of every mutable one).
func (r *root) updateCommand() *cobra.Command {
	var (
		params       []string
		alwaysPrompt bool
	)
	cmd := &cobra.Command{
		Use:   "update [owner/]NAME",
		Short: "Update a workspace to its template's active version",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			client, ws, err := r.clientAndWorkspace(ctx, args[0])
			if err != nil {
				return err
			}
			if !ws.Outdated && !alwaysPrompt {
				fmt.Fprintf(r.stdout, "Workspace %q is up to date (template %q, version %s).\n", ws.Name, ws.TemplateName, ws.LatestBuild.TemplateVersionName)
				return nil
			}
			given, err := parseParameters(params)
			if err != nil {
				return err
			}
			newParams, err := client.TemplateVersionRichParameters(ctx, ws.TemplateActiveVersionID)
			if err != nil {
				return fmt.Errorf("parameters of the active version: %w", err)
			}
			prev, err := client.WorkspaceBuildParameters(ctx, ws.LatestBuild.ID)
			if err != nil {
				return fmt.Errorf("parameters of the latest build: %w", err)
			}
			values, err := r.updateParameterValues(newParams, prev, given, alwaysPrompt)
			if err != nil {
				return err
			}
			b, err := client.CreateWorkspaceBuild(ctx, ws.ID, codersdk.CreateWorkspaceBuildRequest{
				Transition: codersdk.WorkspaceTransitionStart, TemplateVersionID: ws.TemplateActiveVersionID, RichParameterValues: values,
			})
			if err != nil {
				return err
			}
			if err := r.followBuild(ctx, client, b); err != nil {
				return err
			}
			fmt.Fprintf(r.stdout, "\nThe %s workspace has been updated to version %s.\n", ws.Name, b.TemplateVersionName)
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringArrayVar(&params, "parameter", nil, "Rich parameter name=value (repeatable).")
	fs.BoolVar(&alwaysPrompt, "always-prompt", false, "Ask for every mutable parameter, not only new ones.")
	return cmd
}

// updateParameterValues decides the parameter values of an update: those
// given with --parameter; for a parameter the previous build has no value
// for and that is required (or one whose previous value the new version no
// longer offers), an answer from the terminal; with alwaysPrompt, an answer
// for every mutable parameter. Other parameters keep their previous value
// (or default), which the server fills in. Without a terminal a parameter
// that needs an answer is an error naming the --parameter to pass.
func (r *root) updateParameterValues(params []codersdk.TemplateVersionParameter, prev, given []codersdk.WorkspaceBuildParameter, alwaysPrompt bool) ([]codersdk.WorkspaceBuildParameter, error) {
	prevValue := map[string]string{}
	for _, p := range prev {
		prevValue[p.Name] = p.Value
	}
	givenValue := map[string]bool{}
	out := slices.Clone(given)
	for _, g := range given {
		givenValue[g.Name] = true
	}
	var ask []codersdk.TemplateVersionParameter
	for _, p := range params {
		if givenValue[p.Name] || p.Ephemeral {
			continue
		}
		old, had := prevValue[p.Name]
		switch {
		case !had && p.Required:
			ask = append(ask, p)
		case had && len(p.Options) > 0 && !slices.ContainsFunc(p.Options, func(o codersdk.TemplateVersionParameterOption) bool { return o.Value == old }):
			// The option the workspace had is gone.
			ask = append(ask, p)
		case alwaysPrompt && p.Mutable:
			ask = append(ask, p)
		}
	}
	if len(ask) == 0 {
		return out, nil
	}
	pr, ok := r.prompter()
	if !ok {
		names := make([]string, len(ask))
		for i, p := range ask {
			names[i] = fmt.Sprintf("--parameter %s=VALUE", p.Name)
		}
		if alwaysPrompt {
			return nil, fmt.Errorf("--always-prompt needs a terminal to ask for parameter(s); without one pass %s", strings.Join(names, " "))
		}
		return nil, fmt.Errorf("the active version needs values for parameter(s) the workspace does not have; pass %s", strings.Join(names, " "))
	}
	for _, p := range ask {
		label := p.Name
		if p.DisplayName != "" {
			label = p.DisplayName + " (" + p.Name + ")"
		}
		if p.Description != "" {
			fmt.Fprintf(pr.out, "%s\n", p.Description)
		}
		if len(p.Options) > 0 {
			for _, o := range p.Options {
				fmt.Fprintf(pr.out, "  - %s (%s)\n", o.Value, o.Name)
			}
		}
		if old, had := prevValue[p.Name]; had {
			label += fmt.Sprintf(" [current: %s]", old)
		} else if p.DefaultValue != "" {
			label += fmt.Sprintf(" [default: %s]", p.DefaultValue)
		}
		v, err := pr.line(label, func(s string) string {
			if len(p.Options) > 0 && !slices.ContainsFunc(p.Options, func(o codersdk.TemplateVersionParameterOption) bool { return o.Value == s }) {
				return "choose one of the options listed"
			}
			return ""
		})
		if err != nil {
			return nil, err
		}
		out = append(out, codersdk.WorkspaceBuildParameter{Name: p.Name, Value: v})
	}
	return out, nil
}
