package cron_test

import (
	"strings"
	"testing"
	"time"

	"github.com/wgmesh/coder/internal/cron"
)

func TestScriptNext(t *testing.T) {
	t.Parallel()
	base := time.Date(2026, time.March, 14, 10, 17, 30, 0, time.UTC) // a Saturday
	tests := []struct {
		expr string
		want time.Time
	}{
		{"CRON_TZ=UTC * * * * *", time.Date(2026, 3, 14, 10, 18, 0, 0, time.UTC)},
		{"CRON_TZ=UTC */15 * * * *", time.Date(2026, 3, 14, 10, 30, 0, 0, time.UTC)},
		{"CRON_TZ=UTC 0 9 * * *", time.Date(2026, 3, 15, 9, 0, 0, 0, time.UTC)},
		{"CRON_TZ=UTC 30 8 * * mon-fri", time.Date(2026, 3, 16, 8, 30, 0, 0, time.UTC)},
		{"CRON_TZ=UTC 0 0 1 jan *", time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"CRON_TZ=UTC 0 12 1,20 * *", time.Date(2026, 3, 20, 12, 0, 0, 0, time.UTC)},
		{"CRON_TZ=UTC 0 0 13 * 5", time.Date(2026, 3, 20, 0, 0, 0, 0, time.UTC)}, // dom OR dow
		{"CRON_TZ=UTC @hourly", time.Date(2026, 3, 14, 11, 0, 0, 0, time.UTC)},
		{"CRON_TZ=UTC 45 * * * * *", time.Date(2026, 3, 14, 10, 17, 45, 0, time.UTC)},
		{"CRON_TZ=UTC 0 0 29 2 *", time.Date(2028, 2, 29, 0, 0, 0, 0, time.UTC)},
		{"CRON_TZ=Europe/Berlin 0 9 * * *", time.Date(2026, 3, 15, 8, 0, 0, 0, time.UTC)}, // CET = UTC+1
	}
	for _, tt := range tests {
		sched, err := cron.Script(tt.expr)
		if err != nil {
			t.Errorf("Script(%q): %v", tt.expr, err)
			continue
		}
		if got := sched.Next(base); !got.Equal(tt.want) {
			t.Errorf("%q: Next = %v, want %v", tt.expr, got, tt.want)
		}
	}
	for _, bad := range []string{"", "* * *", "60 * * * *", "* 24 * * *", "*/0 * * * *", "5-1 * * * *", "x * * * *", "CRON_TZ=Mars/Base * * * * *", "CRON_TZ=UTC"} {
		if _, err := cron.Script(bad); err == nil {
			t.Errorf("Script(%q) accepted", bad)
		}
	}
}

func TestWeekly(t *testing.T) {
	t.Parallel()
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	s, err := cron.Weekly("CRON_TZ=Europe/Berlin 30 8 * * 1-5")
	if err != nil {
		t.Fatal(err)
	}
	if s.Location().String() != "Europe/Berlin" {
		t.Fatalf("location %v", s.Location())
	}
	tests := []struct {
		name     string
		from     time.Time
		wantWall time.Time // in Berlin
	}{
		// Friday 27 March 2026, 09:00 Berlin (CET) → Monday 30 March 08:30 CEST:
		// the clocks went forward on Sunday 29 March, the wall time holds.
		{"across spring forward", time.Date(2026, 3, 27, 9, 0, 0, 0, berlin), time.Date(2026, 3, 30, 8, 30, 0, 0, berlin)},
		// Friday 23 October 2026 → Monday 26 October 08:30 CET (back on 25 October).
		{"across fall back", time.Date(2026, 10, 23, 9, 0, 0, 0, berlin), time.Date(2026, 10, 26, 8, 30, 0, 0, berlin)},
		{"same day before", time.Date(2026, 3, 30, 8, 29, 0, 0, berlin), time.Date(2026, 3, 30, 8, 30, 0, 0, berlin)},
		{"strictly after", time.Date(2026, 3, 30, 8, 30, 0, 0, berlin), time.Date(2026, 3, 31, 8, 30, 0, 0, berlin)},
	}
	for _, tt := range tests {
		got := s.Next(tt.from.UTC())
		if !got.Equal(tt.wantWall) {
			t.Errorf("%s: Next(%v) = %v, want %v", tt.name, tt.from, got.In(berlin), tt.wantWall)
		}
	}
	// Wall-clock times inside the DST changes: a skipped 02:30 does not
	// fire that day, a repeated one fires once.
	night, err := cron.Weekly("CRON_TZ=Europe/Berlin 30 2 * * *")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := night.Next(time.Date(2026, 3, 29, 0, 0, 0, 0, berlin)), time.Date(2026, 3, 30, 2, 30, 0, 0, berlin); !got.Equal(want) {
		t.Errorf("02:30 on the spring-forward day: Next = %v, want %v", got.In(berlin), want)
	}
	first := night.Next(time.Date(2026, 10, 25, 0, 0, 0, 0, berlin))
	if _, off := first.In(berlin).Zone(); first.In(berlin).Hour() != 2 || off != 2*3600 {
		t.Errorf("02:30 on the fall-back day: Next = %v, want 02:30 CEST", first.In(berlin))
	}
	if got, want := night.Next(first), time.Date(2026, 10, 26, 2, 30, 0, 0, berlin); !got.Equal(want) {
		t.Errorf("after the first 02:30 of the fall-back day: Next = %v, want %v (not the repeated hour)", got.In(berlin), want)
	}
	// A script schedule keeps firing through the repeated hour.
	every, err := cron.Script("CRON_TZ=Europe/Berlin 30 2 * * *")
	if err != nil {
		t.Fatal(err)
	}
	if got := every.Next(first); !got.Equal(first.Add(time.Hour)) {
		t.Errorf("script schedule in the repeated hour: Next = %v, want %v", got.In(berlin), first.Add(time.Hour).In(berlin))
	}
	// The UTC instants differ by the DST offset.
	if h := s.Next(time.Date(2026, 3, 27, 9, 0, 0, 0, berlin)).UTC().Hour(); h != 6 {
		t.Errorf("08:30 CEST is 06:30 UTC, got hour %d", h)
	}
	for _, bad := range []string{"30 8 1 * *", "30 8 * 1 *", "0 30 8 * * 1", "@daily", "CRON_TZ=Nowhere/City 30 8 * * 1-5", "30 25 * * *", "bogus"} {
		if _, err := cron.Weekly(bad); err == nil {
			t.Errorf("Weekly(%q) accepted", bad)
		} else if !strings.Contains(err.Error(), "cron") {
			t.Errorf("Weekly(%q) error %q does not name the expression", bad, err)
		}
	}
	if s, err := cron.Weekly("0 9 * * *"); err != nil || s.Location() != time.UTC {
		t.Errorf("default zone: %v, %v", s, err)
	}
}
