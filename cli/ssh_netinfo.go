package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/pflag"
	"tailscale.com/tailcfg"

	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/tunnel"
)

// Environment twins of the ssh flags the VS Code extension passes.
const (
	EnvSSHUsageApp      = "CODER_SSH_USAGE_APP"
	EnvSSHNetworkInfo   = "CODER_SSH_NETWORK_INFO_DIR"
	EnvSSHNetworkPeriod = "CODER_SSH_NETWORK_INFO_INTERVAL"
)

// usageReportInterval is how often coder ssh --usage-app reports use.
const usageReportInterval = time.Minute

// sshExtras are the IDE-facing options of coder ssh: usage reports and
// network info files.
type sshExtras struct {
	usageApp            string
	networkInfoDir      string
	networkInfoInterval time.Duration
}

func addSSHExtrasFlags(fs *pflag.FlagSet, x *sshExtras) {
	fs.StringVar(&x.usageApp, "usage-app", "", "Report use of the workspace as this app while connected: ssh, vscode, jetbrains, reconnecting-pty, or disable (default: none; agent-reported sessions count anyway).")
	envFlag(fs, "usage-app", EnvSSHUsageApp)
	fs.StringVar(&x.networkInfoDir, "network-info-dir", "", "Write network information (p2p, latency, DERP, rates) as JSON to DIR/<parent pid>.json while connected (read by the VS Code extension).")
	envFlag(fs, "network-info-dir", EnvSSHNetworkInfo)
	fs.DurationVar(&x.networkInfoInterval, "network-info-interval", 5*time.Second, "How often to update the network information file.")
	envFlag(fs, "network-info-interval", EnvSSHNetworkPeriod)
}

// validate checks the flags before connecting.
func (x sshExtras) validate() error {
	switch x.usageApp {
	case "", "disable", codersdk.UsageAppSSH, codersdk.UsageAppVSCode, codersdk.UsageAppJetBrains, codersdk.UsageAppReconnectingPTY:
	default:
		return fmt.Errorf("--usage-app %q: want ssh, vscode, jetbrains, reconnecting-pty or disable", x.usageApp)
	}
	if x.networkInfoDir != "" && x.networkInfoInterval <= 0 {
		return fmt.Errorf("--network-info-interval must be positive")
	}
	return nil
}

// networkInfo is the file the Coder VS Code extension reads (same fields
// as Coder writes). Latencies are in milliseconds.
type networkInfo struct {
	P2P              bool               `json:"p2p"`
	Latency          float64            `json:"latency"`
	PreferredDERP    string             `json:"preferred_derp"`
	DERPLatency      map[string]float64 `json:"derp_latency"`
	UploadBytesSec   int64              `json:"upload_bytes_sec"`
	DownloadBytesSec int64              `json:"download_bytes_sec"`
}

// startSSHExtras starts the usage reporter and the network info writer
// for a reached agent; the returned stop ends both and removes the file.
func (r *root) startSSHExtras(ctx context.Context, rc *reached, x sshExtras) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{}, 2)
	n := 0
	if x.usageApp != "" && x.usageApp != "disable" {
		n++
		go func() {
			defer func() { done <- struct{}{} }()
			r.reportUsage(ctx, rc, x.usageApp)
		}()
	}
	var path string
	if x.networkInfoDir != "" {
		path = filepath.Join(x.networkInfoDir, fmt.Sprintf("%d.json", os.Getppid()))
		n++
		go func() {
			defer func() { done <- struct{}{} }()
			r.writeNetworkInfo(ctx, rc, path, x.networkInfoInterval)
		}()
	}
	return func() {
		cancel()
		for i := 0; i < n; i++ {
			<-done
		}
		if path != "" {
			_ = os.Remove(path)
		}
	}
}

// reportUsage posts a usage report now and every usageReportInterval.
func (r *root) reportUsage(ctx context.Context, rc *reached, app string) {
	client, err := r.client()
	if err != nil {
		rc.logger.WarnContext(ctx, "usage report: client", "error", err)
		return
	}
	t := time.NewTicker(usageReportInterval)
	defer t.Stop()
	for {
		err := client.PostWorkspaceUsage(ctx, rc.ws.ID, codersdk.PostWorkspaceUsageRequest{AgentID: rc.agent.ID, AppName: app})
		if err != nil && ctx.Err() == nil {
			rc.logger.WarnContext(ctx, "usage report", "app", app, "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// writeNetworkInfo samples the tunnel every interval and rewrites path
// atomically (temp file + rename).
func (r *root) writeNetworkInfo(ctx context.Context, rc *reached, path string, interval time.Duration) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		rc.logger.WarnContext(ctx, "network info: create dir", "error", err)
		return
	}
	var regions map[int]*tailcfg.DERPRegion
	if client, err := r.client(); err == nil {
		if m, err := client.DERPMap(ctx); err == nil && m != nil {
			regions = m.Regions
		}
	}
	regionName := func(id int, code string) string {
		if reg, ok := regions[id]; ok && reg != nil && reg.RegionName != "" {
			return reg.RegionName
		}
		if code != "" {
			return code
		}
		return fmt.Sprint(id)
	}
	var lastRx, lastTx int64
	var lastAt time.Time
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		info := networkInfo{DERPLatency: map[string]float64{}}
		pctx, cancel := context.WithTimeout(ctx, interval)
		p, err := rc.conn.Ping(pctx)
		cancel()
		if err == nil {
			info.P2P = p.Direct
			info.Latency = float64(p.Latency) / float64(time.Millisecond)
		}
		st := rc.conn.TunnelConn().Status()
		info.PreferredDERP = regionName(st.HomeDERP, st.HomeDERPCode)
		for id, d := range rc.conn.TunnelConn().DERPLatencies() {
			info.DERPLatency[regionName(id, "")] = float64(d) / float64(time.Millisecond)
		}
		if ps, ok := agentPeer(st, rc); ok {
			now := time.Now()
			if !lastAt.IsZero() {
				secs := now.Sub(lastAt).Seconds()
				if secs > 0 {
					info.UploadBytesSec = int64(float64(ps.TxBytes-lastTx) / secs)
					info.DownloadBytesSec = int64(float64(ps.RxBytes-lastRx) / secs)
				}
			}
			if err == nil && !p.Direct {
				info.P2P = ps.Direct
			}
			lastRx, lastTx, lastAt = ps.RxBytes, ps.TxBytes, now
		}
		data, _ := json.Marshal(info)
		if werr := writeFileAtomic(path, data); werr != nil && ctx.Err() == nil {
			rc.logger.WarnContext(ctx, "network info: write", "path", path, "error", werr)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// agentPeer finds the reached agent among the tunnel's peers.
func agentPeer(st tunnel.Status, rc *reached) (tunnel.PeerStatus, bool) {
	ip := rc.conn.AgentIP()
	for _, ps := range st.Peers {
		if ps.ID == rc.agent.ID {
			return ps, true
		}
		for _, a := range ps.Addresses {
			if a.Contains(ip) {
				return ps, true
			}
		}
	}
	return tunnel.PeerStatus{}, false
}
