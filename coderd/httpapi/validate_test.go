package httpapi_test

import (
	"strings"
	"testing"

	"github.com/wgmesh/coder/coderd/httpapi"
)

func TestNameValid(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name         string
		nameDetail   string // NameValid
		usernameDiff string // UsernameValid, when it differs
	}{
		{"dev", "", ""},
		{"my-workspace-2", "", ""},
		{strings.Repeat("a", 32), "", ""},
		{"me", "", `"me" is reserved`},
		{"ME", "", `"me" is reserved`},
		{"", "is required", ""},
		{strings.Repeat("a", 33), "invalid", ""},
		{"-dev", "invalid", ""},
		{"dev-", "invalid", ""},
		{"my--dev", "invalid", ""},
		{"my dev", "invalid", ""},
		{"dév", "invalid", ""},
	}
	for _, c := range cases {
		// The wording of the rule lives in codersdk (TestNameRules); here:
		// exact details where they are fixed, any detail for "invalid".
		check := func(fn string, got, want string) {
			if want == "invalid" {
				if got == "" {
					t.Errorf("%s(%q) accepted it, want a refusal", fn, c.name)
				}
				return
			}
			if got != want {
				t.Errorf("%s(%q) = %q, want %q", fn, c.name, got, want)
			}
		}
		check("NameValid", httpapi.NameValid(c.name), c.nameDetail)
		want := c.nameDetail
		if c.usernameDiff != "" {
			want = c.usernameDiff
		}
		check("UsernameValid", httpapi.UsernameValid(c.name), want)
	}
}
