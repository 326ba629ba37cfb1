package agent

import (
	"os"
	"strings"
)

// secretEnvPrefix names the variables of `coder agent` itself
// (CODER_AGENT_TOKEN, CODER_AGENT_TOKEN_FILE, CODER_AGENT_AUTH, ...). They
// configure the agent, not the workspace, and the token among them is the
// agent's credential: none is passed on to sessions or scripts.
const secretEnvPrefix = "CODER_AGENT_"

// publicAgentEnv are the CODER_AGENT_ variables that are not secret and
// that sessions may keep: the deployment URL (CODER_AGENT_ID is set by the
// agent itself, after scrubbing).
var publicAgentEnv = map[string]bool{"CODER_AGENT_URL": true}

// IsSecretEnv reports whether the environment variable name is one the
// agent keeps to itself (the token, its file, and every other
// CODER_AGENT_ variable except CODER_AGENT_URL).
func IsSecretEnv(name string) bool {
	return strings.HasPrefix(name, secretEnvPrefix) && !publicAgentEnv[name]
}

// ScrubEnv returns env ("KEY=value" entries) without the variables
// IsSecretEnv names. env itself is not modified.
func ScrubEnv(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if IsSecretEnv(name) {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// UnsetSecretEnv removes the variables IsSecretEnv names from the process
// environment, so that nothing the agent starts later inherits them. (The
// kernel's copy of the initial environment, /proc/PID/environ, is not
// changed; it is readable only by the agent's own user, who runs the
// workspace anyway.)
func UnsetSecretEnv() error {
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if IsSecretEnv(name) {
			if err := os.Unsetenv(name); err != nil {
				return err
			}
		}
	}
	return nil
}
