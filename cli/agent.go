package cli

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/wgmesh/coder/agent"
	"github.com/wgmesh/coder/agent/agentssh"
	"github.com/wgmesh/coder/coderd/buildinfo"
	"github.com/wgmesh/coder/codersdk/agentsdk"
)

// Environment variables of `coder agent`.
const (
	EnvAgentURL       = "CODER_AGENT_URL"
	EnvAgentToken     = "CODER_AGENT_TOKEN"
	EnvAgentTokenFile = "CODER_AGENT_TOKEN_FILE"
	EnvAgentAuth      = "CODER_AGENT_AUTH"
	EnvAgentDataDir   = "CODER_AGENT_DATA_DIR"
	// EnvAgentTokenRefusedTimeout is the twin of --token-refused-timeout.
	EnvAgentTokenRefusedTimeout = "CODER_AGENT_TOKEN_REFUSED_TIMEOUT"
)

func (r *root) agentCommand() *cobra.Command {
	var (
		agentURL  string
		token     string
		tokenFile string
		auth      string
		dataDir   string
		refused   time.Duration
	)
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the workspace agent (started by a template's init script)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if auth != "token" {
				return fmt.Errorf("unsupported --auth %q: only \"token\" is supported", auth)
			}
			if agentURL == "" {
				return fmt.Errorf("--agent-url (or $%s) is required", EnvAgentURL)
			}
			u, err := url.Parse(agentURL)
			if err != nil || u.Scheme == "" || u.Host == "" {
				return fmt.Errorf("invalid agent URL %q", agentURL)
			}
			if token == "" && tokenFile != "" {
				data, err := os.ReadFile(tokenFile)
				if err != nil {
					return fmt.Errorf("read agent token file: %w", err)
				}
				token = strings.TrimSpace(string(data))
			}
			if token == "" {
				return fmt.Errorf("an agent token is required: set $%s or $%s", EnvAgentToken, EnvAgentTokenFile)
			}
			// The token is read: take it (and every other CODER_AGENT_ setting but
			// the URL) out of the environment that sessions and scripts inherit.
			if err := agent.UnsetSecretEnv(); err != nil {
				return fmt.Errorf("remove the agent token from the environment: %w", err)
			}
			if dataDir == "" {
				base, err := os.UserCacheDir()
				if err != nil {
					base = os.TempDir()
				}
				dataDir = filepath.Join(base, "coder-agent")
			}
			logger := r.logger().With("component", "agent")
			// Scripts, metadata and sessions call `coder` (metadata runs `coder stat`),
			// and init scripts download this binary to a private directory: put that
			// directory first in PATH for everything the agent starts.
			if err := prependExecutableDir(); err != nil {
				logger.Warn("cannot put the agent binary's directory in PATH", "error", err)
			}
			refusedPeriod := refused
			if refusedPeriod <= 0 {
				refusedPeriod = -1 // never exit
			}
			a, err := agent.New(agent.Options{
				Logger:             logger,
				Client:             agentsdk.New(u, token),
				DataDir:            dataDir,
				Version:            buildinfo.Version(),
				TokenRefusedPeriod: refusedPeriod,
			})
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			logger.Info("starting agent", "url", u.Redacted(), "data_dir", dataDir)
			err = a.Run(ctx)
			if errors.Is(err, agent.ErrTokenRefused) {
				return fmt.Errorf("agent stopped: %w (it exits after %s of refusals; --token-refused-timeout, $%s)",
					err, refused, EnvAgentTokenRefusedTimeout)
			}
			if err != nil && !errors.Is(err, context.Canceled) {
				return err
			}
			logger.Info("agent stopped", "at", time.Now().UTC().Format(time.RFC3339))
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&agentURL, "agent-url", "", "URL of coderd as the workspace reaches it.")
	envFlag(fs, "agent-url", EnvAgentURL)
	fs.StringVar(&token, "agent-token", "", "The agent's token.")
	envFlag(fs, "agent-token", EnvAgentToken)
	fs.StringVar(&tokenFile, "agent-token-file", "", "A file holding the agent's token.")
	envFlag(fs, "agent-token-file", EnvAgentTokenFile)
	fs.StringVar(&auth, "auth", "token", "How the agent authenticates (only \"token\").")
	envFlag(fs, "auth", EnvAgentAuth)
	fs.StringVar(&dataDir, "data-dir", "", "Directory of the agent's persistent state (node key, SSH host key). Default <user cache dir>/coder-agent.")
	envFlag(fs, "data-dir", EnvAgentDataDir)
	fs.DurationVar(&refused, "token-refused-timeout", agent.DefaultTokenRefusedPeriod,
		"Exit when coderd has refused the agent token (401) for this long without a success in between (the workspace was deleted or its agent replaced); 0 never exits.")
	envFlag(fs, "token-refused-timeout", EnvAgentTokenRefusedTimeout)
	return cmd
}

// prependExecutableDir puts the running binary's directory first in PATH
// (unless it is already there).
func prependExecutableDir() error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find executable: %w", err)
	}
	dir := filepath.Dir(exe)
	path := os.Getenv("PATH")
	for _, p := range filepath.SplitList(path) {
		if p == dir {
			return nil
		}
	}
	if path == "" {
		path = agentssh.DefaultPath
	}
	return os.Setenv("PATH", dir+string(os.PathListSeparator)+path)
}
