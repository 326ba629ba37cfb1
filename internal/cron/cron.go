// Package cron parses cron expressions with github.com/robfig/cron/v3 for the
// two places that need them: coder_script schedules run by the agent, and
// workspace autostart schedules run by coderd. It is a leaf (the standard
// library and robfig/cron only), so the agent can use it without importing
// server code.
package cron

import (
	"fmt"
	"strings"
	"time"

	robfig "github.com/robfig/cron/v3"
)

// Schedule is a parsed cron expression bound to a time zone.
type Schedule struct {
	expr     string
	location *time.Location
	sched    robfig.Schedule
	// firstOnly skips the second occurrence of a wall-clock time on a DST
	// fall-back day (autostart schedules fire once a day at most).
	firstOnly bool
}

// scriptParser accepts 5 fields (minute hour dom month dow), 6 fields with a
// leading seconds field, and descriptors (@daily, @hourly, ...).
var scriptParser = robfig.NewParser(robfig.SecondOptional | robfig.Minute | robfig.Hour | robfig.Dom | robfig.Month | robfig.Dow | robfig.Descriptor)

// workspaceParser accepts exactly 5 fields: autostart schedules are minute
// granular.
var workspaceParser = robfig.NewParser(robfig.Minute | robfig.Hour | robfig.Dom | robfig.Month | robfig.Dow)

// Script parses a coder_script cron expression: 5 fields, 6 fields with a
// leading seconds field, or a descriptor such as @daily. An optional
// CRON_TZ=<zone> prefix names the time zone; without one the schedule runs
// in the local time zone. As in cron(8), when both day-of-month and
// day-of-week are restricted, a day matching either fires.
func Script(expr string) (*Schedule, error) {
	return parse(scriptParser, expr, time.Local)
}

// Weekly parses a workspace autostart schedule: an optional CRON_TZ=<zone>
// prefix (default UTC) and 5 fields "minute hour * * day-of-week". The
// day-of-month and month fields must be "*": autostart repeats every week.
func Weekly(expr string) (*Schedule, error) {
	s, err := parse(workspaceParser, expr, time.UTC)
	if err != nil {
		return nil, err
	}
	fields := strings.Fields(stripTZ(expr))
	if fields[2] != "*" || fields[3] != "*" {
		return nil, fmt.Errorf("cron %q: the day-of-month and month fields must be *", expr)
	}
	s.firstOnly = true
	return s, nil
}

func stripTZ(expr string) string {
	expr = strings.TrimSpace(expr)
	if strings.HasPrefix(expr, "CRON_TZ=") || strings.HasPrefix(expr, "TZ=") {
		if _, rest, ok := strings.Cut(expr, " "); ok {
			return strings.TrimSpace(rest)
		}
		return ""
	}
	return expr
}

func parse(p robfig.Parser, expr string, def *time.Location) (*Schedule, error) {
	expr = strings.TrimSpace(expr)
	if expr == "" {
		return nil, fmt.Errorf("cron: empty expression")
	}
	loc := def
	body := expr
	if strings.HasPrefix(expr, "CRON_TZ=") || strings.HasPrefix(expr, "TZ=") {
		head, rest, ok := strings.Cut(expr, " ")
		_, zone, _ := strings.Cut(head, "=")
		if !ok || strings.TrimSpace(rest) == "" {
			return nil, fmt.Errorf("cron %q: no schedule after %s", expr, head)
		}
		l, err := time.LoadLocation(zone)
		if err != nil || zone == "" {
			return nil, fmt.Errorf("cron %q: unknown time zone %q", expr, zone)
		}
		loc, body = l, strings.TrimSpace(rest)
	}
	sched, err := p.Parse(body)
	if err != nil {
		return nil, fmt.Errorf("cron %q: %w", expr, err)
	}
	return &Schedule{expr: expr, location: loc, sched: sched}, nil
}

// String returns the expression as given.
func (s *Schedule) String() string { return s.expr }

// Location returns the schedule's time zone.
func (s *Schedule) Location() *time.Location { return s.location }

// Next returns the first activation strictly after t, computed in the
// schedule's time zone (so "30 8 * * *" in Europe/Berlin is 08:30 Berlin
// time on both sides of a DST change), or the zero time when there is none
// within five years. A wall-clock time that does not exist on a DST
// spring-forward day (02:30 in Berlin on the last Sunday of March) is
// skipped that day. One that occurs twice on a fall-back day fires twice
// for a Script schedule (so "every 15 minutes" keeps running through the
// repeated hour) and once, at its first occurrence, for a Weekly one.
func (s *Schedule) Next(t time.Time) time.Time {
	next := s.sched.Next(t.In(s.location))
	for i := 0; i < 4 && s.firstOnly && !next.IsZero() && repeatedWallClock(next); i++ {
		// The second occurrence of a wall-clock time on a fall-back day:
		// it already fired an hour ago.
		next = s.sched.Next(next)
	}
	return next
}

// repeatedWallClock reports whether the wall-clock time of t (in its
// location) also occurred an hour earlier, as in the repeated hour of a
// DST fall-back.
func repeatedWallClock(t time.Time) bool {
	e := t.Add(-time.Hour)
	return e.Hour() == t.Hour() && e.Minute() == t.Minute() && e.Day() == t.Day()
}
