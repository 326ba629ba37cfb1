package cli

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/wgmesh/coder/codersdk"
)

// writeAgentMetadata prints, for `coder show`, the latest metadata values
// each agent of the workspace collected (coder_agent metadata blocks), one
// table per agent that has metadata.
func (r *root) writeAgentMetadata(ctx context.Context, client *codersdk.Client, ws codersdk.Workspace) error {
	for _, res := range ws.LatestBuild.Resources {
		for _, a := range res.Agents {
			md, err := client.WorkspaceAgentMetadata(ctx, a.ID)
			if err != nil {
				return fmt.Errorf("metadata of agent %q: %w", a.Name, err)
			}
			if len(md) == 0 {
				continue
			}
			fmt.Fprintf(r.stdout, "\nMetadata of agent %s:\n", a.Name)
			rows := make([][]string, 0, len(md))
			for _, m := range md {
				rows = append(rows, metadataRow(m, time.Now()))
			}
			if err := writeTable(r.stdout, []string{"KEY", "NAME", "VALUE", "COLLECTED"}, rows); err != nil {
				return err
			}
		}
	}
	return nil
}

// metadataRow renders one metadata item: its value (or its error), and
// how long ago it was collected.
func metadataRow(m codersdk.WorkspaceAgentMetadata, now time.Time) []string {
	name := m.Description.DisplayName
	if name == "" {
		name = m.Description.Key
	}
	value := oneLine(m.Result.Value)
	collected := "not yet"
	if m.Result.CollectedAt != nil && !m.Result.CollectedAt.IsZero() {
		collected = ago(now.Sub(*m.Result.CollectedAt)) + " ago"
	}
	if m.Result.Error != "" {
		value = "error: " + oneLine(m.Result.Error)
	}
	return []string{m.Description.Key, name, value, collected}
}

// oneLine keeps a table cell on one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\t", " ")), " ")
}
