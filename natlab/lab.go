// Package natlab builds closed test networks out of Linux network namespaces:
// an "internet" namespace holding a bridge (198.51.100.0/24, where servers
// live) and any number of sites, each a private LAN (a /28 of 203.0.113.0/24)
// with one host behind its own NAT router namespace configured with iptables.
//
// The lab never touches the host's own network namespace: there is no veth
// into it and no default route out of the lab, and only documentation address
// ranges are used. Processes run inside lab namespaces as subprocesses started
// with `ip netns exec` (see Node), because Go cannot safely move goroutines
// between namespaces.
//
// Creating a lab needs root, the `ip` tool (iproute2), `iptables` and
// `conntrack`.
package natlab

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// NAT is the behaviour of a site's NAT router.
type NAT string

const (
	// NATEasy is endpoint-independent mapping (MASQUERADE keeps the source
	// port, so every destination sees the same public port) with Linux's
	// usual address-and-port-dependent filtering: only replies from an
	// address:port the host has sent to come back in.
	NATEasy NAT = "easy"
	// NATEasyAF is endpoint-independent mapping with address-dependent
	// filtering: once the host has sent to an address, UDP from any port of
	// that address to the public port is let in (Tailscale's "EasyAF").
	NATEasyAF NAT = "easyaf"
	// NATHard is address-and-port-dependent mapping (MASQUERADE
	// --random-fully): each destination sees a different random public port.
	NATHard NAT = "hard"
	// NATUDPBlocked is NATEasy whose router drops every forwarded UDP packet;
	// TCP still passes.
	NATUDPBlocked NAT = "udp-blocked"
)

// NATs lists every NAT kind the lab knows.
var NATs = []NAT{NATEasy, NATEasyAF, NATHard, NATUDPBlocked}

// ParseNAT returns the NAT kind named s.
func ParseNAT(s string) (NAT, error) {
	for _, n := range NATs {
		if string(n) == s {
			return n, nil
		}
	}
	return "", fmt.Errorf("unknown NAT kind %q (want one of %v)", s, NATs)
}

// Addresses of the lab's internet. Servers in the internet namespace listen on
// InternetAddr; InternetAltAddr is a second address of the same namespace so
// that tests can tell mappings that vary by destination IP.
var (
	InternetPrefix  = netip.MustParsePrefix("198.51.100.0/24")
	InternetAddr    = netip.MustParseAddr("198.51.100.1")
	InternetAltAddr = netip.MustParseAddr("198.51.100.2")
)

// Interface names used inside lab namespaces (names only need to be unique
// within one namespace).
const (
	ifWAN    = "wan"
	ifLAN    = "lan"
	ifHost   = "eth0"
	ifBridge = "br0"
)

// rebindBasePort is the first public UDP port a site uses after Rebind.
const rebindBasePort = 41000

// testPrefix starts the namespace names of labs made by tests; the creating
// process id follows so that Sweep can tell stale labs from live ones.
const testPrefix = "nlt"

// debugPrefix starts the namespace names of named labs (scripts/natlab.sh).
const debugPrefix = "nld-"

var testNameRE = regexp.MustCompile(`^` + testPrefix + `([0-9]+)-[0-9a-f]+-`)

// Options configure a lab.
type Options struct {
	// Sites lists the NAT kind of each private LAN; most tests use two.
	Sites []NAT
	// Name makes a named lab (namespace names "nld-<Name>-<role>") that Sweep
	// leaves alone; empty means a unique name tied to this process.
	Name string
	// Logger receives the commands run; nil discards.
	Logger *slog.Logger
}

// Namespace is one network namespace of a lab. A Namespace made by hand
// (just a Name) works too, without logging.
type Namespace struct {
	// Name is the namespace's name as `ip netns` knows it.
	Name   string
	logger *slog.Logger
}

// Site is one private LAN: a host behind a NAT router.
type Site struct {
	// Index is the site's position in Options.Sites.
	Index int
	// NAT is the router's behaviour.
	NAT NAT
	// Router is the NAT router's namespace (interfaces "wan" and "lan").
	Router *Namespace
	// Host is the namespace of the single host on the LAN (interface "eth0").
	Host *Namespace
	// WANAddr is the router's public address on the lab internet.
	WANAddr netip.Addr
	// RouterLANAddr is the router's address on the LAN (the host's gateway).
	RouterLANAddr netip.Addr
	// HostAddr is the host's private address.
	HostAddr netip.Addr

	mu          sync.Mutex
	udpBlocked  bool // an extra UDP drop rule inserted by BlockUDP
	rebindCount int
}

