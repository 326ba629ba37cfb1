package derp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"

	"tailscale.com/tailcfg"
)

// Defaults of the embedded region.
const (
	DefaultRegionID   = 999
	DefaultRegionCode = "coder"
	DefaultRegionName = "Coder Embedded Relay"
)

// PlainHTTPEnvKnob is the process-wide upstream switch that makes DERP clients
// (magicsock) speak plain HTTP instead of TLS to every DERP node. Upstream has
// no per-node switch; see MapOptions.AccessURL.
const PlainHTTPEnvKnob = "TS_DEBUG_USE_DERP_HTTP"

// maxExtraConfigBytes bounds a DERP map read from a file or URL.
const maxExtraConfigBytes = 4 << 20

// MapOptions describes the DERP map coderd hands to peers.
type MapOptions struct {
	// EnableEmbedded adds the region of the relay served by coderd itself.
	EnableEmbedded bool
	// EmbeddedRegionID is the embedded region's ID (default 999).
	EmbeddedRegionID int
	// RegionCode is the embedded region's short code (default "coder").
	RegionCode string
	// RegionName is the embedded region's display name (default
	// "Coder Embedded Relay").
	RegionName string
	// AccessURL is how peers reach coderd, hence the embedded relay at
	// <AccessURL>/derp. Its host becomes the node's HostName (and IPv4 or
	// IPv6 when it is a literal address, so no DNS is needed), its port the
	// node's DERPPort (443 for https and 80 for http when absent).
	//
	// Upstream DERP clients always use TLS to a node from a DERP map; only
	// the process-wide PlainHTTPEnvKnob makes them use plain HTTP (for every
	// node). An http:// AccessURL therefore yields a node that clients reach
	// only when they run with TS_DEBUG_USE_DERP_HTTP=1; use https in
	// production. Required when EnableEmbedded is set.
	AccessURL *url.URL
	// CertName pins the embedded node's TLS certificate instead of verifying
	// it against system roots: "sha256-raw:<hex of the DER certificate's
	// SHA-256>" for a self-signed certificate, or a certificate name.
	CertName string
	// STUNAddresses are "host:port" addresses of STUN servers of the embedded
	// region, added as STUN-only nodes. An unspecified host ("0.0.0.0:3478",
	// "[::]:3478", ":3478") is replaced by AccessURL's host. Empty means the
	// embedded region offers no STUN.
	STUNAddresses []string
	// ExtraConfigPath is a file holding a JSON tailcfg.DERPMap whose regions
	// are added to the map.
	ExtraConfigPath string
	// ExtraConfigURL is a URL serving a JSON tailcfg.DERPMap whose regions
	// are added to the map.
	ExtraConfigURL string
	// HTTPClient fetches ExtraConfigURL; nil means http.DefaultClient.
	HTTPClient *http.Client
}

// BuildMap builds the DERP map from opts: the embedded region (if enabled)
// plus the regions of the extra configuration, validated with ValidateMap.
// The result always has OmitDefaultRegions set and never contains
// Tailscale's public relays.
func BuildMap(ctx context.Context, opts MapOptions) (*tailcfg.DERPMap, error) {
	out := &tailcfg.DERPMap{Regions: map[int]*tailcfg.DERPRegion{}, OmitDefaultRegions: true}
	origin := map[int]string{}
	add := func(src string, m *tailcfg.DERPMap) error {
		if m.HomeParams != nil {
			if out.HomeParams == nil {
				out.HomeParams = &tailcfg.DERPHomeParams{}
			}
			for id, score := range m.HomeParams.RegionScore {
				if out.HomeParams.RegionScore == nil {
					out.HomeParams.RegionScore = map[int]float64{}
				}
				out.HomeParams.RegionScore[id] = score
			}
		}
		for _, id := range m.RegionIDs() {
			if prev, ok := origin[id]; ok {
				return fmt.Errorf("duplicate DERP region ID %d: defined by %s and %s", id, prev, src)
			}
			origin[id] = src
			out.Regions[id] = m.Regions[id]
		}
		return nil
	}

	if opts.EnableEmbedded {
		region, err := embeddedRegion(opts)
		if err != nil {
			return nil, err
		}
		if err := add("the embedded relay", &tailcfg.DERPMap{Regions: map[int]*tailcfg.DERPRegion{region.RegionID: region}}); err != nil {
			return nil, err
		}
	}
	if opts.ExtraConfigPath != "" {
		data, err := readFileLimited(opts.ExtraConfigPath)
		if err != nil {
			return nil, fmt.Errorf("read DERP config file: %w", err)
		}
		m, err := ParseMap(data)
		if err != nil {
			return nil, fmt.Errorf("DERP config file %s: %w", opts.ExtraConfigPath, err)
		}
		if err := add("config file "+opts.ExtraConfigPath, m); err != nil {
			return nil, err
		}
	}
	if opts.ExtraConfigURL != "" {
		data, err := fetch(ctx, opts.HTTPClient, opts.ExtraConfigURL)
		if err != nil {
			return nil, fmt.Errorf("fetch DERP config URL: %w", err)
		}
		m, err := ParseMap(data)
		if err != nil {
			return nil, fmt.Errorf("DERP config URL %s: %w", opts.ExtraConfigURL, err)
		}
		if err := add("config URL "+opts.ExtraConfigURL, m); err != nil {
			return nil, err
		}
	}
	if len(out.Regions) == 0 {
		if !opts.EnableEmbedded {
			return nil, errors.New("DERP map is empty: the embedded relay is disabled and no extra DERP config (file or URL) provides regions")
		}
		return nil, errors.New("DERP map is empty")
	}
	if err := ValidateMap(out); err != nil {
		return nil, err
	}
	return out, nil
}

