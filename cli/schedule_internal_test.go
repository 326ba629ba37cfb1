package cli

import (
	"testing"
	"time"
)

func TestParseCLISchedule(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"9:30AM", "Mon-Fri", "Europe/Berlin"}, "CRON_TZ=Europe/Berlin 30 9 * * 1-5"},
		{[]string{"17:00"}, "CRON_TZ=UTC 0 17 * * *"},
		{[]string{"8AM", "mon,wed,fri"}, "CRON_TZ=UTC 0 8 * * 1,3,5"},
		{[]string{"12:15pm", "America/New_York"}, "CRON_TZ=America/New_York 15 12 * * *"},
	}
	for _, tt := range tests {
		got, err := parseCLISchedule(tt.args, "UTC")
		if err != nil || got != tt.want {
			t.Errorf("parseCLISchedule(%q) = %q, %v; want %q", tt.args, got, err, tt.want)
		}
	}
	for _, bad := range [][]string{{}, {"25:00"}, {"9:30AM", "Someday"}, {"9:30AM", "Mars/Base"}, {"9", "Mon", "UTC", "x"}} {
		if got, err := parseCLISchedule(bad, "UTC"); err == nil {
			t.Errorf("parseCLISchedule(%q) = %q, accepted", bad, got)
		}
	}
	if got := humanSchedule("CRON_TZ=Europe/Berlin 30 8 * * 1-5"); got != "8:30AM Mon-Fri (Europe/Berlin)" {
		t.Errorf("humanSchedule = %q", got)
	}
	for d, want := range map[time.Duration]string{80 * time.Minute: "1h 20m", 5 * time.Minute: "5m", -time.Hour: "0m"} {
		if got := shortDuration(d); got != want {
			t.Errorf("shortDuration(%v) = %q, want %q", d, got, want)
		}
	}
	for s, want := range map[string]time.Duration{"8h": 8 * time.Hour, "90m": 90 * time.Minute, "2d": 48 * time.Hour} {
		if got, err := parseLongDuration(s); err != nil || got != want {
			t.Errorf("parseLongDuration(%q) = %v, %v", s, got, err)
		}
	}
	for _, bad := range []string{"", "0s", "-1h", "xd", "soon"} {
		if _, err := parseLongDuration(bad); err == nil {
			t.Errorf("parseLongDuration(%q) accepted", bad)
		}
	}
}