// Lab is a running closed test network.
type Lab struct {
	// Prefix starts the name of every namespace of the lab.
	Prefix string
	// Internet is the namespace holding the bridge and the servers.
	Internet *Namespace
	// Sites are the private LANs, in Options.Sites order.
	Sites []*Site

	logger    *slog.Logger
	closeOnce sync.Once
	closeErr  error
}

// Create builds a lab. On error everything created so far is removed.
func Create(ctx context.Context, opts Options) (*Lab, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if len(opts.Sites) > 14 {
		return nil, fmt.Errorf("create lab: %d sites, at most 14", len(opts.Sites))
	}
	prefix, err := labPrefix(opts.Name)
	if err != nil {
		return nil, err
	}
	l := &Lab{Prefix: prefix, logger: logger}
	l.Internet = &Namespace{Name: prefix + "inet", logger: logger}
	for i, kind := range opts.Sites {
		if _, err := ParseNAT(string(kind)); err != nil {
			return nil, fmt.Errorf("create lab: site %d: %w", i, err)
		}
		base := 16 * i
		l.Sites = append(l.Sites, &Site{
			Index:         i,
			NAT:           kind,
			Router:        &Namespace{Name: fmt.Sprintf("%sr%d", prefix, i), logger: logger},
			Host:          &Namespace{Name: fmt.Sprintf("%sh%d", prefix, i), logger: logger},
			WANAddr:       netip.AddrFrom4([4]byte{198, 51, 100, byte(10 + i)}),
			RouterLANAddr: netip.AddrFrom4([4]byte{203, 0, 113, byte(base + 1)}),
			HostAddr:      netip.AddrFrom4([4]byte{203, 0, 113, byte(base + 2)}),
		})
	}
	if err := l.build(ctx); err != nil {
		if cerr := l.Close(); cerr != nil {
			logger.Warn("natlab: teardown after failed create", "err", cerr)
		}
		return nil, fmt.Errorf("create lab %s: %w", prefix, err)
	}
	return l, nil
}

func labPrefix(name string) (string, error) {
	if name != "" {
		if !regexp.MustCompile(`^[a-z0-9]{1,24}$`).MatchString(name) {
			return "", fmt.Errorf("lab name %q: want 1-24 lowercase letters or digits", name)
		}
		return debugPrefix + name + "-", nil
	}
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("lab name: %w", err)
	}
	return fmt.Sprintf("%s%d-%s-", testPrefix, os.Getpid(), hex.EncodeToString(b[:])), nil
}

// Namespaces returns every namespace of the lab, internet first.
func (l *Lab) Namespaces() []*Namespace {
	out := []*Namespace{l.Internet}
	for _, s := range l.Sites {
		out = append(out, s.Router, s.Host)
	}
	return out
}

func (l *Lab) build(ctx context.Context) error {
	for _, ns := range l.Namespaces() {
		if err := run(ctx, l.logger, "ip", "netns", "add", ns.Name); err != nil {
			return err
		}
		if err := ns.IP(ctx, "link", "set", "lo", "up"); err != nil {
			return err
		}
	}
	in := l.Internet
	steps := [][]string{
		{"link", "add", ifBridge, "type", "bridge"},
		{"addr", "add", InternetAddr.String() + "/24", "dev", ifBridge},
		{"addr", "add", InternetAltAddr.String() + "/24", "dev", ifBridge},
		{"link", "set", ifBridge, "up"},
	}
	for _, s := range steps {
		if err := in.IP(ctx, s...); err != nil {
			return err
		}
	}
	for _, s := range l.Sites {
		if err := l.buildSite(ctx, s); err != nil {
			return fmt.Errorf("site %d: %w", s.Index, err)
		}
	}
	return nil
}

