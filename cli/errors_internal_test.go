package cli

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/wgmesh/coder/codersdk"
)

// TestWriteErrorPrintsEachLineOnce: the API's detail often repeats its first
// validation; the CLI prints that line once, and the other validations
// after it.
func TestWriteErrorPrintsEachLineOnce(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{
			name: "detail repeats the only validation",
			err: &codersdk.Error{
				Message:     "Invalid rich parameter values: disk.",
				Detail:      "disk: too big",
				Validations: []codersdk.ValidationError{{Field: "disk", Detail: "too big"}},
			},
			want: "error: Invalid rich parameter values: disk.\ndisk: too big\n",
		},
		{
			name: "second validation still printed",
			err: &codersdk.Error{
				Message: "Invalid rich parameter values: disk, region.",
				Detail:  "disk: too big",
				Validations: []codersdk.ValidationError{
					{Field: "disk", Detail: "too big"},
					{Field: "region", Detail: "required"},
				},
			},
			want: "error: Invalid rich parameter values: disk, region.\ndisk: too big\n  region: required\n",
		},
		{
			name: "plain error",
			err:  errors.New("boom"),
			want: "error: boom\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var b bytes.Buffer
			writeError(&b, tc.err)
			if got := b.String(); got != tc.want {
				t.Fatalf("writeError printed\n%q\nwant\n%q", got, tc.want)
			}
		})
	}
}

// TestUpdateAlwaysPromptWithoutTerminal: --always-prompt on a closed stdin
// says that it needs a terminal instead of claiming values are missing.
func TestUpdateAlwaysPromptWithoutTerminal(t *testing.T) {
	t.Parallel()
	r := newRoot(Invocation{Stdin: strings.NewReader("")})
	params := []codersdk.TemplateVersionParameter{{Name: "disk", Mutable: true}}
	prev := []codersdk.WorkspaceBuildParameter{{Name: "disk", Value: "10"}}
	_, err := r.updateParameterValues(params, prev, nil, true)
	if err == nil || !strings.Contains(err.Error(), "--always-prompt needs a terminal") || !strings.Contains(err.Error(), "--parameter disk=VALUE") {
		t.Fatalf("err = %v, want the terminal requirement and the flag to pass", err)
	}
	// Without --always-prompt nothing needs asking: the previous value stays.
	out, err := r.updateParameterValues(params, prev, nil, false)
	if err != nil || len(out) != 0 {
		t.Fatalf("without --always-prompt: out=%v err=%v, want no values and no error", out, err)
	}
}
