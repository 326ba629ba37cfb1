package httpapi

import (
	"net/mail"

	"github.com/wgmesh/coder/codersdk"
)

// NameValid reports why name is not a valid name of a user, template or
// workspace, or "" when it is valid (codersdk.NameValid: the rule the CLI
// checks arguments with).
func NameValid(name string) string { return codersdk.NameValid(name) }

// UsernameValid reports why a username is invalid, or "" when it is valid:
// 1-32 characters, letters, digits and single inner hyphens, not "me". The
// rule lives in codersdk so the CLI checks arguments with the same rule.
func UsernameValid(name string) string { return codersdk.UsernameValid(name) }

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