func (l *Lab) buildSite(ctx context.Context, s *Site) error {
	in, r, h := l.Internet, s.Router, s.Host
	port := fmt.Sprintf("s%d", s.Index)
	type step struct {
		ns   *Namespace
		args []string
	}
	steps := []step{
		{r, []string{"link", "add", ifWAN, "type", "veth", "peer", "name", port, "netns", in.Name}},
		{in, []string{"link", "set", port, "master", ifBridge}},
		{in, []string{"link", "set", port, "up"}},
		{r, []string{"addr", "add", s.WANAddr.String() + "/24", "dev", ifWAN}},
		{r, []string{"link", "set", ifWAN, "up"}},
		{r, []string{"link", "add", ifLAN, "type", "veth", "peer", "name", ifHost, "netns", h.Name}},
		{r, []string{"addr", "add", s.RouterLANAddr.String() + "/28", "dev", ifLAN}},
		{r, []string{"link", "set", ifLAN, "up"}},
		{h, []string{"addr", "add", s.HostAddr.String() + "/28", "dev", ifHost}},
		{h, []string{"link", "set", ifHost, "up"}},
		{h, []string{"route", "add", "default", "via", s.RouterLANAddr.String()}},
	}
	for _, st := range steps {
		if err := st.ns.IP(ctx, st.args...); err != nil {
			return err
		}
	}
	if _, err := r.Exec(ctx, "sysctl", "-qw", "net.ipv4.ip_forward=1"); err != nil {
		return err
	}
	// Like any home router, drop unsolicited traffic to the router itself.
	// Without this Linux confirms a connection-tracking entry for a peer's
	// packet that arrives before the host has sent to that peer, and the
	// host's own mapping for that peer then gets another port, breaking
	// simultaneous-open hole punching on an otherwise easy NAT.
	rules := [][]string{{"-A", "INPUT", "-i", ifWAN, "-m", "conntrack", "--ctstate", "NEW,INVALID", "-j", "DROP"}}
	switch s.NAT {
	case NATEasy, NATUDPBlocked:
		rules = append(rules, []string{"-t", "nat", "-A", "POSTROUTING", "-o", ifWAN, "-j", "MASQUERADE"})
	case NATEasyAF:
		rules = append(rules,
			[]string{"-t", "nat", "-A", "POSTROUTING", "-o", ifWAN, "-j", "MASQUERADE"},
			// Remember every address the host sends UDP to...
			[]string{"-A", "FORWARD", "-o", ifWAN, "-p", "udp", "-m", "recent", "--name", "natlab_out", "--rdest", "--set"},
			// ...and let new UDP flows from those addresses in, to the same
			// port on the host (MASQUERADE kept the host's port).
			[]string{"-t", "nat", "-A", "PREROUTING", "-i", ifWAN, "-p", "udp", "-m", "recent", "--name", "natlab_out", "--rsource", "--rcheck", "-j", "DNAT", "--to-destination", s.HostAddr.String()},
		)
	case NATHard:
		rules = append(rules, []string{"-t", "nat", "-A", "POSTROUTING", "-o", ifWAN, "-j", "MASQUERADE", "--random-fully"})
	}
	if s.NAT == NATUDPBlocked {
		rules = append(rules, []string{"-A", "FORWARD", "-p", "udp", "-j", "DROP"})
	}
	for _, rule := range rules {
		if err := r.IPTables(ctx, rule...); err != nil {
			return err
		}
	}
	return nil
}

// BlockUDP makes the site's router drop every forwarded UDP packet (a rule
// inserted first in FORWARD, so established flows are cut too). TCP keeps
// flowing.
func (s *Site) BlockUDP(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.udpBlocked {
		return nil
	}
	if err := s.Router.IPTables(ctx, "-I", "FORWARD", "1", "-p", "udp", "-j", "DROP"); err != nil {
		return fmt.Errorf("block udp on site %d: %w", s.Index, err)
	}
	s.udpBlocked = true
	return nil
}

// UnblockUDP removes the rule BlockUDP inserted.
func (s *Site) UnblockUDP(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.udpBlocked {
		return nil
	}
	if err := s.Router.IPTables(ctx, "-D", "FORWARD", "-p", "udp", "-j", "DROP"); err != nil {
		return fmt.Errorf("unblock udp on site %d: %w", s.Index, err)
	}
	s.udpBlocked = false
	return nil
}

// Rebind changes the public UDP port of the site's NAT mapping, as a home
// router does after a reboot or a mapping timeout: from now on the host's UDP
// traffic leaves from WANAddr:<new port> (the same port for every
// destination, so the mapping stays endpoint-independent) and the router's
// UDP connection-tracking state is flushed. It returns the new public port.
// Only sites with NATEasy mapping can be rebound.
func (s *Site) Rebind(ctx context.Context) (uint16, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.NAT != NATEasy {
		return 0, fmt.Errorf("rebind site %d: only %q sites can be rebound, this one is %q", s.Index, NATEasy, s.NAT)
	}
	s.rebindCount++
	port := uint16(rebindBasePort + s.rebindCount)
	op := []string{"-t", "nat", "-I", "POSTROUTING", "1"}
	if s.rebindCount > 1 {
		op = []string{"-t", "nat", "-R", "POSTROUTING", "1"}
	}
	rule := append(op, "-o", ifWAN, "-p", "udp", "-j", "SNAT",
		"--to-source", fmt.Sprintf("%s:%d", s.WANAddr, port))
	if err := s.Router.IPTables(ctx, rule...); err != nil {
		return 0, fmt.Errorf("rebind site %d: %w", s.Index, err)
	}
	if err := s.Router.FlushConntrack(ctx, "udp"); err != nil {
		return 0, fmt.Errorf("rebind site %d: %w", s.Index, err)
	}
	return port, nil
}

