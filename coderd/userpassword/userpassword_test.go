package userpassword

import (
	"errors"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

func TestHashCompare(t *testing.T) {
	t.Parallel()
	hashed, err := Hash("correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		hashed   []byte
		password string
		want     bool
	}{
		{"match", hashed, "correct horse battery", true},
		{"mismatch", hashed, "wrong", false},
		{"empty hash never matches", nil, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := Compare(tc.hashed, tc.password)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("Compare = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestDummyHashDoesFullWork checks the dummy hash used for unknown users is
// a well-formed bcrypt hash at the same cost as real ones: comparing
// against it runs the full key derivation (a malformed hash would fail
// fast and reveal that the user does not exist).
func TestDummyHashDoesFullWork(t *testing.T) {
	t.Parallel()
	cost, err := bcrypt.Cost(dummyHash)
	if err != nil {
		t.Fatalf("dummy hash is not a bcrypt hash: %v", err)
	}
	if cost != Cost {
		t.Fatalf("dummy hash cost = %d, want %d", cost, Cost)
	}
	err = bcrypt.CompareHashAndPassword(dummyHash, []byte("anything"))
	if !errors.Is(err, bcrypt.ErrMismatchedHashAndPassword) {
		t.Fatalf("compare against dummy hash = %v, want a mismatch after full comparison", err)
	}
	if CompareDummy("anything") {
		t.Fatal("CompareDummy reported a match")
	}
}
