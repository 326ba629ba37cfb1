package httpapi

import (
	"net/mail"
	"regexp"
	"strings"
)

var usernameRe = regexp.MustCompile(`^[a-zA-Z0-9]+(?:-[a-zA-Z0-9]+)*$`)

// UsernameValid reports why a username is invalid, or "" when it is valid:
// 1-32 characters, letters, digits and single inner hyphens.
func UsernameValid(name string) string {
	switch {
	case name == "":
		return "is required"
	case len(name) > 32:
		return "must be at most 32 characters"
	case !usernameRe.MatchString(name):
		return "must be alphanumeric with single hyphens between characters"
	case strings.EqualFold(name, "me"):
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
