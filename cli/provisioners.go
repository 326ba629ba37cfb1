package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"

	"github.com/google/uuid"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/wgmesh/coder/coderd/buildinfo"
	"github.com/wgmesh/coder/codersdk/provisionersdk"
	"github.com/wgmesh/coder/provisioner"
	"github.com/wgmesh/coder/provisioner/terraform"
)

// Environment variables of `coder provisioner start` (the terraform ones apply
// to `coder server`'s built-in daemons too).
const (
	EnvProvisionerDaemonPSK = "CODER_PROVISIONER_DAEMON_PSK"
	EnvTerraformPath        = "CODER_TERRAFORM_PATH"
	EnvTerraformCLIConfig   = "CODER_TERRAFORM_CLI_CONFIG"
	EnvProvisionerTags      = "CODER_PROVISIONERD_TAGS"
	EnvProvisionerName      = "CODER_PROVISIONER_DAEMON_NAME"
	EnvProvisionerCacheDir  = "CODER_CACHE_DIRECTORY"
)

// envTFCLIConfigFile is terraform's own variable naming its CLI configuration;
// it is the default of --terraform-cli-config.
const envTFCLIConfigFile = "TF_CLI_CONFIG_FILE"

// TerraformConfig names the terraform binary and CLI configuration provisioner
// daemons run with.
type TerraformConfig struct {
	// Path is the terraform or tofu binary; empty means terraform, else tofu, on PATH.
	Path string
	// CLIConfig is the terraform CLI configuration file; empty means
	// terraform's own default (~/.terraformrc).
	CLIConfig string
}

// addTerraformFlags registers --terraform-path and --terraform-cli-config.
func addTerraformFlags(fs *pflag.FlagSet, cfg *TerraformConfig) {
	fs.StringVar(&cfg.Path, "terraform-path", "", "terraform or tofu binary that runs provisioner jobs (default: terraform on PATH, else tofu on PATH).")
	envFlag(fs, "terraform-path", EnvTerraformPath)
	fs.StringVar(&cfg.CLIConfig, "terraform-cli-config", "", "Terraform CLI configuration file for provisioner jobs, e.g. a provider mirror "+
		"(default: $"+envTFCLIConfigFile+"; when that is unset too, terraform's own ~/.terraformrc).")
	envFlag(fs, "terraform-cli-config", EnvTerraformCLIConfig)
}

// withTerraformHint adds how to name a terraform binary to an error of a
// daemon that found none.
func withTerraformHint(err error) error {
	if errors.Is(err, terraform.ErrNoBinary) {
		return fmt.Errorf("%w: install terraform or OpenTofu, or name the binary with --terraform-path ($%s)", err, EnvTerraformPath)
	}
	return err
}

// resolve applies the $TF_CLI_CONFIG_FILE default and checks that the named
// files exist, so a typo fails at startup rather than in every job.
func (c *TerraformConfig) resolve(env map[string]string) error {
	if c.CLIConfig == "" {
		c.CLIConfig = env[envTFCLIConfigFile]
	}
	for _, f := range []struct{ flag, path string }{{"terraform-path", c.Path}, {"terraform-cli-config", c.CLIConfig}} {
		if f.path == "" {
			continue
		}
		st, err := os.Stat(f.path)
		if err != nil {
			return fmt.Errorf("--%s: %w", f.flag, err)
		}
		if st.IsDir() {
			return fmt.Errorf("--%s: %s is a directory, not a file", f.flag, f.path)
		}
	}
	return nil
}

// runner returns a terraform runner for cfg.
func (c TerraformConfig) runner(logger *slog.Logger, workDir string) *terraform.Runner {
	return &terraform.Runner{Logger: logger, TerraformPath: c.Path, CLIConfigPath: c.CLIConfig, WorkDir: workDir}
}

func (r *root) provisionerCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "provisioner",
		Aliases: []string{"provisioners", "provisionerd"},
		Short:   "Run and list provisioner daemons",
		Args:    cobra.NoArgs,
		RunE:    func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(r.provisionerStartCommand(), r.provisionerListCommand())
	return cmd
}

// parseTags turns repeated k=v flags into a map.
func parseTags(raw []string) (map[string]string, error) {
	tags := map[string]string{}
	for _, kv := range raw {
		for _, part := range strings.Split(kv, ",") {
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			k, v, ok := strings.Cut(part, "=")
			if !ok || k == "" {
				return nil, fmt.Errorf("invalid tag %q: want key=value", part)
			}
			tags[k] = v
		}
	}
	return tags, nil
}

