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
		{strings.Repeat("a", 33), "must be at most 32 characters", ""},
		{"-dev", "must be alphanumeric with single hyphens between characters", ""},
		{"dev-", "must be alphanumeric with single hyphens between characters", ""},
		{"my--dev", "must be alphanumeric with single hyphens between characters", ""},
		{"my dev", "must be alphanumeric with single hyphens between characters", ""},
		{"dév", "must be alphanumeric with single hyphens between characters", ""},
	}
	for _, c := range cases {
		if got := httpapi.NameValid(c.name); got != c.nameDetail {
			t.Errorf("NameValid(%q) = %q, want %q", c.name, got, c.nameDetail)
		}
		want := c.nameDetail
		if c.usernameDiff != "" {
			want = c.usernameDiff
		}
		if got := httpapi.UsernameValid(c.name); got != want {
			t.Errorf("UsernameValid(%q) = %q, want %q", c.name, got, want)
		}
	}
}
