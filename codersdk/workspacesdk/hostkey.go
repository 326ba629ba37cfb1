package workspacesdk

import (
	"bytes"
	"errors"
	"fmt"
	"net"

	gossh "golang.org/x/crypto/ssh"
)

// ErrNoHostKey means the agent has not reported its SSH host key yet (it
// does at startup), so its SSH server cannot be verified.
var ErrNoHostKey = errors.New("the agent has not reported its SSH host key yet")

// ErrHostKeyMismatch means the SSH server at the agent's address presented a
// key other than the one the agent reported to coderd.
var ErrHostKeyMismatch = errors.New("agent SSH host key does not match the key the agent reported to coderd")

// PinnedHostKey returns an SSH host key callback that accepts only the key
// authorizedKey (authorized_keys format, as in codersdk.WorkspaceAgent's
// SSHHostKey).
func PinnedHostKey(authorizedKey string) (gossh.HostKeyCallback, error) {
	if authorizedKey == "" {
		return nil, ErrNoHostKey
	}
	want, _, _, _, err := gossh.ParseAuthorizedKey([]byte(authorizedKey))
	if err != nil {
		return nil, fmt.Errorf("parse agent SSH host key: %w", err)
	}
	wantBytes := want.Marshal()
	return func(_ string, _ net.Addr, got gossh.PublicKey) error {
		if !bytes.Equal(got.Marshal(), wantBytes) {
			return fmt.Errorf("%w: got %s, want %s", ErrHostKeyMismatch, gossh.FingerprintSHA256(got), gossh.FingerprintSHA256(want))
		}
		return nil
	}, nil
}
