package statecrypt_test

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/wgmesh/coder/coderd/statecrypt"
)

func newKey(t *testing.T) []byte {
	t.Helper()
	s, err := statecrypt.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	k, err := statecrypt.ParseKey(s)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func keyring(t *testing.T, current []byte, old ...[]byte) *statecrypt.Keyring {
	t.Helper()
	k, err := statecrypt.NewKeyring(current, old...)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestRoundTripAndRotation(t *testing.T) {
	t.Parallel()
	k1, k2, k3 := newKey(t), newKey(t), newKey(t)
	ws, other := uuid.New(), uuid.New()
	state := []byte(`{"resources":[{"type":"coder_agent","instances":[{"attributes":{"token":"5d9c2c4e-secret"}}]}]}`)

	sealed, err := keyring(t, k1).Encrypt(state, ws)
	if err != nil {
		t.Fatal(err)
	}
	if !statecrypt.IsEncrypted(sealed) || statecrypt.StoredKeyID(sealed) != statecrypt.KeyID(k1) || bytes.Contains(sealed, []byte("secret")) {
		t.Fatalf("sealed value: %q", sealed)
	}
	again, _ := keyring(t, k1).Encrypt(state, ws)
	if bytes.Equal(again, sealed) {
		t.Fatal("two encryptions of the same state are identical (nonce reuse)")
	}

	rotated := keyring(t, k2, k1)
	for _, tc := range []struct {
		name    string
		keys    *statecrypt.Keyring
		stored  []byte
		ws      uuid.UUID
		want    []byte
		wantErr error
	}{
		{"same key", keyring(t, k1), sealed, ws, state, nil},
		{"old key after rotation", rotated, sealed, ws, state, nil},
		{"legacy plaintext", rotated, state, ws, state, nil},
		{"empty", rotated, nil, ws, nil, nil},
		{"key not configured", keyring(t, k3), sealed, ws, nil, statecrypt.ErrUnknownKey},
		{"another workspace's state", rotated, sealed, other, nil, statecrypt.ErrCorrupt},
		{"tampered", rotated, append(append([]byte(nil), sealed[:len(sealed)-1]...), sealed[len(sealed)-1]^1), ws, nil, statecrypt.ErrCorrupt},
		{"truncated", rotated, sealed[:len(statecrypt.Prefix)+20], ws, nil, statecrypt.ErrCorrupt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.keys.Decrypt(tc.stored, tc.ws)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || got != nil {
					t.Fatalf("want %v, got %q %v", tc.wantErr, got, err)
				}
				return
			}
			if err != nil || !bytes.Equal(got, tc.want) {
				t.Fatalf("got %q %v", got, err)
			}
		})
	}
	// The unknown-key error names the key and the flag that fixes it.
	_, err = keyring(t, k3).Decrypt(sealed, ws)
	if !strings.Contains(err.Error(), statecrypt.KeyID(k1)) || !strings.Contains(err.Error(), "--state-encryption-old-keys") {
		t.Fatalf("unknown key error: %v", err)
	}
	// New writes after a rotation use the new key.
	resealed, err := rotated.Encrypt(state, ws)
	if err != nil || statecrypt.StoredKeyID(resealed) != statecrypt.KeyID(k2) {
		t.Fatalf("write after rotation: key %q %v", statecrypt.StoredKeyID(resealed), err)
	}
	if _, err := keyring(t, k1).Decrypt(resealed, ws); !errors.Is(err, statecrypt.ErrUnknownKey) {
		t.Fatalf("the old key alone opened a value sealed with the new key: %v", err)
	}
}

func TestParseKey(t *testing.T) {
	t.Parallel()
	raw := bytes.Repeat([]byte{0xab}, statecrypt.KeySize)
	for _, tc := range []struct {
		name, in string
		ok       bool
	}{
		{"base64", base64.StdEncoding.EncodeToString(raw), true},
		{"base64 url raw", base64.RawURLEncoding.EncodeToString(raw), true},
		{"hex with newline", hex.EncodeToString(raw) + "\n", true},
		{"empty", "  ", false},
		{"short", base64.StdEncoding.EncodeToString(raw[:16]), false},
		{"not encoded", "correct horse battery staple", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := statecrypt.ParseKey(tc.in)
			if tc.ok != (err == nil) {
				t.Fatalf("ParseKey(%q): %v", tc.in, err)
			}
			if tc.ok && !bytes.Equal(k, raw) {
				t.Fatalf("ParseKey(%q) = %x", tc.in, k)
			}
		})
	}
	if _, err := statecrypt.NewKeyring(raw[:10]); err == nil {
		t.Fatal("NewKeyring accepted a 10-byte key")
	}
}
