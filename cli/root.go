// Package cli is the coder command tree: the server, and the client
// commands that talk to it through codersdk.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/wgmesh/coder/codersdk"
)

// Environment variables of the global flags.
const (
	EnvURL          = "CODER_URL"
	EnvSessionToken = "CODER_SESSION_TOKEN"
	EnvConfigDir    = "CODER_CONFIG_DIR"
	EnvVerbose      = "CODER_VERBOSE"
)

// Invocation is one run of the CLI: arguments (without the program name),
// standard streams and environment. Tests build one; Main builds it from
// the process.
type Invocation struct {
	Args   []string
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// Environ is the environment as KEY=VALUE pairs.
	Environ []string
}

// Main runs the CLI for the current process and returns its exit code.
func Main(ctx context.Context) int {
	return Run(ctx, Invocation{
		Args:    os.Args[1:],
		Stdin:   os.Stdin,
		Stdout:  os.Stdout,
		Stderr:  os.Stderr,
		Environ: os.Environ(),
	})
}

// Run executes the command line described by inv and returns the exit code:
// 0 on success, 1 on error (printed to Stderr as "error: ..." followed by
// the API's detail and validations).
func Run(ctx context.Context, inv Invocation) int {
	r := newRoot(inv)
	cmd := r.command()
	cmd.SetArgs(inv.Args)
	cmd.SetIn(r.stdin)
	cmd.SetOut(r.stdout)
	cmd.SetErr(r.stderr)
	if err := cmd.ExecuteContext(ctx); err != nil {
		return reportError(r.stderr, err)
	}
	return 0
}

// reportError prints err and returns the process exit code. Only a remote
// command's exit status (coder ssh) passes through without a message; any
// other error, including a local program's exit status (initdb, pg_ctl,
// terraform) wrapped somewhere in its chain, is printed with its cause.
func reportError(w io.Writer, err error) int {
	var remote *exitCodeError
	if errors.As(err, &remote) {
		return remote.code
	}
	writeError(w, err)
	return 1
}

// root holds the state shared by the command tree for one invocation.
type root struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	env            map[string]string

	urlFlag      string
	tokenFlag    string
	globalConfig string
	verbose      bool

	// prompt is the terminal prompter, made on first use.
	prompt *prompter
}

func newRoot(inv Invocation) *root {
	r := &root{stdin: inv.Stdin, stdout: inv.Stdout, stderr: inv.Stderr, env: map[string]string{}}
	if r.stdin == nil {
		r.stdin = strings.NewReader("")
	}
	if r.stdout == nil {
		r.stdout = io.Discard
	}
	if r.stderr == nil {
		r.stderr = io.Discard
	}
	for _, kv := range inv.Environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			r.env[k] = v
		}
	}
	return r
}

func (r *root) command() *cobra.Command {
	cmd := &cobra.Command{
		Use:           "coder",
		Short:         "Self-hosted remote development workspaces",
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return r.applyEnv(cmd.Flags())
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cmd.Help()
		},
	}
	cmd.CompletionOptions.DisableDefaultCmd = true
	fs := cmd.PersistentFlags()
	fs.StringVar(&r.urlFlag, "url", "", "URL of the coder deployment.")
	envFlag(fs, "url", EnvURL)
	fs.StringVar(&r.tokenFlag, "token", "", "Session token (API key) to authenticate with.")
	envFlag(fs, "token", EnvSessionToken)
	fs.StringVar(&r.globalConfig, "global-config", "", "Directory of the CLI's state (url, session). Default ~/.config/coderv2.")
	envFlag(fs, "global-config", EnvConfigDir)
	fs.BoolVarP(&r.verbose, "verbose", "v", false, "Enable verbose output.")
	envFlag(fs, "verbose", EnvVerbose)

	cmd.AddCommand(
		r.serverCommand(),
		r.agentCommand(),
		r.loginCommand(),
		r.logoutCommand(),
		r.usersCommand(),
		r.tokensCommand(),
		r.versionCommand(),
		r.sshCommand(),
		r.configSSHCommand(),
		r.portForwardCommand(),
		r.pingCommand(),
		r.speedtestCommand(),
		r.netcheckCommand(),
		r.openCommand(),
		r.statCommand(),
		r.whoamiCommand(),
		r.renameCommand(),
		r.favoriteCommand(true),
		r.favoriteCommand(false),
	)
	cmd.AddCommand(r.workspaceCommands()...)
	return cmd
}