func (r *root) provisionerStartCommand() *cobra.Command {
	var (
		psk, name, cacheDir string
		rawTags             []string
		tf                  TerraformConfig
	)
	cmd := &cobra.Command{
		Use:   "start",
		Short: "Run an external provisioner daemon (needs only the coderd URL and its pre-shared key)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if psk == "" {
				return fmt.Errorf("a pre-shared key is required: --psk or $%s", EnvProvisionerDaemonPSK)
			}
			u, err := r.deploymentURL()
			if err != nil {
				return err
			}
			tags, err := parseTags(rawTags)
			if err != nil {
				return err
			}
			if err := tf.resolve(r.env); err != nil {
				return err
			}
			if name == "" {
				name, _ = os.Hostname()
			}
			d := &provisioner.Daemon{
				Client:  &provisionersdk.Client{URL: u, PSK: psk},
				Name:    name,
				Tags:    tags,
				Runner:  tf.runner(r.logger().With("component", "terraform"), cacheDir),
				Version: buildinfo.Version(),
				Logger:  r.logger().With("component", "provisionerd"),
			}
			fmt.Fprintf(r.stderr, "Starting provisioner daemon %q (tags %v) against %s\n", name, tags, u)
			return runDaemon(ctx, d)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&psk, "psk", "", "Pre-shared key matching the server's --provisioner-daemon-psk.")
	envFlag(fs, "psk", EnvProvisionerDaemonPSK)
	fs.StringArrayVarP(&rawTags, "tag", "t", nil, "Tag key=value of the daemon (repeatable); jobs run here only if their tags are a subset.")
	envFlag(fs, "tag", EnvProvisionerTags)
	addTerraformFlags(fs, &tf)
	fs.StringVar(&name, "name", "", "Daemon name (default: the host name).")
	envFlag(fs, "name", EnvProvisionerName)
	fs.StringVar(&cacheDir, "cache-dir", "", "Directory for per-job working directories (default: the system temp dir).")
	envFlag(fs, "cache-dir", EnvProvisionerCacheDir)
	return cmd
}

func runDaemon(ctx context.Context, d *provisioner.Daemon) error {
	if err := d.Run(ctx); err != nil {
		return fmt.Errorf("provisioner daemon: %w", withTerraformHint(err))
	}
	return nil
}

// deploymentURL returns the deployment URL from --url or the saved login.
func (r *root) deploymentURL() (*url.URL, error) {
	if r.urlFlag != "" {
		return parseURL(r.urlFlag)
	}
	dir, err := r.configDir()
	if err != nil {
		return nil, err
	}
	raw, err := dir.read(configFileURL)
	if err != nil {
		return nil, fmt.Errorf("no deployment URL: pass --url or $%s", EnvURL)
	}
	return parseURL(raw)
}

func (r *root) provisionerListCommand() *cobra.Command {
	var out outputFormat
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List provisioner daemons",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := out.validate(); err != nil {
				return err
			}
			client, err := r.client()
			if err != nil {
				return err
			}
			daemons, err := client.ProvisionerDaemons(cmd.Context())
			if err != nil {
				return err
			}
			if out.value == "json" {
				return writeJSON(r.stdout, daemons)
			}
			rows := make([][]string, 0, len(daemons))
			for _, d := range daemons {
				keys := make([]string, 0, len(d.Tags))
				for k := range d.Tags {
					keys = append(keys, k)
				}
				sort.Strings(keys)
				tags := make([]string, 0, len(keys))
				for _, k := range keys {
					tags = append(tags, k+"="+d.Tags[k])
				}
				seen := "never"
				if d.LastSeenAt != nil {
					seen = humanTime(*d.LastSeenAt)
				}
				rows = append(rows, []string{d.Name, d.Status, strings.Join(tags, " "), d.TerraformVersion, seen})
			}
			return writeTable(r.stdout, []string{"NAME", "STATUS", "TAGS", "TERRAFORM", "LAST SEEN"}, rows)
		},
	}
	addOutputFlag(cmd, &out, "table")
	return cmd
}

// serverPSK returns the key coderd accepts from provisioner daemons. Without
// a configured key, built-in daemons get a random in-memory one (external
// daemons then cannot connect).
func serverPSK(cfg *ServerConfig) string {
	if cfg.ProvisionerDaemonPSK == "" && cfg.ProvisionerDaemons > 0 {
		cfg.ProvisionerDaemonPSK = "builtin-" + uuid.NewString()
	}
	return cfg.ProvisionerDaemonPSK
}

// startBuiltinDaemons runs cfg.ProvisionerDaemons daemons in-process, talking
// to this server through the same HTTP protocol as external ones. Close
// stops them (through s.stopDaemons) before shutting the listeners down.
func (s *Server) startBuiltinDaemons(ctx context.Context, cfg ServerConfig) {
	if cfg.ProvisionerDaemons <= 0 {
		return
	}
	dctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	done := make(chan struct{})
	drain := make(chan struct{})
	var drainOnce sync.Once
	s.stopDaemons = func() {
		cancel()
		wg.Wait()
	}
	s.drainDaemons = func(ctx context.Context) error {
		drainOnce.Do(func() { close(drain) })
		select {
		case <-done:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	local := &url.URL{Scheme: "http", Host: s.HTTPAddr.String()}
	host, _ := os.Hostname()
	if s.ha != nil {
		// Replicas may share a host (and daemon names are unique per
		// deployment): name the daemons after the replica too.
		host += "-" + s.ha.replicas.Self().ID.String()[:8]
	}
	for i := 0; i < cfg.ProvisionerDaemons; i++ {
		d := &provisioner.Daemon{
			Client:  &provisionersdk.Client{URL: local, PSK: cfg.ProvisionerDaemonPSK},
			Name:    fmt.Sprintf("%s-builtin-%d", host, i),
			Runner:  cfg.Terraform.runner(s.logger.With("component", "terraform"), ""),
			Version: buildinfo.Version(),
			Logger:  s.logger.With("component", "provisionerd", "daemon", i),
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := d.RunDraining(dctx, drain); err != nil {
				s.logger.Error("built-in provisioner daemon stopped", "error", withTerraformHint(err))
			}
		}()
	}
	go func() {
		wg.Wait()
		close(done)
	}()
}
