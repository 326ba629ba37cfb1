// Package schedule holds the rules of workspace schedules: autostart
// expressions (internal/cron, weekly, with a time zone), how long a started
// workspace runs (TTL, the template's maximum), how activity bumps its
// deadline, how far a user may extend it, and when the lifecycle executor
// (coderd/autobuild) starts, stops, marks dormant or deletes a workspace.
// Everything here is a pure function of its arguments and the time given.
package schedule

import (
	"errors"
	"fmt"
	"time"

	"github.com/wgmesh/coder/database"
	"github.com/wgmesh/coder/internal/cron"
)

// Bounds of a workspace TTL.
const (
	MinTTL = time.Minute
	// MaxTTL bounds a TTL when the template sets no maximum.
	MaxTTL = 30 * 24 * time.Hour
	// MinExtension is how far in the future an extended deadline must be.
	MinExtension = 29 * time.Minute
)

// TemplateSchedule is a template's schedule settings. Zero durations mean
// "none" (no default TTL, no maximum, never dormant, never deleted).
type TemplateSchedule struct {
	DefaultTTL               time.Duration
	MaxTTL                   time.Duration
	AllowUserAutostart       bool
	AllowUserAutostop        bool
	FailureTTL               time.Duration
	TimeTilDormant           time.Duration
	TimeTilDormantAutodelete time.Duration
}

// ParseAutostart parses a workspace autostart schedule
// ("CRON_TZ=Europe/Berlin 30 8 * * 1-5"; UTC without CRON_TZ).
func ParseAutostart(expr string) (*cron.Schedule, error) {
	return cron.Weekly(expr)
}

// ValidateTTL checks a workspace TTL against the bounds and the template's
// maximum; the error is the message for the ttl_ms field.
func ValidateTTL(ttl time.Duration, tmpl TemplateSchedule) error {
	if ttl < MinTTL {
		return errors.New("time until shutdown must be at least one minute")
	}
	if tmpl.MaxTTL > 0 && ttl > tmpl.MaxTTL {
		return fmt.Errorf("time until shutdown must be at most the template's maximum of %s", tmpl.MaxTTL)
	}
	if ttl > MaxTTL {
		return fmt.Errorf("time until shutdown must be at most %s", MaxTTL)
	}
	return nil
}

// EffectiveTTL is how long a workspace runs after a start: its own TTL when
// users may set one and it has one, else the template's default, never
// beyond the template's maximum. 0 means it runs until stopped (or until the
// maximum, see Deadlines).
func EffectiveTTL(workspaceTTL time.Duration, hasTTL bool, tmpl TemplateSchedule) time.Duration {
	ttl := tmpl.DefaultTTL
	if tmpl.AllowUserAutostop && hasTTL {
		ttl = workspaceTTL
	}
	if tmpl.MaxTTL > 0 && ttl > tmpl.MaxTTL {
		ttl = tmpl.MaxTTL
	}
	return ttl
}

// Deadlines are a start's deadline (the workspace stops then, unless
// activity bumps it) and max deadline (no bump or extension goes beyond it),
// from the start's completion time. A zero time means none.
func Deadlines(now time.Time, ttl time.Duration, tmpl TemplateSchedule) (deadline, maxDeadline time.Time) {
	if tmpl.MaxTTL > 0 {
		maxDeadline = now.Add(tmpl.MaxTTL)
	}
	if ttl > 0 {
		deadline = now.Add(ttl)
	}
	if !maxDeadline.IsZero() && (deadline.IsZero() || deadline.After(maxDeadline)) {
		deadline = maxDeadline
	}
	return deadline, maxDeadline
}

// Bump returns the deadline after activity seen at now: now+ttl when that
// is later than the current deadline, capped at maxDeadline. ok is false
// when nothing changes (no deadline, no TTL, or enough time left).
func Bump(now, deadline, maxDeadline time.Time, ttl time.Duration) (time.Time, bool) {
	if deadline.IsZero() || ttl <= 0 {
		return deadline, false
	}
	next := now.Add(ttl)
	if !maxDeadline.IsZero() && next.After(maxDeadline) {
		next = maxDeadline
	}
	if !next.After(deadline) {
		return deadline, false
	}
	return next, true
}

// ValidateExtension checks a requested deadline of a running workspace;
// the error is the message for the deadline field.
func ValidateExtension(now, requested, deadline, maxDeadline time.Time) error {
	if deadline.IsZero() {
		return errors.New("the workspace has no deadline to extend (it runs until stopped)")
	}
	if requested.Before(now.Add(MinExtension)) {
		return errors.New("new deadline must be at least 30 minutes in the future")
	}
	if !maxDeadline.IsZero() && requested.After(maxDeadline) {
		return fmt.Errorf("new deadline must be at or before the template's maximum, %s", maxDeadline.UTC().Format(time.RFC3339))
	}
	return nil
}

// FromRow turns a template's schedule row (GetTemplateSchedule) into its
// settings.
func FromRow(r database.GetTemplateScheduleRow) TemplateSchedule {
	return TemplateSchedule{
		DefaultTTL: time.Duration(r.DefaultTtl), MaxTTL: time.Duration(r.MaxTtl),
		AllowUserAutostart: r.AllowUserAutostart, AllowUserAutostop: r.AllowUserAutostop,
		FailureTTL: time.Duration(r.FailureTtl), TimeTilDormant: time.Duration(r.TimeTilDormant),
		TimeTilDormantAutodelete: time.Duration(r.TimeTilDormantAutodelete),
	}
}

// WorkspaceTTL returns a workspace's own TTL column as a duration and
// whether it has one.
func WorkspaceTTL(ws database.Workspace) (time.Duration, bool) {
	return time.Duration(ws.Ttl.Int64), ws.Ttl.Valid
}