// Close kills every process left in the lab's namespaces and deletes them.
// It is safe to call more than once.
func (l *Lab) Close() error {
	l.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var errs []error
		for _, ns := range l.Namespaces() {
			if err := deleteNamespace(ctx, l.logger, ns.Name); err != nil {
				errs = append(errs, err)
			}
		}
		l.closeErr = errors.Join(errs...)
	})
	return l.closeErr
}

// Sweep deletes lab namespaces left behind by test processes that no longer
// exist (names "nlt<pid>-..."), killing whatever still runs in them. Labs of
// live processes and named labs are left alone.
func Sweep(ctx context.Context, logger *slog.Logger) error {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	names, err := ListNamespaces(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, name := range names {
		m := testNameRE.FindStringSubmatch(name)
		if m == nil {
			continue
		}
		pid, err := strconv.Atoi(m[1])
		if err != nil || processAlive(pid) {
			continue
		}
		logger.Info("natlab: removing stale namespace", "ns", name)
		if err := deleteNamespace(ctx, logger, name); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// DeleteNamed deletes every namespace of the named lab (Options.Name), killing
// whatever still runs in them. It is how scripts/natlab.sh tears a lab down.
func DeleteNamed(ctx context.Context, name string, logger *slog.Logger) error {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	prefix, err := labPrefix(name)
	if err != nil {
		return err
	}
	names, err := ListNamespaces(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, n := range names {
		if strings.HasPrefix(n, prefix) {
			if err := deleteNamespace(ctx, logger, n); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// ListNamespaces returns the names of every network namespace `ip netns`
// knows (lab or not).
func ListNamespaces(ctx context.Context) ([]string, error) {
	out, err := exec.CommandContext(ctx, "ip", "netns", "list").Output()
	if err != nil {
		return nil, fmt.Errorf("ip netns list: %w", err)
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	return names, nil
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

func deleteNamespace(ctx context.Context, logger *slog.Logger, name string) error {
	if _, err := os.Stat("/run/netns/" + name); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	// Processes keep a namespace alive after its name is gone: kill them first.
	if out, err := exec.CommandContext(ctx, "ip", "netns", "pids", name).Output(); err == nil {
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	if err := run(ctx, logger, "ip", "netns", "del", name); err != nil {
		return err
	}
	return nil
}

func (n *Namespace) log() *slog.Logger {
	if n.logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return n.logger
}

// IP runs `ip -n <ns> args...`.
func (n *Namespace) IP(ctx context.Context, args ...string) error {
	return run(ctx, n.log(), "ip", append([]string{"-n", n.Name}, args...)...)
}

// IPTables runs iptables inside the namespace (waiting for the xtables lock,
// which all namespaces share).
func (n *Namespace) IPTables(ctx context.Context, args ...string) error {
	_, err := n.Exec(ctx, "iptables", append([]string{"-w", "10"}, args...)...)
	return err
}

// FlushConntrack deletes the namespace's connection-tracking entries of the
// given protocol ("udp", "tcp"; empty means all).
func (n *Namespace) FlushConntrack(ctx context.Context, proto string) error {
	args := []string{"-D"}
	if proto != "" {
		args = append(args, "-p", proto)
	}
	out, err := n.Exec(ctx, "conntrack", args...)
	if err != nil && !strings.Contains(out, " 0 flow entries") {
		return err
	}
	return nil
}

// Exec runs a command inside the namespace and returns its combined output.
func (n *Namespace) Exec(ctx context.Context, name string, args ...string) (string, error) {
	cmd := n.Command(ctx, name, args...)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	n.log().Debug("natlab: exec", "ns", n.Name, "cmd", name, "args", args)
	if err := cmd.Run(); err != nil {
		return buf.String(), fmt.Errorf("in %s: %s %s: %w: %s", n.Name, name, strings.Join(args, " "), err, strings.TrimSpace(buf.String()))
	}
	return buf.String(), nil
}

// Command returns an exec.Cmd that runs name inside the namespace via
// `ip netns exec`.
func (n *Namespace) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

func run(ctx context.Context, logger *slog.Logger, name string, args ...string) error {
	logger.Debug("natlab: run", "cmd", name, "args", args)
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Check reports why labs cannot be created on this machine: not root, or a
// tool (ip, iptables, conntrack) missing. nil means labs can be built.
func Check() error {
	if os.Geteuid() != 0 {
		return errors.New("network namespaces need root (run the NAT lab tests as root)")
	}
	var missing []string
	for _, tool := range []string{"ip", "iptables", "conntrack"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing tools %v (Debian packages iproute2, iptables, conntrack)", missing)
	}
	return nil
}
