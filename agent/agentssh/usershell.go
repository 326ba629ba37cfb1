package agentssh

import (
	"bufio"
	"fmt"
	"os"
	"os/user"
	"strings"
)

// DefaultPath is the PATH given to sessions when the agent itself has none.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// UserShell returns the login shell of the named user from /etc/passwd, or
// /bin/sh when the user has no entry or an empty shell field.
func UserShell(username string) string {
	shell, err := passwdShell("/etc/passwd", username)
	if err != nil || shell == "" {
		return "/bin/sh"
	}
	return shell
}

// passwdShell reads the shell field of username from a passwd(5) file.
func passwdShell(path, username string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) >= 7 && fields[0] == username {
			return strings.TrimSpace(fields[6]), nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return "", fmt.Errorf("user %q not found in %s", username, path)
}

// identity is the OS user the agent (and so every session) runs as.
type identity struct {
	Username string
	Home     string
}

// currentIdentity returns the OS user of this process.
func currentIdentity() (identity, error) {
	u, err := user.Current()
	if err != nil {
		return identity{}, fmt.Errorf("current user: %w", err)
	}
	home := u.HomeDir
	if home == "" {
		home = "/"
	}
	return identity{Username: u.Username, Home: home}, nil
}
