// Package apikey generates and parses API keys and finds them in
// requests. A key is "<id>-<secret>": a 10-character ID (the database
// primary key) and a 22-character secret, both random. Only the SHA-256 of
// the secret is stored. It needs no database, so the workspace apps proxy
// can use it too.
package apikey

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net/http"
	"strings"

	"github.com/wgmesh/coder/codersdk"
)

const (
	// IDLength is the length of a key ID.
	IDLength = 10
	// SecretLength is the length of a key secret.
	SecretLength = 22
)

const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

// Key is a freshly generated API key.
type Key struct {
	// ID is stored in the database and is not secret.
	ID string
	// Secret is shown to the user once and never stored.
	Secret string
	// HashedSecret is SHA-256(Secret), the stored form.
	HashedSecret []byte
}

// Token returns the full key string "<id>-<secret>".
func (k Key) Token() string { return k.ID + "-" + k.Secret }

// Generate returns a new random key.
func Generate() (Key, error) {
	id, err := randomString(IDLength)
	if err != nil {
		return Key{}, fmt.Errorf("generate key id: %w", err)
	}
	secret, err := randomString(SecretLength)
	if err != nil {
		return Key{}, fmt.Errorf("generate key secret: %w", err)
	}
	return Key{ID: id, Secret: secret, HashedSecret: HashSecret(secret)}, nil
}

// RandomString returns n characters drawn uniformly from [a-zA-Z0-9] using
// crypto/rand.
func RandomString(n int) (string, error) { return randomString(n) }

func randomString(n int) (string, error) {
	const maxByte = 256 - (256 % len(alphabet)) // reject bytes that would bias the result
	out := make([]byte, 0, n)
	buf := make([]byte, n*2)
	for len(out) < n {
		if _, err := rand.Read(buf); err != nil {
			return "", fmt.Errorf("read random: %w", err)
		}
		for _, b := range buf {
			if int(b) >= maxByte {
				continue
			}
			out = append(out, alphabet[int(b)%len(alphabet)])
			if len(out) == n {
				break
			}
		}
	}
	return string(out), nil
}

// HashSecret returns the stored form of a secret.
func HashSecret(secret string) []byte {
	sum := sha256.Sum256([]byte(secret))
	return sum[:]
}

// HashAgentToken returns the stored form of a workspace agent token (the
// coder_agent resource's token): its SHA-256, the same as HashSecret. coderd
// stores it when a build completes and looks agents up by it.
func HashAgentToken(token string) []byte { return HashSecret(token) }

// Parse splits a key string into ID and secret, checking their shape.
func Parse(token string) (id, secret string, err error) {
	id, secret, ok := strings.Cut(token, "-")
	if !ok {
		return "", "", fmt.Errorf("invalid API key format: want <id>-<secret>")
	}
	if len(id) != IDLength {
		return "", "", fmt.Errorf("invalid API key format: id must be %d characters", IDLength)
	}
	if len(secret) != SecretLength {
		return "", "", fmt.Errorf("invalid API key format: secret must be %d characters", SecretLength)
	}
	return id, secret, nil
}

// SecretMatches compares secret with a stored hash in constant time.
func SecretMatches(secret string, hashed []byte) bool {
	return subtle.ConstantTimeCompare(HashSecret(secret), hashed) == 1
}

// FromRequest returns the API key a request carries, or "": the
// Coder-Session-Token header first, then the session cookie. These are
// the only places a user's key is read from; it is never taken from the
// URL, where it would end up in logs and Referer headers (browsers send
// the cookie on websocket upgrades too).
func FromRequest(r *http.Request) string {
	if v := strings.TrimSpace(r.Header.Get(codersdk.SessionTokenHeader)); v != "" {
		return v
	}
	if c, err := r.Cookie(codersdk.SessionTokenCookie); err == nil && c.Value != "" {
		return c.Value
	}
	return ""
}