const envAnnotation = "coder_env"

// envFlag binds a flag to an environment variable (used when the flag is
// not given on the command line) and mentions it in the usage.
func envFlag(fs *pflag.FlagSet, name, env string) {
	f := fs.Lookup(name)
	if f == nil {
		panic("envFlag: unknown flag " + name)
	}
	if f.Annotations == nil {
		f.Annotations = map[string][]string{}
	}
	f.Annotations[envAnnotation] = []string{env}
	f.Usage += " (env $" + env + ")"
}

// applyEnv sets every flag not given on the command line from its
// environment twin.
func (r *root) applyEnv(fs *pflag.FlagSet) error {
	var errs []error
	fs.VisitAll(func(f *pflag.Flag) {
		envs := f.Annotations[envAnnotation]
		if f.Changed || len(envs) == 0 {
			return
		}
		if v, ok := r.env[envs[0]]; ok && v != "" {
			if err := f.Value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("invalid $%s for --%s: %w", envs[0], f.Name, err))
				return
			}
			f.Changed = true
		}
	})
	return errors.Join(errs...)
}

// logger returns the CLI's logger: info to stderr, debug with -v.
func (r *root) logger() *slog.Logger {
	level := slog.LevelInfo
	if r.verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(r.stderr, &slog.HandlerOptions{Level: level}))
}

// homeDir returns $HOME from the invocation's environment, else the OS's.
func (r *root) homeDir() (string, error) {
	if h := r.env["HOME"]; h != "" {
		return h, nil
	}
	h, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("find home directory: %w", err)
	}
	return h, nil
}

// configDir returns the CLI state directory.
func (r *root) configDir() (configDir, error) {
	if r.globalConfig != "" {
		return configDir(r.globalConfig), nil
	}
	home, err := r.homeDir()
	if err != nil {
		return "", err
	}
	return configDir(filepath.Join(home, ".config", "coderv2")), nil
}

// stdinTerminal returns the file descriptor of stdin when it is a terminal.
func (r *root) stdinTerminal() (int, bool) {
	f, ok := r.stdin.(*os.File)
	if !ok {
		return 0, false
	}
	fd := int(f.Fd())
	return fd, term.IsTerminal(fd)
}

// parseURL accepts "host[:port]" (https assumed) or a full http(s) URL.
func parseURL(raw string) (*url.URL, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return nil, errors.New("empty URL")
	}
	if !strings.Contains(raw, "://") {
		raw = "https://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("parse URL %q: %w", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("URL %q: scheme must be http or https", raw)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("URL %q has no host", raw)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	return u, nil
}

// client returns an authenticated client from the flags and the saved
// config.
func (r *root) client() (*codersdk.Client, error) {
	dir, err := r.configDir()
	if err != nil {
		return nil, err
	}
	rawURL := r.urlFlag
	if rawURL == "" {
		rawURL, err = dir.read(configFileURL)
		if errors.Is(err, os.ErrNotExist) {
			return nil, errors.New("you are not logged in: run 'coder login <url>' first (or pass --url and --token)")
		}
		if err != nil {
			return nil, err
		}
	}
	u, err := parseURL(rawURL)
	if err != nil {
		return nil, err
	}
	token := r.tokenFlag
	if token == "" {
		token, err = dir.read(configFileSession)
		if errors.Is(err, os.ErrNotExist) {
			return nil, errors.New("you are not logged in: run 'coder login' first (or pass --token)")
		}
		if err != nil {
			return nil, err
		}
	}
	c := codersdk.New(u)
	c.SetSessionToken(token)
	return c, nil
}

// writeError prints err as "error: ..." plus the API's detail and
// validations.
func writeError(w io.Writer, err error) {
	if apiErr, ok := codersdk.AsError(err); ok {
		msg := apiErr.Message
		if msg == "" {
			msg = fmt.Sprintf("request failed with status %d", apiErr.StatusCode())
		}
		fmt.Fprintf(w, "error: %s\n", msg)
		if apiErr.Detail != "" {
			fmt.Fprintf(w, "%s\n", apiErr.Detail)
		}
		for _, v := range apiErr.Validations {
			line := v.Field + ": " + v.Detail
			if line == apiErr.Detail {
				continue // already printed as the detail
			}
			fmt.Fprintf(w, "  %s\n", line)
		}
		return
	}
	fmt.Fprintf(w, "error: %s\n", err)
}
