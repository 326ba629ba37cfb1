package coderd

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/wgmesh/coder/database"
)

// Monotonic directions of a number parameter (coder_parameter's
// validation.monotonic).
const (
	monotonicIncreasing = "increasing"
	monotonicDecreasing = "decreasing"
)

// checkMonotonic refuses a change of a monotonic number parameter against
// its direction: an "increasing" parameter may only grow (or stay), a
// "decreasing" one only shrink. The error names the parameter, its
// direction, and the previous and new values.
func checkMonotonic(p database.TemplateVersionParameter, prev, next string) error {
	if p.ValidationMonotonic == "" || p.Type != "number" {
		return nil
	}
	oldN, err := strconv.ParseFloat(prev, 64)
	if err != nil {
		// The previous value was not a number (the template changed the
		// type): there is no order to keep.
		return nil
	}
	newN, err := strconv.ParseFloat(next, 64)
	if err != nil {
		return fmt.Errorf("parameter %q: value %q is not a number", p.Name, next)
	}
	switch p.ValidationMonotonic {
	case monotonicIncreasing:
		if newN < oldN {
			return fmt.Errorf("parameter %q is monotonic (increasing): the new value %s is less than the previous value %s", p.Name, next, prev)
		}
	case monotonicDecreasing:
		if newN > oldN {
			return fmt.Errorf("parameter %q is monotonic (decreasing): the new value %s is more than the previous value %s", p.Name, next, prev)
		}
	default:
		return fmt.Errorf("parameter %q: unknown monotonic direction %q (want increasing or decreasing)", p.Name, p.ValidationMonotonic)
	}
	return nil
}

// expandValidationError fills a template's custom validation message:
// {min} and {max} become the parameter's bounds (empty when unset) and
// {value} the refused value, as the Coder provider documents.
func expandValidationError(p database.TemplateVersionParameter, value string) string {
	bound := func(v int32, ok bool) string {
		if !ok {
			return ""
		}
		return strconv.FormatInt(int64(v), 10)
	}
	return strings.NewReplacer(
		"{min}", bound(p.ValidationMin.Int32, p.ValidationMin.Valid),
		"{max}", bound(p.ValidationMax.Int32, p.ValidationMax.Valid),
		"{value}", value,
	).Replace(p.ValidationError)
}
