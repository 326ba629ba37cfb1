package cli

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/internal/cron"
)

// scheduleCommand is `coder schedule show|start|stop|extend`.
func (r *root) scheduleCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "schedule",
		Short: "Schedule automated start and stop times for workspaces",
	}
	cmd.AddCommand(r.scheduleShowCommand(), r.scheduleStartCommand(), r.scheduleStopCommand(), r.scheduleExtendCommand())
	return cmd
}

func (r *root) scheduleShowCommand() *cobra.Command {
	var out outputFormat
	cmd := &cobra.Command{
		Use:   "show [owner/]NAME",
		Short: "Show a workspace's autostart schedule, TTL and deadline",
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
			row := scheduleRow(ws, time.Now())
			if out.value == "json" {
				return writeJSON(r.stdout, map[string]string{
					"workspace": row[0], "starts_at": row[1], "starts_next": row[2], "stops_after": row[3], "stops_next": row[4],
				})
			}
			return writeTable(r.stdout, []string{"WORKSPACE", "STARTS AT", "STARTS NEXT", "STOPS AFTER", "STOPS NEXT"}, [][]string{row})
		},
	}
	addOutputFlag(cmd, &out, "table")
	return cmd
}

// scheduleRow is the row of `coder schedule show` for ws at now.
func scheduleRow(ws codersdk.Workspace, now time.Time) []string {
	startsAt, startsNext := "-", "-"
	if ws.AutostartSchedule != nil {
		startsAt = *ws.AutostartSchedule
		if s, err := cron.Weekly(*ws.AutostartSchedule); err == nil {
			startsAt = humanSchedule(*ws.AutostartSchedule)
			if next := s.Next(now); !next.IsZero() {
				startsNext = next.In(s.Location()).Format("Mon Jan 2 3:04PM MST")
			}
		}
	}
	stopsAfter, stopsNext := "-", "-"
	if ws.TTLMillis != nil {
		stopsAfter = (time.Duration(*ws.TTLMillis) * time.Millisecond).String()
	}
	if ws.LatestBuild.Transition == codersdk.WorkspaceTransitionStart && ws.LatestBuild.Status == codersdk.WorkspaceStatusRunning && ws.LatestBuild.Deadline != nil {
		stopsNext = ws.LatestBuild.Deadline.Local().Format("Mon Jan 2 3:04PM MST") + " (in " + shortDuration(ws.LatestBuild.Deadline.Sub(now)) + ")"
	}
	return []string{ws.OwnerName + "/" + ws.Name, startsAt, startsNext, stopsAfter, stopsNext}
}

// humanSchedule renders "CRON_TZ=Europe/Berlin 30 8 * * 1-5" as
// "8:30AM Mon-Fri (Europe/Berlin)"; anything else is returned as is.
func humanSchedule(expr string) string {
	zone := "UTC"
	body := expr
	if strings.HasPrefix(expr, "CRON_TZ=") {
		head, rest, _ := strings.Cut(expr, " ")
		zone, body = strings.TrimPrefix(head, "CRON_TZ="), rest
	}
	f := strings.Fields(body)
	if len(f) != 5 {
		return expr
	}
	m, errM := strconv.Atoi(f[0])
	h, errH := strconv.Atoi(f[1])
	if errM != nil || errH != nil {
		return expr
	}
	days := f[4]
	switch days {
	case "*":
		days = "daily"
	case "1-5":
		days = "Mon-Fri"
	}
	return fmt.Sprintf("%s %s (%s)", time.Date(2000, 1, 1, h, m, 0, 0, time.UTC).Format("3:04PM"), days, zone)
}

// shortDuration renders d as "1h 20m" (minutes precision, "0m" at least).
func shortDuration(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	d = d.Round(time.Minute)
	h, m := int(d/time.Hour), int(d%time.Hour/time.Minute)
	if h > 0 {
		return fmt.Sprintf("%dh %dm", h, m)
	}
	return fmt.Sprintf("%dm", m)
}

