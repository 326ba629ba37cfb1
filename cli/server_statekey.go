package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/wgmesh/coder/coderd/statecrypt"
)

// Environment variables of the state encryption flags.
const (
	EnvStateEncryptionKey     = "CODER_STATE_ENCRYPTION_KEY"
	EnvStateEncryptionOldKeys = "CODER_STATE_ENCRYPTION_OLD_KEYS"
)

// StateKeyFile is the name of the generated state encryption key in the
// server's config directory.
const StateKeyFile = "state-encryption-key"

// stateKeyring builds the keyring of the stored Terraform state: the key
// from --state-encryption-key, or else the one in <config-dir>/
// state-encryption-key (generated, mode 0600, on first start), plus the
// --state-encryption-old-keys that still decrypt. Without either a key or a
// config directory it uses a key that lives only as long as the process
// (and says so in the log).
func stateKeyring(cfg *ServerConfig, logger *slog.Logger) (*statecrypt.Keyring, error) {
	var current []byte
	switch {
	case strings.TrimSpace(cfg.StateEncryptionKey) != "":
		k, err := statecrypt.ParseKey(cfg.StateEncryptionKey)
		if err != nil {
			return nil, fmt.Errorf("--state-encryption-key: %w", err)
		}
		current = k
	case cfg.ConfigDir != "":
		k, err := loadOrCreateStateKey(filepath.Join(cfg.ConfigDir, StateKeyFile), logger)
		if err != nil {
			return nil, err
		}
		current = k
	default:
		raw, err := statecrypt.GenerateKey()
		if err != nil {
			return nil, err
		}
		current, _ = statecrypt.ParseKey(raw)
		logger.Warn("no --state-encryption-key and no config directory: Terraform state is encrypted with a key that is lost when the server stops")
	}
	var old [][]byte
	for i, s := range cfg.StateEncryptionOldKeys {
		if strings.TrimSpace(s) == "" {
			continue
		}
		k, err := statecrypt.ParseKey(s)
		if err != nil {
			return nil, fmt.Errorf("--state-encryption-old-keys entry %d: %w", i+1, err)
		}
		old = append(old, k)
	}
	kr, err := statecrypt.NewKeyring(current, old...)
	if err != nil {
		return nil, err
	}
	logger.Info("terraform state encryption", "key_id", kr.CurrentKeyID(), "old_keys", len(old))
	return kr, nil
}

// loadOrCreateStateKey reads the key file, or creates it (0600, in a 0700
// directory) with a new key when it does not exist.
func loadOrCreateStateKey(path string, logger *slog.Logger) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err == nil {
		k, err := statecrypt.ParseKey(string(data))
		if err != nil {
			return nil, fmt.Errorf("state encryption key file %s: %w", path, err)
		}
		return k, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read state encryption key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create config directory: %w", err)
	}
	raw, err := statecrypt.GenerateKey()
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		// Another server on this config directory created it first.
		return loadOrCreateStateKey(path, logger)
	}
	if err != nil {
		return nil, fmt.Errorf("create state encryption key file: %w", err)
	}
	_, werr := f.WriteString(raw + "\n")
	if err := errors.Join(werr, f.Sync(), f.Close()); err != nil {
		_ = os.Remove(path)
		return nil, fmt.Errorf("write state encryption key file: %w", err)
	}
	logger.Warn("generated a Terraform state encryption key; back it up (without it no workspace can be stopped or deleted)", "path", path)
	return statecrypt.ParseKey(raw)
}
