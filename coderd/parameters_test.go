package coderd_test

import (
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/wgmesh/coder/coderd"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/database"
)

// TestResolveParametersMonotonic: a monotonic number parameter refuses a
// change against its direction on any build, naming the parameter and
// both values; a change along it, keeping the value, or an ephemeral
// parameter passes.
func TestResolveParametersMonotonic(t *testing.T) {
	t.Parallel()
	disk := func(dir string) database.TemplateVersionParameter {
		return database.TemplateVersionParameter{Name: "disk", Type: "number", Mutable: true, DefaultValue: "10", ValidationMonotonic: dir}
	}
	for _, tc := range []struct {
		name     string
		param    database.TemplateVersionParameter
		prev     string
		next     string
		wantErrs []string // substrings of the one validation error; nil = accepted
	}{
		{"increasing grows", disk("increasing"), "10", "20", nil},
		{"increasing same", disk("increasing"), "10", "10", nil},
		{"increasing shrinks", disk("increasing"), "20", "10", []string{`"disk"`, "increasing", "10", "20"}},
		{"decreasing shrinks", disk("decreasing"), "20", "10", nil},
		{"decreasing grows", disk("decreasing"), "10", "11", []string{`"disk"`, "decreasing", "11", "10"}},
		{"not monotonic", disk(""), "20", "1", nil},
		{"unknown direction", disk("sideways"), "1", "2", []string{"sideways"}},
		{"new value not a number", disk("increasing"), "1", "x", []string{"not a number"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			prev := []database.WorkspaceBuildParameter{{Name: "disk", Value: tc.prev}}
			out, errs := coderd.ResolveParameters([]database.TemplateVersionParameter{tc.param}, prev,
				[]codersdk.WorkspaceBuildParameter{{Name: "disk", Value: tc.next}})
			if tc.wantErrs == nil {
				if len(errs) != 0 || len(out) != 1 || out[0].Value != tc.next {
					t.Fatalf("refused: %v %v", errs, out)
				}
				return
			}
			if len(errs) != 1 || errs[0].Field != "disk" {
				t.Fatalf("want one error on disk, got %v (values %v)", errs, out)
			}
			for _, want := range tc.wantErrs {
				if !strings.Contains(errs[0].Detail, want) {
					t.Errorf("error %q lacks %q", errs[0].Detail, want)
				}
			}
		})
	}

	// Without a previous value (a new workspace) any value is a start.
	if _, errs := coderd.ResolveParameters([]database.TemplateVersionParameter{disk("increasing")}, nil,
		[]codersdk.WorkspaceBuildParameter{{Name: "disk", Value: "1"}}); len(errs) != 0 {
		t.Fatalf("first value refused: %v", errs)
	}
	// Not giving the parameter keeps the previous value: no change to refuse.
	out, errs := coderd.ResolveParameters([]database.TemplateVersionParameter{disk("increasing")},
		[]database.WorkspaceBuildParameter{{Name: "disk", Value: "30"}}, nil)
	if len(errs) != 0 || len(out) != 1 || out[0].Value != "30" {
		t.Fatalf("kept value: %v %v", out, errs)
	}
}

// TestResolveParametersValidationMessage: {min}, {max} and {value} in a
// template's validation message are expanded.
func TestResolveParametersValidationMessage(t *testing.T) {
	t.Parallel()
	p := database.TemplateVersionParameter{
		Name: "cpu", Type: "number", Mutable: true, DefaultValue: "2",
		ValidationMin: pgtype.Int4{Int32: 1, Valid: true}, ValidationMax: pgtype.Int4{Int32: 8, Valid: true},
		ValidationError: "cpu must be between {min} and {max}, not {value}",
	}
	_, errs := coderd.ResolveParameters([]database.TemplateVersionParameter{p}, nil, []codersdk.WorkspaceBuildParameter{{Name: "cpu", Value: "16"}})
	if len(errs) != 1 || !strings.Contains(errs[0].Detail, "cpu must be between 1 and 8, not 16") || strings.Contains(errs[0].Detail, "{") {
		t.Fatalf("errors %v", errs)
	}
	// An unset bound expands to nothing rather than staying a placeholder.
	p.ValidationMax = pgtype.Int4{}
	p.ValidationError = "at least {min}, at most {max}: {value}"
	_, errs = coderd.ResolveParameters([]database.TemplateVersionParameter{p}, nil, []codersdk.WorkspaceBuildParameter{{Name: "cpu", Value: "0"}})
	if len(errs) != 1 || !strings.Contains(errs[0].Detail, "at least 1, at most : 0") {
		t.Fatalf("errors %v", errs)
	}
}

// TestResolveParametersEphemeral: an ephemeral value is used by the build
// it is given to, and the next build goes back to the default instead of
// inheriting it.
func TestResolveParametersEphemeral(t *testing.T) {
	t.Parallel()
	params := []database.TemplateVersionParameter{
		{Name: "region", Type: "string", Mutable: true, DefaultValue: "eu"},
		{Name: "rebuild", Type: "bool", Mutable: true, DefaultValue: "false", Ephemeral: true},
	}
	first, errs := coderd.ResolveParameters(params, nil, []codersdk.WorkspaceBuildParameter{{Name: "region", Value: "us"}, {Name: "rebuild", Value: "true"}})
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	got := map[string]string{}
	for _, v := range first {
		got[v.Name] = v.Value
	}
	if got["region"] != "us" || got["rebuild"] != "true" {
		t.Fatalf("first build %v", got)
	}
	prev := make([]database.WorkspaceBuildParameter, 0, len(first))
	for _, v := range first {
		prev = append(prev, database.WorkspaceBuildParameter{Name: v.Name, Value: v.Value})
	}
	next, errs := coderd.ResolveParameters(params, prev, nil)
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	got = map[string]string{}
	for _, v := range next {
		got[v.Name] = v.Value
	}
	if got["region"] != "us" || got["rebuild"] != "false" {
		t.Fatalf("next build %v: the region is kept, the ephemeral value is not", got)
	}
}