// weekdays maps day names (as Coder's CLI accepts them) to cron numbers.
var weekdays = map[string]int{"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}

// parseCLISchedule turns `coder schedule start` arguments — a time
// ("9:30AM", "09:30", "17:00"), optional days ("Mon-Fri", "Mon,Wed", "*")
// and an optional IANA time zone (default: defaultZone) — into a cron
// expression "CRON_TZ=<zone> <minute> <hour> * * <days>".
func parseCLISchedule(args []string, defaultZone string) (string, error) {
	if len(args) == 0 || len(args) > 3 {
		return "", errors.New("want TIME [DAYS] [TIMEZONE], e.g. 9:30AM Mon-Fri Europe/Berlin")
	}
	var clock time.Time
	var err error
	for _, layout := range []string{"3:04PM", "3PM", "15:04", "3:04pm", "3pm"} {
		if clock, err = time.Parse(layout, strings.ToUpper(args[0])); err == nil {
			break
		}
	}
	if err != nil {
		return "", fmt.Errorf("invalid time %q: want e.g. 9:30AM or 17:00", args[0])
	}
	days := "*"
	zone := ""
	for _, a := range args[1:] {
		if d, ok := parseDays(a); ok {
			days = d
			continue
		}
		if _, err := time.LoadLocation(a); err != nil || a == "" || a == "Local" {
			return "", fmt.Errorf("invalid days or time zone %q: want e.g. Mon-Fri or Europe/Berlin", a)
		}
		zone = a
	}
	if zone == "" {
		zone = defaultZone
	}
	expr := fmt.Sprintf("CRON_TZ=%s %d %d * * %s", zone, clock.Minute(), clock.Hour(), days)
	if _, err := cron.Weekly(expr); err != nil {
		return "", err
	}
	return expr, nil
}

// parseDays parses "Mon-Fri", "mon,wed,fri" or "*" into a cron day field.
func parseDays(s string) (string, bool) {
	if s == "*" {
		return s, true
	}
	var out []string
	for _, part := range strings.Split(strings.ToLower(s), ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, ok := weekdays[lo]
		if !ok {
			return "", false
		}
		if !isRange {
			out = append(out, strconv.Itoa(a))
			continue
		}
		b, ok := weekdays[hi]
		if !ok {
			return "", false
		}
		out = append(out, fmt.Sprintf("%d-%d", a, b))
	}
	return strings.Join(out, ","), len(out) > 0
}

// localZoneName is $TZ when it names a zone, else the local zone's name
// (UTC when the system has none).
func (r *root) localZoneName() string {
	if tz := strings.TrimPrefix(r.env["TZ"], ":"); tz != "" {
		if _, err := time.LoadLocation(tz); err == nil {
			return tz
		}
	}
	if name := time.Local.String(); name != "" && name != "Local" {
		return name
	}
	return "UTC"
}

func (r *root) scheduleStartCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "start [owner/]NAME {TIME [DAYS] [TIMEZONE] | manual}",
		Short: "Edit a workspace's autostart schedule (\"manual\" turns it off)",
		Long: "Edit a workspace's autostart schedule, e.g.\n" +
			"  coder schedule start my-ws 9:30AM Mon-Fri Europe/Berlin\n" +
			"  coder schedule start my-ws manual",
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var sched *string
			if !(len(args) == 2 && args[1] == "manual") {
				expr, err := parseCLISchedule(args[1:], r.localZoneName())
				if err != nil {
					return err
				}
				sched = &expr
			}
			return r.updateSchedule(cmd.Context(), args[0], func(ctx context.Context, client *codersdk.Client, ws codersdk.Workspace) error {
				return client.UpdateWorkspaceAutostart(ctx, ws.ID, codersdk.UpdateWorkspaceAutostartRequest{Schedule: sched})
			})
		},
	}
}

