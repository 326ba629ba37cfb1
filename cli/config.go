package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Files in the CLI config directory.
const (
	configFileURL     = "url"
	configFileSession = "session"
)

// configDir is the CLI state directory (url and session files, mode 0600).
type configDir string

func (d configDir) read(name string) (string, error) {
	b, err := os.ReadFile(filepath.Join(string(d), name))
	if err != nil {
		return "", fmt.Errorf("read config %s: %w", name, err)
	}
	return strings.TrimSpace(string(b)), nil
}

func (d configDir) write(name, value string) error {
	if err := os.MkdirAll(string(d), 0o700); err != nil {
		return fmt.Errorf("create config dir: %w", err)
	}
	path := filepath.Join(string(d), name)
	if err := os.WriteFile(path, []byte(value), 0o600); err != nil {
		return fmt.Errorf("write config %s: %w", name, err)
	}
	// WriteFile keeps the mode of an existing file; enforce 0600.
	if err := os.Chmod(path, 0o600); err != nil {
		return fmt.Errorf("chmod config %s: %w", name, err)
	}
	return nil
}

func (d configDir) remove(name string) error {
	err := os.Remove(filepath.Join(string(d), name))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove config %s: %w", name, err)
	}
	return nil
}