func embeddedRegion(opts MapOptions) (*tailcfg.DERPRegion, error) {
	u := opts.AccessURL
	if u == nil {
		return nil, errors.New("embedded DERP relay: access URL is required")
	}
	var defaultPort int
	switch u.Scheme {
	case "https":
		defaultPort = 443
	case "http":
		defaultPort = 80
	default:
		return nil, fmt.Errorf("embedded DERP relay: access URL %q must be http or https", u.String())
	}
	host := u.Hostname()
	if host == "" {
		return nil, fmt.Errorf("embedded DERP relay: access URL %q has no host", u.String())
	}
	port := defaultPort
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n <= 0 || n > 65535 {
			return nil, fmt.Errorf("embedded DERP relay: access URL %q has an invalid port", u.String())
		}
		port = n
	}
	id := opts.EmbeddedRegionID
	if id == 0 {
		id = DefaultRegionID
	}
	if id < 0 {
		return nil, fmt.Errorf("embedded DERP relay: region ID %d must be positive", id)
	}
	code := opts.RegionCode
	if code == "" {
		code = DefaultRegionCode
	}
	name := opts.RegionName
	if name == "" {
		name = DefaultRegionName
	}
	node := &tailcfg.DERPNode{
		Name:     fmt.Sprintf("%da", id),
		RegionID: id,
		HostName: host,
		CertName: opts.CertName,
		DERPPort: port,
		STUNPort: -1, // the relay's own port serves no STUN; STUN nodes follow
	}
	setIP(node, host)
	region := &tailcfg.DERPRegion{RegionID: id, RegionCode: code, RegionName: name, Nodes: []*tailcfg.DERPNode{node}}
	for i, addr := range opts.STUNAddresses {
		h, p, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, fmt.Errorf("embedded DERP relay: STUN address %q: %w", addr, err)
		}
		sp, err := strconv.Atoi(p)
		if err != nil || sp <= 0 || sp > 65535 {
			return nil, fmt.Errorf("embedded DERP relay: STUN address %q has an invalid port", addr)
		}
		if ip, err := netip.ParseAddr(h); h == "" || (err == nil && ip.IsUnspecified()) {
			h = host
		}
		sn := &tailcfg.DERPNode{
			Name:     fmt.Sprintf("%dstun%d", id, i),
			RegionID: id,
			HostName: h,
			STUNPort: sp,
			STUNOnly: true,
		}
		setIP(sn, h)
		region.Nodes = append(region.Nodes, sn)
	}
	return region, nil
}

// setIP fills in IPv4/IPv6 when host is a literal address, so clients need
// no DNS (and loopback test nodes work).
func setIP(n *tailcfg.DERPNode, host string) {
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return
	}
	ip = ip.Unmap()
	if ip.Is4() {
		n.IPv4 = ip.String()
		n.IPv6 = "none"
	} else {
		n.IPv6 = ip.String()
		n.IPv4 = "none"
	}
}

// ParseMap decodes a JSON tailcfg.DERPMap. Unlike encoding/json alone it
// rejects a region ID that appears twice in "Regions".
func ParseMap(data []byte) (*tailcfg.DERPMap, error) {
	var raw struct {
		Regions json.RawMessage
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("decode DERP map: %w", err)
	}
	if len(raw.Regions) > 0 {
		if err := checkDuplicateKeys(raw.Regions); err != nil {
			return nil, err
		}
	}
	var m tailcfg.DERPMap
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("decode DERP map: %w", err)
	}
	return &m, nil
}

