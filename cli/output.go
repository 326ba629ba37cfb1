package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

// outputFormat is the value of -o/--output.
type outputFormat struct{ value string }

func addOutputFlag(cmd *cobra.Command, o *outputFormat, def string) {
	o.value = def
	cmd.Flags().StringVarP(&o.value, "output", "o", def, "Output format: json or table.")
}

func (o outputFormat) validate() error {
	switch o.value {
	case "json", "table":
		return nil
	default:
		return fmt.Errorf("unknown output format %q: use json or table", o.value)
	}
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("encode json: %w", err)
	}
	return nil
}

// writeTable prints rows under upper-case headers, aligned.
func writeTable(w io.Writer, headers []string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(headers, "\t"))
	for _, row := range rows {
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write table: %w", err)
	}
	return nil
}

// humanTime formats a time for tables; the zero time is "never".
func humanTime(t time.Time) string {
	if t.IsZero() || t.Year() <= 1 {
		return "never"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}
