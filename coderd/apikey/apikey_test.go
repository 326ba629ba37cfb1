package apikey_test

import (
	"strings"
	"testing"

	"github.com/wgmesh/coder/coderd/apikey"
)

func TestGenerateParse(t *testing.T) {
	t.Parallel()
	key, err := apikey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	id, secret, err := apikey.Parse(key.Token())
	if err != nil {
		t.Fatalf("parse generated key: %v", err)
	}
	if id != key.ID || secret != key.Secret {
		t.Fatalf("parse = %q,%q want %q,%q", id, secret, key.ID, key.Secret)
	}
	if !apikey.SecretMatches(secret, key.HashedSecret) {
		t.Fatal("secret does not match its own hash")
	}
	if apikey.SecretMatches(strings.Repeat("a", apikey.SecretLength), key.HashedSecret) {
		t.Fatal("other secret matches")
	}
	other, err := apikey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	if other.ID == key.ID || other.Secret == key.Secret {
		t.Fatal("two generated keys share parts")
	}
}

func TestParseRejects(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, token string }{
		{"empty", ""},
		{"no separator", strings.Repeat("a", 33)},
		{"short id", "abc-" + strings.Repeat("b", apikey.SecretLength)},
		{"short secret", strings.Repeat("a", apikey.IDLength) + "-abc"},
		{"long secret", strings.Repeat("a", apikey.IDLength) + "-" + strings.Repeat("b", apikey.SecretLength+1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, _, err := apikey.Parse(tc.token); err == nil {
				t.Fatalf("Parse(%q) succeeded", tc.token)
			}
		})
	}
}
