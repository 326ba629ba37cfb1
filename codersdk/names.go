package codersdk

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/google/uuid"
)

// MaxNameLength bounds template, workspace and user names.
const MaxNameLength = 32

// nameRE is the shape of template, workspace and user names: letters and
// digits in runs joined by single hyphens.
var nameRE = regexp.MustCompile(`^[a-zA-Z0-9]+(?:-[a-zA-Z0-9]+)*$`)

// NameValid reports why name is not a valid template or workspace name, or
// "" when it is. coderd validates requests with it and the CLI checks
// arguments with it before they become part of an API path.
func NameValid(name string) string {
	switch {
	case name == "":
		return "is required"
	case len(name) > MaxNameLength || !nameRE.MatchString(name):
		return fmt.Sprintf("must be at most %d letters, digits and single hyphens, starting and ending with a letter or digit", MaxNameLength)
	}
	return ""
}

// UsernameValid reports why name is not a valid username, or "" when it is:
// the NameValid shape, and not the reserved "me".
func UsernameValid(name string) string {
	switch {
	case name == "":
		return "is required"
	case len(name) > MaxNameLength:
		return fmt.Sprintf("must be at most %d characters", MaxNameLength)
	case !nameRE.MatchString(name):
		return "must be alphanumeric with single hyphens between characters"
	case strings.EqualFold(name, Me):
		return `"me" is reserved`
	}
	return ""
}

// UserRefValid reports why ref cannot name a user in an API path ("me", a
// username or a user ID), or "" when it can.
func UserRefValid(ref string) string {
	if ref == Me {
		return ""
	}
	if _, err := uuid.Parse(ref); err == nil {
		return ""
	}
	return UsernameValid(ref)
}
