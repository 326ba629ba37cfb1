package agentscripts

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Schedule is a parsed cron expression.
type Schedule struct {
	seconds, minutes, hours, dom, months, dow uint64
	domAny, dowAny                            bool
}

type cronField struct {
	min, max int
	names    map[string]int
}

var (
	fieldSecond = cronField{min: 0, max: 59}
	fieldMinute = cronField{min: 0, max: 59}
	fieldHour   = cronField{min: 0, max: 23}
	fieldDom    = cronField{min: 1, max: 31}
	fieldMonth  = cronField{min: 1, max: 12, names: map[string]int{
		"jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6,
		"jul": 7, "aug": 8, "sep": 9, "oct": 10, "nov": 11, "dec": 12}}
	fieldDow = cronField{min: 0, max: 7, names: map[string]int{
		"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}}
)

var cronMacros = map[string]string{
	"@yearly":   "0 0 1 1 *",
	"@annually": "0 0 1 1 *",
	"@monthly":  "0 0 1 * *",
	"@weekly":   "0 0 * * 0",
	"@daily":    "0 0 * * *",
	"@midnight": "0 0 * * *",
	"@hourly":   "0 * * * *",
}

// ParseCron parses a standard 5-field cron expression (minute hour
// day-of-month month day-of-week), a 6-field one with a leading seconds
// field, or one of the macros @yearly, @monthly, @weekly, @daily and
// @hourly. Fields accept *, numbers, names (jan, mon), ranges (1-5), lists
// (1,3,5) and steps (*/15, 0-30/10). As in cron(8), when both day-of-month
// and day-of-week are restricted, a day matching either runs the job.
func ParseCron(expr string) (*Schedule, error) {
	expr = strings.TrimSpace(expr)
	if m, ok := cronMacros[strings.ToLower(expr)]; ok {
		expr = m
	}
	fields := strings.Fields(expr)
	switch len(fields) {
	case 5:
		fields = append([]string{"0"}, fields...)
	case 6:
	default:
		return nil, fmt.Errorf("cron %q: want 5 or 6 fields, got %d", expr, len(fields))
	}
	s := &Schedule{}
	var err error
	specs := []struct {
		dst *uint64
		f   cronField
	}{
		{&s.seconds, fieldSecond}, {&s.minutes, fieldMinute}, {&s.hours, fieldHour},
		{&s.dom, fieldDom}, {&s.months, fieldMonth}, {&s.dow, fieldDow},
	}
	for i, spec := range specs {
		if *spec.dst, err = parseCronField(fields[i], spec.f); err != nil {
			return nil, fmt.Errorf("cron %q field %d: %w", expr, i+1, err)
		}
	}
	if s.dow&(1<<7) != 0 { // 7 is Sunday too
		s.dow |= 1
	}
	s.domAny = fields[3] == "*" || fields[3] == "?"
	s.dowAny = fields[5] == "*" || fields[5] == "?"
	return s, nil
}

func parseCronField(text string, f cronField) (uint64, error) {
	var bits uint64
	for _, part := range strings.Split(text, ",") {
		rng, stepText, hasStep := strings.Cut(part, "/")
		step := 1
		if hasStep {
			n, err := strconv.Atoi(stepText)
			if err != nil || n <= 0 {
				return 0, fmt.Errorf("bad step %q", stepText)
			}
			step = n
		}
		lo, hi := f.min, f.max
		switch {
		case rng == "*" || rng == "?":
		case strings.Contains(rng, "-"):
			a, b, _ := strings.Cut(rng, "-")
			var err error
			if lo, err = f.value(a); err != nil {
				return 0, err
			}
			if hi, err = f.value(b); err != nil {
				return 0, err
			}
			if lo > hi {
				return 0, fmt.Errorf("bad range %q", rng)
			}
		default:
			v, err := f.value(rng)
			if err != nil {
				return 0, err
			}
			lo = v
			if !hasStep {
				hi = v
			}
		}
		for v := lo; v <= hi; v += step {
			bits |= 1 << uint(v)
		}
	}
	return bits, nil
}

func (f cronField) value(s string) (int, error) {
	if v, ok := f.names[strings.ToLower(s)]; ok {
		return v, nil
	}
	v, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("bad value %q", s)
	}
	if v < f.min || v > f.max {
		return 0, fmt.Errorf("value %d out of range %d-%d", v, f.min, f.max)
	}
	return v, nil
}

func (s *Schedule) dayMatches(t time.Time) bool {
	domOK := s.dom&(1<<uint(t.Day())) != 0
	dowOK := s.dow&(1<<uint(t.Weekday())) != 0
	switch {
	case s.domAny && s.dowAny:
		return true
	case s.domAny:
		return dowOK
	case s.dowAny:
		return domOK
	default:
		return domOK || dowOK
	}
}

// Next returns the first activation strictly after t (in t's location), or
// the zero time when none exists within five years.
func (s *Schedule) Next(t time.Time) time.Time {
	t = t.Truncate(time.Second).Add(time.Second)
	limit := t.AddDate(5, 0, 0)
	for t.Before(limit) {
		if s.months&(1<<uint(t.Month())) == 0 {
			t = time.Date(t.Year(), t.Month()+1, 1, 0, 0, 0, 0, t.Location())
			continue
		}
		if !s.dayMatches(t) {
			t = time.Date(t.Year(), t.Month(), t.Day()+1, 0, 0, 0, 0, t.Location())
			continue
		}
		if s.hours&(1<<uint(t.Hour())) == 0 {
			t = time.Date(t.Year(), t.Month(), t.Day(), t.Hour()+1, 0, 0, 0, t.Location())
			continue
		}
		if s.minutes&(1<<uint(t.Minute())) == 0 {
			t = time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute()+1, 0, 0, t.Location())
			continue
		}
		if s.seconds&(1<<uint(t.Second())) == 0 {
			t = t.Add(time.Second)
			continue
		}
		return t
	}
	return time.Time{}
}
