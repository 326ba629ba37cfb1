// Package userpassword hashes and verifies user passwords with bcrypt.
package userpassword

import (
	"errors"
	"fmt"

	"golang.org/x/crypto/bcrypt"
)

// Cost is the bcrypt cost used for new hashes.
const Cost = bcrypt.DefaultCost

// dummyHash is a bcrypt hash of a random string at Cost. Comparing against
// it takes as long as comparing against a real hash, so a login for an
// unknown user costs the same time as one for a known user.
var dummyHash = []byte("$2a$10$7yuBmibjhgHNWP7fe8zIfeBfPGWOJ2AtptY7f/FYS2c2uqZZZZ73i")

// Hash returns the bcrypt hash of password.
func Hash(password string) ([]byte, error) {
	hashed, err := bcrypt.GenerateFromPassword([]byte(password), Cost)
	if err != nil {
		return nil, fmt.Errorf("hash password: %w", err)
	}
	return hashed, nil
}

// Compare reports whether password matches hashed. An empty hash (a user
// that cannot log in with a password) never matches, but a comparison is
// still made against a dummy hash so the time spent does not tell it apart.
func Compare(hashed []byte, password string) (bool, error) {
	if len(hashed) == 0 {
		_ = bcrypt.CompareHashAndPassword(dummyHash, []byte(password))
		return false, nil
	}
	err := bcrypt.CompareHashAndPassword(hashed, []byte(password))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, bcrypt.ErrMismatchedHashAndPassword):
		return false, nil
	default:
		return false, fmt.Errorf("compare password: %w", err)
	}
}

// CompareDummy runs a comparison against the dummy hash and reports false.
// Use it when the user does not exist.
func CompareDummy(password string) bool {
	_ = bcrypt.CompareHashAndPassword(dummyHash, []byte(password))
	return false
}
