package cli

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strings"

	"github.com/spf13/pflag"
	"tailscale.com/types/key"

	"github.com/wgmesh/coder/coderd"
	"github.com/wgmesh/coder/derp"
)

// Environment variables of the server's DERP flags.
const (
	EnvDERPServerEnable        = "CODER_DERP_SERVER_ENABLE"
	EnvDERPServerRegionID      = "CODER_DERP_SERVER_REGION_ID"
	EnvDERPServerRegionCode    = "CODER_DERP_SERVER_REGION_CODE"
	EnvDERPServerRegionName    = "CODER_DERP_SERVER_REGION_NAME"
	EnvDERPServerSTUNAddresses = "CODER_DERP_SERVER_STUN_ADDRESSES"
	EnvDERPConfigPath          = "CODER_DERP_CONFIG_PATH"
	EnvDERPConfigURL           = "CODER_DERP_CONFIG_URL"
	EnvDERPForceWebSockets     = "CODER_DERP_FORCE_WEBSOCKETS"
)

// DERPConfig configures the embedded DERP relay, STUN and the DERP map. The
// zero value (as used by tests calling StartServer) serves no relay and no
// map; `coder server`'s flags enable the embedded relay by default.
type DERPConfig struct {
	// ServerEnable serves the embedded relay at /derp (default true).
	ServerEnable bool
	// RegionID, RegionCode and RegionName describe the embedded region.
	RegionID   int
	RegionCode string
	RegionName string
	// STUNAddresses are UDP addresses the STUN server listens on
	// (default 0.0.0.0:3478); empty disables STUN.
	STUNAddresses []string
	// ConfigPath and ConfigURL add regions from a JSON DERP map.
	ConfigPath string
	ConfigURL  string
	// ForceWebSockets tells peers to reach DERP over websockets.
	ForceWebSockets bool
}

// addDERPFlags registers the --derp-* flags of `coder server`.
func addDERPFlags(fs *pflag.FlagSet, cfg *DERPConfig) {
	fs.BoolVar(&cfg.ServerEnable, "derp-server-enable", true, "Serve the embedded DERP relay at /derp (and STUN).")
	envFlag(fs, "derp-server-enable", EnvDERPServerEnable)
	fs.IntVar(&cfg.RegionID, "derp-server-region-id", derp.DefaultRegionID, "Region ID of the embedded relay.")
	envFlag(fs, "derp-server-region-id", EnvDERPServerRegionID)
	fs.StringVar(&cfg.RegionCode, "derp-server-region-code", derp.DefaultRegionCode, "Region code of the embedded relay.")
	envFlag(fs, "derp-server-region-code", EnvDERPServerRegionCode)
	fs.StringVar(&cfg.RegionName, "derp-server-region-name", derp.DefaultRegionName, "Region name of the embedded relay.")
	envFlag(fs, "derp-server-region-name", EnvDERPServerRegionName)
	fs.StringSliceVar(&cfg.STUNAddresses, "derp-server-stun-addresses", []string{derp.DefaultSTUNAddress}, "UDP addresses of the STUN server (comma separated; empty disables).")
	envFlag(fs, "derp-server-stun-addresses", EnvDERPServerSTUNAddresses)
	fs.StringVar(&cfg.ConfigPath, "derp-config-path", "", "Path of a JSON DERP map whose regions are added.")
	envFlag(fs, "derp-config-path", EnvDERPConfigPath)
	fs.StringVar(&cfg.ConfigURL, "derp-config-url", "", "URL of a JSON DERP map whose regions are added.")
	envFlag(fs, "derp-config-url", EnvDERPConfigURL)
	fs.BoolVar(&cfg.ForceWebSockets, "derp-force-websockets", false, "Tell clients to connect to DERP over websockets.")
	envFlag(fs, "derp-force-websockets", EnvDERPForceWebSockets)
}

// startDERP starts the embedded relay and STUN listeners (when enabled) and
// builds the DERP map. The returned function stops what was started.
func startDERP(ctx context.Context, cfg DERPConfig, accessURL *url.URL, logger *slog.Logger) (coderd.AgentOptions, func(), error) {
	var closers []func()
	stop := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	var opts coderd.AgentOptions
	var stunAddrs []string
	if cfg.ServerEnable {
		srv := derp.NewServer(logger.With("component", "derp"), key.NodePrivate{})
		closers = append(closers, func() { _ = srv.Close() })
		opts.DERPServer = srv
		for _, addr := range cfg.STUNAddresses {
			addr = strings.TrimSpace(addr)
			if addr == "" {
				continue
			}
			bound, closer, err := derp.ListenSTUN(ctx, addr, logger.With("component", "stun"))
			if err != nil {
				stop()
				return coderd.AgentOptions{}, nil, fmt.Errorf("listen for STUN on %s: %w", addr, err)
			}
			closers = append(closers, func() { _ = closer.Close() })
			// Advertise the configured host (an unspecified host is
			// replaced by the access URL's) with the bound port.
			host := addr[:strings.LastIndex(addr, ":")+1]
			stunAddrs = append(stunAddrs, host+portOf(bound.String()))
		}
	}
	if !cfg.ServerEnable && cfg.ConfigPath == "" && cfg.ConfigURL == "" {
		// Nothing to relay through: workspaces cannot be reached.
		logger.Warn("no DERP relay: the embedded relay is disabled and no DERP config is given; agents cannot join the mesh")
		return opts, stop, nil
	}
	m, err := derp.BuildMap(ctx, derp.MapOptions{
		EnableEmbedded:   cfg.ServerEnable,
		EmbeddedRegionID: cfg.RegionID,
		RegionCode:       cfg.RegionCode,
		RegionName:       cfg.RegionName,
		AccessURL:        accessURL,
		STUNAddresses:    stunAddrs,
		ExtraConfigPath:  cfg.ConfigPath,
		ExtraConfigURL:   cfg.ConfigURL,
	})
	if err != nil {
		stop()
		return coderd.AgentOptions{}, nil, fmt.Errorf("build DERP map: %w", err)
	}
	opts.DERPMap = m
	opts.DERPForceWebSockets = cfg.ForceWebSockets
	return opts, stop, nil
}

func portOf(hostport string) string {
	i := strings.LastIndex(hostport, ":")
	if i < 0 {
		return hostport
	}
	return hostport[i+1:]
}
