package cli

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
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
	// EnvBlockDirectConnections is the env twin of --block-direct-connections.
	EnvBlockDirectConnections = "CODER_BLOCK_DIRECT"
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
	// STUNAddresses are UDP addresses the STUN server listens on. nil means
	// the default: port derp.DefaultSTUNPort on each host the HTTP server
	// listens on (so STUN is exposed exactly where HTTP is); an empty,
	// non-nil list disables STUN.
	STUNAddresses []string
	// ConfigPath and ConfigURL add regions from a JSON DERP map.
	ConfigPath string
	ConfigURL  string
	// ForceWebSockets tells peers to reach DERP over websockets.
	ForceWebSockets bool
	// BlockDirect tells agents and clients to use DERP only (no direct
	// UDP paths).
	BlockDirect bool
	// RelayURL is the URL other replicas reach this replica's relay at
	// (its own address, not the load balancer's), e.g.
	// "http://10.0.0.2:3000". Empty: the relay does not mesh.
	RelayURL string
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
	fs.StringSliceVar(&cfg.STUNAddresses, "derp-server-stun-addresses", nil, "UDP addresses of the STUN server (comma separated; empty disables). Default: port 3478 on the host(s) of --http-address.")
	envFlag(fs, "derp-server-stun-addresses", EnvDERPServerSTUNAddresses)
	fs.StringVar(&cfg.ConfigPath, "derp-config-path", "", "Path of a JSON DERP map whose regions are added.")
	envFlag(fs, "derp-config-path", EnvDERPConfigPath)
	fs.StringVar(&cfg.ConfigURL, "derp-config-url", "", "URL of a JSON DERP map whose regions are added.")
	envFlag(fs, "derp-config-url", EnvDERPConfigURL)
	fs.StringVar(&cfg.RelayURL, "derp-server-relay-url", "", "URL other replicas reach this replica's DERP relay at (its own address, not the load balancer's); needed for the relay mesh of a multi-replica deployment.")
	envFlag(fs, "derp-server-relay-url", EnvDERPServerRelayURL)
	fs.BoolVar(&cfg.ForceWebSockets, "derp-force-websockets", false, "Tell clients to connect to DERP over websockets.")
	envFlag(fs, "derp-force-websockets", EnvDERPForceWebSockets)
	fs.BoolVar(&cfg.BlockDirect, "block-direct-connections", false, "Tell agents and clients to relay every connection through DERP (no direct UDP paths).")
	envFlag(fs, "block-direct-connections", EnvBlockDirectConnections)
}

// defaultSTUNAddresses puts STUN on the standard port of every host the HTTP
// server listens on: a server bound to loopback (the default) does not
// expose STUN on every interface.
func defaultSTUNAddresses(httpAddrs []net.Addr) []string {
	var out []string
	seen := map[string]bool{}
	for _, a := range httpAddrs {
		host, _, err := net.SplitHostPort(a.String())
		if err != nil {
			continue
		}
		addr := net.JoinHostPort(host, strconv.Itoa(derp.DefaultSTUNPort))
		if !seen[addr] {
			seen[addr] = true
			out = append(out, addr)
		}
	}
	return out
}

// startDERP starts the embedded relay and STUN listeners (when enabled) and
// builds the DERP map. The returned function stops what was started; the
// bound STUN addresses are returned too.
func startDERP(ctx context.Context, cfg DERPConfig, accessURL *url.URL, httpAddrs []net.Addr, logger *slog.Logger) (coderd.AgentOptions, []net.Addr, func(), error) {
	var closers []func()
	stop := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	var opts coderd.AgentOptions
	var stunAddrs []string
	var bound []net.Addr
	if cfg.ServerEnable {
		srv := derp.NewServer(logger.With("component", "derp"), key.NodePrivate{})
		closers = append(closers, func() { _ = srv.Close() })
		opts.DERPServer = srv
		addrs := cfg.STUNAddresses
		if addrs == nil {
			addrs = defaultSTUNAddresses(httpAddrs)
		}
		for _, addr := range addrs {
			addr = strings.TrimSpace(addr)
			if addr == "" {
				continue
			}
			b, closer, err := derp.ListenSTUN(ctx, addr, logger.With("component", "stun"))
			if err != nil {
				stop()
				return coderd.AgentOptions{}, nil, nil, fmt.Errorf("listen for STUN on %s: %w", addr, err)
			}
			closers = append(closers, func() { _ = closer.Close() })
			// Advertise the configured host (an unspecified host is
			// replaced by the access URL's) with the bound port.
			host := addr[:strings.LastIndex(addr, ":")+1]
			stunAddrs = append(stunAddrs, host+portOf(b.String()))
			bound = append(bound, b)
		}
	}
	if !cfg.ServerEnable && cfg.ConfigPath == "" && cfg.ConfigURL == "" {
		// Nothing to relay through: workspaces cannot be reached.
		logger.Warn("no DERP relay: the embedded relay is disabled and no DERP config is given; agents cannot join the mesh")
		return opts, bound, stop, nil
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
		return coderd.AgentOptions{}, nil, nil, fmt.Errorf("build DERP map: %w", err)
	}
	opts.DERPMap = m
	opts.DERPForceWebSockets = cfg.ForceWebSockets
	opts.DisableDirectConnections = cfg.BlockDirect
	return opts, bound, stop, nil
}

func portOf(hostport string) string {
	i := strings.LastIndex(hostport, ":")
	if i < 0 {
		return hostport
	}
	return hostport[i+1:]
}
