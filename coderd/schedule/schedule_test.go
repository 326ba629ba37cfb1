package schedule_test

import (
	"testing"
	"time"

	"github.com/wgmesh/coder/coderd/schedule"
)

func TestDeadlinesAndBump(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 6, 1, 9, 0, 0, 0, time.UTC)
	tmpl := schedule.TemplateSchedule{MaxTTL: 4 * time.Hour, AllowUserAutostop: true}
	tests := []struct {
		name         string
		ttl          time.Duration
		tmpl         schedule.TemplateSchedule
		wantDeadline time.Time
		wantMax      time.Time
	}{
		{"ttl within max", 2 * time.Hour, tmpl, now.Add(2 * time.Hour), now.Add(4 * time.Hour)},
		{"ttl beyond max is capped", 8 * time.Hour, tmpl, now.Add(4 * time.Hour), now.Add(4 * time.Hour)},
		{"no ttl, max only", 0, tmpl, now.Add(4 * time.Hour), now.Add(4 * time.Hour)},
		{"neither", 0, schedule.TemplateSchedule{}, time.Time{}, time.Time{}},
		{"ttl, no max", time.Hour, schedule.TemplateSchedule{}, now.Add(time.Hour), time.Time{}},
	}
	for _, tt := range tests {
		d, m := schedule.Deadlines(now, tt.ttl, tt.tmpl)
		if !d.Equal(tt.wantDeadline) || !m.Equal(tt.wantMax) {
			t.Errorf("%s: Deadlines = %v, %v; want %v, %v", tt.name, d, m, tt.wantDeadline, tt.wantMax)
		}
	}

	deadline, maxDeadline := now.Add(time.Hour), now.Add(90*time.Minute)
	bumps := []struct {
		name   string
		at     time.Time
		want   time.Time
		bumped bool
	}{
		{"a full TTL left", now, deadline, false},
		{"bumped to now+ttl", now.Add(20 * time.Minute), now.Add(80 * time.Minute), true},
		{"capped at max deadline", now.Add(50 * time.Minute), maxDeadline, true},
	}
	for _, b := range bumps {
		got, ok := schedule.Bump(b.at, deadline, maxDeadline, time.Hour)
		if ok != b.bumped || !got.Equal(b.want) {
			t.Errorf("%s: Bump = %v, %v; want %v, %v", b.name, got, ok, b.want, b.bumped)
		}
	}
	if _, ok := schedule.Bump(now, maxDeadline, maxDeadline, time.Hour); ok {
		t.Error("bumped a deadline already at its max")
	}
	if _, ok := schedule.Bump(now, time.Time{}, time.Time{}, time.Hour); ok {
		t.Error("bumped a workspace without deadline")
	}
}

func TestEffectiveTTL(t *testing.T) {
	t.Parallel()
	tmpl := schedule.TemplateSchedule{DefaultTTL: 8 * time.Hour, MaxTTL: 10 * time.Hour, AllowUserAutostop: true}
	if got := schedule.EffectiveTTL(2*time.Hour, true, tmpl); got != 2*time.Hour {
		t.Errorf("own TTL: %v", got)
	}
	if got := schedule.EffectiveTTL(0, false, tmpl); got != 8*time.Hour {
		t.Errorf("default TTL: %v", got)
	}
	if got := schedule.EffectiveTTL(20*time.Hour, true, tmpl); got != 10*time.Hour {
		t.Errorf("capped TTL: %v", got)
	}
	tmpl.AllowUserAutostop = false
	if got := schedule.EffectiveTTL(2*time.Hour, true, tmpl); got != 8*time.Hour {
		t.Errorf("template forbids user TTL, got %v", got)
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	tmpl := schedule.TemplateSchedule{MaxTTL: 4 * time.Hour}
	for _, tt := range []struct {
		ttl time.Duration
		ok  bool
	}{{30 * time.Second, false}, {time.Minute, true}, {4 * time.Hour, true}, {5 * time.Hour, false}} {
		if err := schedule.ValidateTTL(tt.ttl, tmpl); (err == nil) != tt.ok {
			t.Errorf("ValidateTTL(%v) = %v", tt.ttl, err)
		}
	}
	if err := schedule.ValidateTTL(40*24*time.Hour, schedule.TemplateSchedule{}); err == nil {
		t.Error("40 days accepted")
	}
	now := time.Date(2026, 6, 1, 9, 0, 0, 0, time.UTC)
	dl, maxDl := now.Add(time.Hour), now.Add(3*time.Hour)
	for _, tt := range []struct {
		name string
		req  time.Time
		dl   time.Time
		ok   bool
	}{
		{"two hours", now.Add(2 * time.Hour), dl, true},
		{"too soon", now.Add(10 * time.Minute), dl, false},
		{"beyond max", now.Add(4 * time.Hour), dl, false},
		{"no deadline", now.Add(2 * time.Hour), time.Time{}, false},
	} {
		if err := schedule.ValidateExtension(now, tt.req, tt.dl, maxDl); (err == nil) != tt.ok {
			t.Errorf("%s: ValidateExtension = %v", tt.name, err)
		}
	}
}
