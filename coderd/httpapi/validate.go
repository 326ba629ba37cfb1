package httpapi

import (
	"net/mail"
	"regexp"
	"strings"
)

var nameRe = regexp.MustCompile(`^[a-zA-Z0-9]+(?:-[a-zA-Z0-9]+)*$`)

// NameValid reports why name is not a valid name of a user, template or
// workspace, or "" when it is valid: 1-32 characters, letters, digits and
// single inner hyphens.
func NameValid(name string) string {
	switch {
	case name == "":
		return "is required"
	case len(name) > 32:
		return "must be at most 32 characters"
	case !nameRe.MatchString(name):
		return "must be alphanumeric with single hyphens between characters"
	}
	return ""
}

// UsernameValid reports why a username is invalid, or "" when it is valid:
// a valid name (NameValid) other than "me", which names the caller in paths.
func UsernameValid(name string) string {
	if d := NameValid(name); d != "" {
		return d
	}
	if strings.EqualFold(name, "me") {
		return `"me" is reserved`
	}
	return ""
}

// EmailValid reports why an email address is invalid, or "" when valid.
func EmailValid(email string) string {
	if email == "" {
		return "is required"
	}
	addr, err := mail.ParseAddress(email)
	if err != nil || addr.Address != email {
		return "must be a valid email address"
	}
	return ""
}

// PasswordValid reports why a password is too weak, or "" when acceptable.
func PasswordValid(password string) string {
	switch {
	case password == "":
		return "is required"
	case len(password) < 8:
		return "must be at least 8 characters"
	case len(password) > 64:
		return "must be at most 64 characters"
	}
	return ""
}