func checkDuplicateKeys(obj json.RawMessage) error {
	dec := json.NewDecoder(bytes.NewReader(obj))
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("decode DERP regions: %w", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		if tok == nil {
			return nil
		}
		return errors.New("decode DERP regions: Regions must be an object")
	}
	seen := map[int]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("decode DERP regions: %w", err)
		}
		k, _ := tok.(string)
		id, err := strconv.Atoi(strings.TrimSpace(k))
		if err != nil {
			return fmt.Errorf("DERP region key %q is not an integer", k)
		}
		if seen[id] {
			return fmt.Errorf("duplicate DERP region ID %d", id)
		}
		seen[id] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return fmt.Errorf("decode DERP region %d: %w", id, err)
		}
	}
	return nil
}

// ValidateMap reports the first problem of m that would make peers fail or
// fall back to Tailscale's relays: a missing map, regions or nodes, a region
// whose key is not its RegionID, a node without HostName, a node or home
// parameter naming an unknown region, duplicate region codes or node names,
// or OmitDefaultRegions unset.
func ValidateMap(m *tailcfg.DERPMap) error {
	if m == nil {
		return errors.New("DERP map is nil")
	}
	if !m.OmitDefaultRegions {
		return errors.New("DERP map must set OmitDefaultRegions: Tailscale's public relays are never used")
	}
	if len(m.Regions) == 0 {
		return errors.New("DERP map has no regions")
	}
	codes := map[string]int{}
	names := map[string]int{}
	ids := m.RegionIDs()
	for _, id := range ids {
		r := m.Regions[id]
		if r == nil {
			return fmt.Errorf("DERP region %d is null", id)
		}
		if r.RegionID != id {
			return fmt.Errorf("DERP region under key %d has RegionID %d: they must match", id, r.RegionID)
		}
		if id <= 0 {
			return fmt.Errorf("DERP region ID %d must be positive", id)
		}
		if r.RegionCode == "" {
			return fmt.Errorf("DERP region %d has no RegionCode", id)
		}
		if prev, ok := codes[r.RegionCode]; ok {
			return fmt.Errorf("DERP regions %d and %d share RegionCode %q", prev, id, r.RegionCode)
		}
		codes[r.RegionCode] = id
		if len(r.Nodes) == 0 {
			return fmt.Errorf("DERP region %d (%s) has no nodes", id, r.RegionCode)
		}
		for i, n := range r.Nodes {
			if n == nil {
				return fmt.Errorf("DERP region %d node %d is null", id, i)
			}
			if n.Name == "" {
				return fmt.Errorf("DERP region %d node %d has no Name", id, i)
			}
			if prev, ok := names[n.Name]; ok {
				return fmt.Errorf("DERP node name %q used in regions %d and %d", n.Name, prev, id)
			}
			names[n.Name] = id
			if n.HostName == "" {
				return fmt.Errorf("DERP node %q (region %d) has no HostName", n.Name, id)
			}
			if n.RegionID != id {
				if _, ok := m.Regions[n.RegionID]; !ok {
					return fmt.Errorf("DERP node %q references unknown region %d", n.Name, n.RegionID)
				}
				return fmt.Errorf("DERP node %q is listed in region %d but references region %d", n.Name, id, n.RegionID)
			}
			if n.DERPPort < 0 || n.DERPPort > 65535 {
				return fmt.Errorf("DERP node %q has invalid DERPPort %d", n.Name, n.DERPPort)
			}
			if n.STUNPort < -1 || n.STUNPort > 65535 {
				return fmt.Errorf("DERP node %q has invalid STUNPort %d", n.Name, n.STUNPort)
			}
		}
	}
	if m.HomeParams != nil {
		unknown := make([]int, 0)
		for id := range m.HomeParams.RegionScore {
			if _, ok := m.Regions[id]; !ok {
				unknown = append(unknown, id)
			}
		}
		if len(unknown) > 0 {
			sort.Ints(unknown)
			return fmt.Errorf("DERP home params reference unknown region %d", unknown[0])
		}
	}
	return nil
}

func readFileLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readLimited(f)
}

func readLimited(r io.Reader) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxExtraConfigBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxExtraConfigBytes {
		return nil, fmt.Errorf("DERP config larger than %d bytes", maxExtraConfigBytes)
	}
	return data, nil
}

func fetch(ctx context.Context, client *http.Client, rawURL string) ([]byte, error) {
	if client == nil {
		client = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, fmt.Errorf("new request: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", rawURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("get %s: status %s", rawURL, resp.Status)
	}
	return readLimited(resp.Body)
}
