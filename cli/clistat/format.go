package clistat

import (
	"fmt"
	"strconv"
	"strings"
)

// Prefix is a binary unit prefix for byte amounts.
type Prefix string

// Binary prefixes accepted by ParsePrefix.
const (
	PrefixNone Prefix = ""
	PrefixKibi Prefix = "Ki"
	PrefixMebi Prefix = "Mi"
	PrefixGibi Prefix = "Gi"
	PrefixTebi Prefix = "Ti"
)

// ParsePrefix accepts "", "Ki", "Mi", "Gi" or "Ti" (case-insensitive).
func ParsePrefix(s string) (Prefix, error) {
	for _, p := range []Prefix{PrefixNone, PrefixKibi, PrefixMebi, PrefixGibi, PrefixTebi} {
		if strings.EqualFold(s, string(p)) {
			return p, nil
		}
	}
	return "", fmt.Errorf("unknown prefix %q: use Ki, Mi, Gi or Ti", s)
}

func (p Prefix) factor() float64 {
	switch p {
	case PrefixKibi:
		return 1 << 10
	case PrefixMebi:
		return 1 << 20
	case PrefixGibi:
		return 1 << 30
	case PrefixTebi:
		return 1 << 40
	default:
		return 1
	}
}

// Text renders r for people, e.g. "0.25/2 cores (12%)" or "1.5/7.8 GiB (19%)";
// prefix scales byte amounts.
func (r Result) Text(prefix Prefix) string {
	used, total, unit := r.Used, r.Total, r.Unit
	if r.Unit == UnitBytes {
		f := prefix.factor()
		used, total = used/f, total/f
		unit = string(prefix) + "B"
	}
	return fmt.Sprintf("%s/%s %s (%s%%)", num(used), num(total), unit, strconv.FormatFloat(r.Percent(), 'f', 0, 64))
}

// num formats with up to 3 significant decimals and no trailing zeros.
func num(v float64) string {
	var s string
	switch {
	case v >= 100:
		s = strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10:
		s = strconv.FormatFloat(v, 'f', 1, 64)
	default:
		s = strconv.FormatFloat(v, 'f', 2, 64)
	}
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}
