package cli

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/wgmesh/coder/codersdk"
)

// listColumn is one column coder list can show (-c/--column).
type listColumn struct {
	name  string
	value func(codersdk.Workspace) string
}

var listColumns = []listColumn{
	{"workspace", func(ws codersdk.Workspace) string { return ws.OwnerName + "/" + ws.Name }},
	{"template", func(ws codersdk.Workspace) string { return ws.TemplateName }},
	{"status", func(ws codersdk.Workspace) string { return string(ws.LatestBuild.Status) + dormancyStatus(ws) }},
	{"last built", func(ws codersdk.Workspace) string { return string(ws.LatestBuild.Transition) }},
	{"at", func(ws codersdk.Workspace) string { return humanTime(ws.LatestBuild.CreatedAt) }},
	{"agent", agentHealth},
	{"apps", func(ws codersdk.Workspace) string { return strconv.Itoa(workspaceAppCount(ws)) }},
	{"favorite", func(ws codersdk.Workspace) string {
		if ws.Favorite {
			return "★"
		}
		return ""
	}},
	{"outdated", func(ws codersdk.Workspace) string { return strconv.FormatBool(ws.Outdated) }},
	{"owner", func(ws codersdk.Workspace) string { return ws.OwnerName }},
	{"name", func(ws codersdk.Workspace) string { return ws.Name }},
	{"id", func(ws codersdk.Workspace) string { return ws.ID.String() }},
}

const defaultListColumns = "workspace,template,status,last built,at,agent,apps"

// pickListColumns resolves -c (comma-separated, case-insensitive) to
// columns, refusing unknown names.
func pickListColumns(spec []string) ([]listColumn, error) {
	var out []listColumn
	names := make([]string, 0, len(listColumns))
	for _, c := range listColumns {
		names = append(names, c.name)
	}
	for _, s := range spec {
		s = strings.ToLower(strings.TrimSpace(s))
		if s == "" {
			continue
		}
		i := slices.IndexFunc(listColumns, func(c listColumn) bool { return c.name == s })
		if i < 0 {
			return nil, fmt.Errorf("unknown column %q (available: %s)", s, strings.Join(names, ", "))
		}
		out = append(out, listColumns[i])
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no columns given (available: %s)", strings.Join(names, ", "))
	}
	return out, nil
}

// listCommand is `coder list`: the workspaces matching --search (Coder's
// query syntax, default owner:me; -a lists every workspace you may see),
// favorites first, in the -c columns.
func (r *root) listCommand() *cobra.Command {
	var (
		out     outputFormat
		all     bool
		search  string
		columns []string
	)
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List workspaces",
		Long: "List workspaces. --search takes space-separated filters: owner:USER (me), name:SUBSTRING,\n" +
			"template:NAME, status:STATUS (running, stopped, failed, ...), outdated:true|false, dormant:true|false.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := out.validate(); err != nil {
				return err
			}
			cols, err := pickListColumns(columns)
			if err != nil {
				return err
			}
			client, err := r.client()
			if err != nil {
				return err
			}
			if all && !cmd.Flags().Changed("search") {
				search = ""
			}
			res, err := client.WorkspacesFiltered(cmd.Context(), codersdk.WorkspaceFilter{Search: search})
			if err != nil {
				return err
			}
			if out.value == "json" {
				return writeJSON(r.stdout, res.Workspaces)
			}
			headers := make([]string, 0, len(cols))
			for _, c := range cols {
				headers = append(headers, strings.ToUpper(c.name))
			}
			rows := make([][]string, 0, len(res.Workspaces))
			for _, ws := range res.Workspaces {
				row := make([]string, 0, len(cols))
				for _, c := range cols {
					row = append(row, c.value(ws))
				}
				rows = append(rows, row)
			}
			return writeTable(r.stdout, headers, rows)
		},
	}
	fs := cmd.Flags()
	fs.BoolVarP(&all, "all", "a", false, "List the workspaces of every user you may see (same as --search \"\").")
	fs.StringVar(&search, "search", "owner:me", "Search query: owner:, name:, template:, status:, outdated:, dormant: terms.")
	fs.StringSliceVarP(&columns, "column", "c", strings.Split(defaultListColumns, ","), "Columns to show: workspace, template, status, last built, at, agent, apps, favorite, outdated, owner, name, id.")
	addOutputFlag(cmd, &out, "table")
	return cmd
}