func (r *root) scheduleStopCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "stop [owner/]NAME {DURATION | manual}",
		Short: "Edit how long a workspace runs after it starts (\"manual\" turns autostop off)",
		Long:  "Edit a workspace's TTL, e.g. coder schedule stop my-ws 8h30m; it applies from the next start.",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var ttl *int64
			if args[1] != "manual" {
				d, err := parseLongDuration(args[1])
				if err != nil {
					return err
				}
				ms := d.Milliseconds()
				ttl = &ms
			}
			return r.updateSchedule(cmd.Context(), args[0], func(ctx context.Context, client *codersdk.Client, ws codersdk.Workspace) error {
				return client.UpdateWorkspaceTTL(ctx, ws.ID, codersdk.UpdateWorkspaceTTLRequest{TTLMillis: ttl})
			})
		},
	}
}

func (r *root) scheduleExtendCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "extend [owner/]NAME DURATION",
		Aliases: []string{"override-stop"},
		Short:   "Move a running workspace's stop time to DURATION from now",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := parseLongDuration(args[1])
			if err != nil {
				return err
			}
			return r.updateSchedule(cmd.Context(), args[0], func(ctx context.Context, client *codersdk.Client, ws codersdk.Workspace) error {
				return client.PutExtendWorkspace(ctx, ws.ID, codersdk.PutExtendWorkspaceRequest{Deadline: time.Now().Add(d)})
			})
		},
	}
}

// updateSchedule applies change to the named workspace and prints its
// schedule afterwards.
func (r *root) updateSchedule(ctx context.Context, arg string, change func(context.Context, *codersdk.Client, codersdk.Workspace) error) error {
	client, err := r.client()
	if err != nil {
		return err
	}
	ws, err := r.workspaceByArg(ctx, client, arg)
	if err != nil {
		return err
	}
	if err := change(ctx, client, ws); err != nil {
		return err
	}
	if ws, err = client.Workspace(ctx, ws.ID); err != nil {
		return err
	}
	return writeTable(r.stdout, []string{"WORKSPACE", "STARTS AT", "STARTS NEXT", "STOPS AFTER", "STOPS NEXT"}, [][]string{scheduleRow(ws, time.Now())})
}

// parseLongDuration parses a Go duration ("8h", "90m") or days ("2d").
func parseLongDuration(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		if days, err := strconv.Atoi(n); err == nil && days > 0 {
			return time.Duration(days) * 24 * time.Hour, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("invalid duration %q: want e.g. 8h, 90m or 2d", s)
	}
	return d, nil
}

// dormancyStatus is the note `coder list` adds to a dormant workspace's
// status: "dormant" and, when it will be deleted, the date.
func dormancyStatus(ws codersdk.Workspace) string {
	if ws.DormantAt == nil {
		return ""
	}
	if ws.DeletingAt == nil {
		return " (dormant)"
	}
	return " (dormant, deleted " + ws.DeletingAt.Local().Format("2006-01-02") + ")"
}

// addCreateScheduleFlags adds `coder create --start-at/--stop-after`.
func addCreateScheduleFlags(cmd *cobra.Command, startAt, stopAfter *string) {
	fs := cmd.Flags()
	fs.StringVar(startAt, "start-at", "", `Autostart schedule, e.g. "9:30AM Mon-Fri Europe/Berlin".`)
	envFlag(fs, "start-at", "CODER_WORKSPACE_START_AT")
	fs.StringVar(stopAfter, "stop-after", "", `How long the workspace runs after each start, e.g. 8h.`)
	envFlag(fs, "stop-after", "CODER_WORKSPACE_STOP_AFTER")
}

// createSchedule sets req's schedule from --start-at and --stop-after.
func (r *root) createSchedule(req *codersdk.CreateWorkspaceRequest, startAt, stopAfter string) error {
	if startAt != "" {
		expr, err := parseCLISchedule(strings.Fields(startAt), r.localZoneName())
		if err != nil {
			return fmt.Errorf("--start-at: %w", err)
		}
		req.AutostartSchedule = &expr
	}
	if stopAfter != "" {
		d, err := parseLongDuration(stopAfter)
		if err != nil {
			return fmt.Errorf("--stop-after: %w", err)
		}
		ms := d.Milliseconds()
		req.TTLMillis = &ms
	}
	return nil
}
