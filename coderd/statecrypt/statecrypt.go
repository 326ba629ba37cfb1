// Package statecrypt encrypts the Terraform state coderd stores per
// workspace build (it holds every agent token and whatever secrets the
// template's resources keep) with AES-256-GCM.
//
// A stored value is either legacy plaintext (anything that does not start
// with Prefix; it is read as is and encrypted on the next write) or
//
//	Prefix + keyID + ":" + nonce (12 bytes) + ciphertext-with-tag
//
// where keyID is the hex fingerprint of the key that sealed it (KeyID). The
// workspace ID is the additional authenticated data, so one workspace's
// state cannot be replayed into another's row. A Keyring has one current
// key (every write) and any number of old keys (read only): rotating is
// putting a new current key in place and moving the previous one to the
// old keys.
package statecrypt

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"
)

// Prefix starts every encrypted value ("coder state, encrypted, format 1").
const Prefix = "coder-state-enc1:"

// KeySize is the size of a key in bytes (AES-256).
const KeySize = 32

// keyIDLen is the length of a key ID in hex digits.
const keyIDLen = 16

// ErrUnknownKey is wrapped by Decrypt when the value was sealed with a key
// the keyring does not hold.
var ErrUnknownKey = errors.New("encrypted with a key that is not configured")

// ErrCorrupt is wrapped by Decrypt when a value does not authenticate: it
// was changed, truncated, or sealed for another workspace.
var ErrCorrupt = errors.New("does not authenticate")

// GenerateKey returns a new random key, base64-encoded as ParseKey reads it.
func GenerateKey() (string, error) {
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		return "", fmt.Errorf("generate state encryption key: %w", err)
	}
	return base64.StdEncoding.EncodeToString(k), nil
}

// ParseKey decodes a key written as base64 (standard or URL alphabet,
// padded or not) or as hex; it must be 32 bytes. Surrounding space is
// ignored.
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("empty state encryption key")
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil && len(b) == KeySize {
			return b, nil
		}
	}
	if b, err := hex.DecodeString(s); err == nil && len(b) == KeySize {
		return b, nil
	}
	return nil, fmt.Errorf("invalid state encryption key: want %d bytes, base64 or hex encoded (generate one with `openssl rand -base64 32`)", KeySize)
}

// KeyID returns the fingerprint that names key in stored values: the first
// 8 bytes of SHA-256("coder-state-key\x00" || key), in hex. It reveals
// nothing about the key.
func KeyID(key []byte) string {
	h := sha256.New()
	h.Write([]byte("coder-state-key\x00"))
	h.Write(key)
	return hex.EncodeToString(h.Sum(nil))[:keyIDLen]
}

// Keyring seals with its current key and opens with any of its keys. It is
// safe for concurrent use.
type Keyring struct {
	currentID string
	aeads     map[string]cipher.AEAD
}

// NewKeyring returns a keyring that writes with current and reads with
// current and old. Repeated keys are allowed (and ignored).
func NewKeyring(current []byte, old ...[]byte) (*Keyring, error) {
	k := &Keyring{aeads: map[string]cipher.AEAD{}}
	for i, key := range append([][]byte{current}, old...) {
		if len(key) != KeySize {
			return nil, fmt.Errorf("state encryption key %d: %d bytes, want %d", i, len(key), KeySize)
		}
		block, err := aes.NewCipher(key)
		if err != nil {
			return nil, fmt.Errorf("state encryption key %d: %w", i, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("state encryption key %d: %w", i, err)
		}
		k.aeads[KeyID(key)] = aead
	}
	k.currentID = KeyID(current)
	return k, nil
}

// CurrentKeyID is the ID of the key new values are sealed with.
func (k *Keyring) CurrentKeyID() string { return k.currentID }

// KeyIDs returns the IDs of every key the keyring opens values with.
func (k *Keyring) KeyIDs() []string {
	ids := make([]string, 0, len(k.aeads))
	for id := range k.aeads {
		ids = append(ids, id)
	}
	return ids
}

// IsEncrypted reports whether a stored value is in the encrypted format.
func IsEncrypted(stored []byte) bool { return bytes.HasPrefix(stored, []byte(Prefix)) }

// StoredKeyID returns the key ID of an encrypted value ("" for plaintext).
func StoredKeyID(stored []byte) string {
	if !IsEncrypted(stored) || len(stored) < len(Prefix)+keyIDLen+1 {
		return ""
	}
	return string(stored[len(Prefix) : len(Prefix)+keyIDLen])
}

// Encrypt seals the state of workspaceID with the current key. Empty state
// (none yet, or a deleted workspace's) stays empty.
func (k *Keyring) Encrypt(state []byte, workspaceID uuid.UUID) ([]byte, error) {
	if len(state) == 0 {
		return state, nil
	}
	aead := k.aeads[k.currentID]
	header := Prefix + k.currentID + ":"
	out := make([]byte, len(header)+aead.NonceSize(), len(header)+aead.NonceSize()+len(state)+aead.Overhead())
	copy(out, header)
	nonce := out[len(header):]
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("state encryption nonce: %w", err)
	}
	return aead.Seal(out, nonce, state, workspaceID[:]), nil
}

// Decrypt opens a stored value of workspaceID. Plaintext (legacy) values
// are returned as they are. A value sealed with a key the keyring lacks
// fails with ErrUnknownKey, one that does not authenticate with ErrCorrupt;
// neither ever yields empty state in place of the real one.
func (k *Keyring) Decrypt(stored []byte, workspaceID uuid.UUID) ([]byte, error) {
	if !IsEncrypted(stored) {
		return stored, nil
	}
	rest := stored[len(Prefix):]
	if len(rest) < keyIDLen+1 || rest[keyIDLen] != ':' {
		return nil, fmt.Errorf("terraform state: malformed encrypted header: %w", ErrCorrupt)
	}
	id := string(rest[:keyIDLen])
	aead, ok := k.aeads[id]
	if !ok {
		return nil, fmt.Errorf("terraform state was %w (key ID %s; this server has %s): pass that key in --state-encryption-old-keys ($CODER_STATE_ENCRYPTION_OLD_KEYS)",
			ErrUnknownKey, id, strings.Join(k.KeyIDs(), ", "))
	}
	body := rest[keyIDLen+1:]
	if len(body) < aead.NonceSize()+aead.Overhead() {
		return nil, fmt.Errorf("terraform state (key ID %s) is truncated: %w", id, ErrCorrupt)
	}
	plain, err := aead.Open(nil, body[:aead.NonceSize()], body[aead.NonceSize():], workspaceID[:])
	if err != nil {
		return nil, fmt.Errorf("terraform state (key ID %s) %w: it was modified or belongs to another workspace", id, ErrCorrupt)
	}
	return plain, nil
}
