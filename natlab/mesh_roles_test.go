package natlab_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"

	"github.com/wgmesh/coder/coordinator"
	"github.com/wgmesh/coder/derp"
	"github.com/wgmesh/coder/natlab"
	"github.com/wgmesh/coder/tunnel"
)

// Roles of the mesh tests.
const (
	roleMeshServer = "mesh-server"
	roleMeshPeer   = "mesh-peer"
)

// Environment of the mesh roles.
const (
	envPeers    = "NATLAB_PEERS"     // server: comma-separated peer UUIDs allowed to tunnel to each other
	envPeerID   = "NATLAB_PEER_ID"   // peer: our UUID
	envCoordURL = "NATLAB_COORD_URL" // peer: websocket URL of the coordinator
	envDERPMap  = "NATLAB_DERP_MAP"  // peer: JSON DERP map
)

// Ports of the server node on natlab.InternetAddr.
const (
	derpTLSPort   = 443
	coordHTTPPort = 80
	stunPort      = 3478
)

func meshRoles() map[string]natlab.Role {
	return map[string]natlab.Role{
		roleMeshServer: meshServerRole,
		roleMeshPeer:   meshPeerRole,
	}
}

// meshServerReady is what the server node reports.
type meshServerReady struct {
	CoordURL string           `json:"coord_url"`
	DERPMap  *tailcfg.DERPMap `json:"derp_map"`
}

// meshServerRole runs, on the lab internet, what coderd runs for the mesh: a
// DERP relay over TLS (self-signed, pinned in the map with sha256-raw), STUN,
// and an in-memory coordinator served over websockets whose authorizer lets
// the lab's peers (and nobody else) tunnel to each other.
func meshServerRole(ctx context.Context, logger *slog.Logger) (any, natlab.Handler, func(), error) {
	allowed := map[uuid.UUID]bool{}
	for _, s := range strings.Split(os.Getenv(envPeers), ",") {
		id, err := uuid.Parse(s)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("%s: %w", envPeers, err)
		}
		allowed[id] = true
	}
	var stops []func()
	stopAll := func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	fail := func(err error) (any, natlab.Handler, func(), error) {
		stopAll()
		return nil, nil, nil, err
	}

	// STUN.
	stunAddr := netip.AddrPortFrom(natlab.InternetAddr, stunPort).String()
	_, stunCloser, err := derp.ListenSTUN(ctx, stunAddr, logger)
	if err != nil {
		return fail(fmt.Errorf("stun: %w", err))
	}
	stops = append(stops, func() { _ = stunCloser.Close() })

	// DERP over TLS.
	cert, certName, err := selfSignedCert(natlab.InternetAddr)
	if err != nil {
		return fail(err)
	}
	relay := derp.NewServer(logger, key.NodePrivate{})
	stops = append(stops, func() { _ = relay.Close() })
	derpLn, err := tls.Listen("tcp4", netip.AddrPortFrom(natlab.InternetAddr, derpTLSPort).String(),
		&tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}})
	if err != nil {
		return fail(fmt.Errorf("derp listen: %w", err))
	}
	derpSrv := &http.Server{Handler: relay, ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelDebug)}
	serve(&stops, derpSrv, derpLn)

	accessURL := &url.URL{Scheme: "https", Host: netip.AddrPortFrom(natlab.InternetAddr, derpTLSPort).String()}
	derpMap, err := derp.BuildMap(ctx, derp.MapOptions{
		EnableEmbedded: true,
		AccessURL:      accessURL,
		CertName:       certName,
		STUNAddresses:  []string{stunAddr},
	})
	if err != nil {
		return fail(err)
	}

	// Coordinator over plain-HTTP websockets.
	derpMaps := coordinator.NewDERPMapPublisher(derpMap)
	coord := coordinator.NewInMemory(logger.With("component", "coordinator"))
	stops = append(stops, func() { _ = coord.Close() })
	mux := http.NewServeMux()
	mux.HandleFunc("/coordinate", func(w http.ResponseWriter, r *http.Request) {
		id, err := uuid.Parse(r.URL.Query().Get("id"))
		if err != nil || !allowed[id] {
			http.Error(w, "unknown peer", http.StatusForbidden)
			return
		}
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		err = coordinator.ServeWebsocket(r.Context(), ws, coordinator.ServeOptions{
			Coordinator: coord,
			ID:          id,
			Name:        id.String(),
			Auth:        labAuth{allowed: allowed},
			DERPMaps:    derpMaps,
			Logger:      logger.With("component", "coordinator"),
		})
		if err != nil {
			logger.Debug("coordinate", "peer", id, "err", err)
		}
	})
	coordLn, err := net.Listen("tcp4", netip.AddrPortFrom(natlab.InternetAddr, coordHTTPPort).String())
	if err != nil {
		return fail(fmt.Errorf("coordinator listen: %w", err))
	}
	coordSrv := &http.Server{Handler: mux, ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelDebug)}
	serve(&stops, coordSrv, coordLn)

	ready := meshServerReady{
		CoordURL: "ws://" + coordLn.Addr().String() + "/coordinate",
		DERPMap:  derpMap,
	}
	h := func(ctx context.Context, cmd string, args []string) (any, error) {
		return nil, fmt.Errorf("unknown command %q", cmd)
	}
	return ready, h, stopAll, nil
}

// serve runs srv on ln until the returned stop (appended to stops) closes it.
func serve(stops *[]func(), srv *http.Server, ln net.Listener) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	*stops = append(*stops, func() {
		_ = srv.Close()
		<-done
	})
}

// labAuth lets the lab's peers add tunnels to each other.
type labAuth struct{ allowed map[uuid.UUID]bool }

func (a labAuth) AuthorizeTunnel(_ context.Context, src, dst uuid.UUID) error {
	if !a.allowed[src] || !a.allowed[dst] {
		return errors.New("not a lab peer")
	}
	return nil
}

// selfSignedCert makes a TLS certificate for ip and the DERP node CertName
// pinning it ("sha256-raw:<hex of the DER certificate's SHA-256>").
func selfSignedCert(ip netip.Addr) (tls.Certificate, string, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, "", fmt.Errorf("cert key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: ip.String()},
		IPAddresses:  []net.IP{ip.AsSlice()},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		return tls.Certificate{}, "", fmt.Errorf("create cert: %w", err)
	}
	sum := sha256.Sum256(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv}, "sha256-raw:" + hex.EncodeToString(sum[:]), nil
}

// meshPeerReady is what a peer node reports.
type meshPeerReady struct {
	ID uuid.UUID  `json:"id"`
	IP netip.Addr `json:"ip"`
}

// meshPeerRole runs a tunnel.Conn kept in sync with the coordinator by a
// coordinator.Controller, and answers:
//
//	listen PORT        accept TCP on our tailnet address and echo
//	add-tunnel UUID    ask the coordinator for a tunnel to that peer
//	await IP           disco-ping IP until it answers
//	ping IP            one disco ping: tunnel.PingResult
//	open IP:PORT       dial TCP through the tunnel and keep the stream
//	echo N             send N bytes on the stream and read them back
//	status             tunnel.Status
func meshPeerRole(ctx context.Context, logger *slog.Logger) (any, natlab.Handler, func(), error) {
	id, err := uuid.Parse(os.Getenv(envPeerID))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%s: %w", envPeerID, err)
	}
	var derpMap tailcfg.DERPMap
	if err := json.Unmarshal([]byte(os.Getenv(envDERPMap)), &derpMap); err != nil {
		return nil, nil, nil, fmt.Errorf("%s: %w", envDERPMap, err)
	}
	coordURL := os.Getenv(envCoordURL)
	conn, err := tunnel.NewConn(tunnel.Options{
		Addresses: []netip.Prefix{tunnel.PrefixFromUUID(id)},
		DERPMap:   &derpMap,
		Logger:    logger.With("component", "tunnel"),
	})
	if err != nil {
		return nil, nil, nil, err
	}
	dial := func(ctx context.Context) (*websocket.Conn, error) {
		ws, _, err := websocket.Dial(ctx, coordURL+"?id="+id.String(), nil)
		return ws, err
	}
	ctrl, err := coordinator.NewController(coordinator.ControllerOptions{
		Conn:   conn,
		Dial:   dial,
		Logger: logger.With("component", "controller"),
	})
	if err != nil {
		_ = conn.Close()
		return nil, nil, nil, err
	}
	p := &meshPeer{conn: conn, ctrl: ctrl, logger: logger}
	stop := func() {
		p.closeStream()
		p.closeListener()
		_ = ctrl.Close()
		_ = conn.Close()
	}
	ip := tunnel.IPFromUUID(id)
	return meshPeerReady{ID: id, IP: ip}, p.handle, stop, nil
}

type meshPeer struct {
	conn   *tunnel.Conn
	ctrl   *coordinator.Controller
	logger *slog.Logger

	mu      sync.Mutex
	ln      net.Listener
	lnDone  chan struct{}
	stream  net.Conn
	sentSeq int
}

func (p *meshPeer) handle(ctx context.Context, cmd string, args []string) (any, error) {
	arg := func() (string, error) {
		if len(args) != 1 {
			return "", fmt.Errorf("%s: want one argument", cmd)
		}
		return args[0], nil
	}
	switch cmd {
	case "status":
		return p.conn.Status(), nil
	case "listen":
		a, err := arg()
		if err != nil {
			return nil, err
		}
		return nil, p.listen(a)
	case "add-tunnel":
		a, err := arg()
		if err != nil {
			return nil, err
		}
		dst, err := uuid.Parse(a)
		if err != nil {
			return nil, err
		}
		p.ctrl.AddTunnel(dst)
		return nil, nil
	case "await", "ping":
		a, err := arg()
		if err != nil {
			return nil, err
		}
		ip, err := netip.ParseAddr(a)
		if err != nil {
			return nil, err
		}
		if cmd == "await" {
			if !p.conn.AwaitReachable(ctx, ip) {
				return nil, fmt.Errorf("await %s: not reachable: %w", ip, ctx.Err())
			}
			return nil, nil
		}
		return p.conn.Ping(ctx, ip)
	case "open":
		a, err := arg()
		if err != nil {
			return nil, err
		}
		return nil, p.open(ctx, a)
	case "echo":
		a, err := arg()
		if err != nil {
			return nil, err
		}
		n, err := strconv.Atoi(a)
		if err != nil {
			return nil, err
		}
		return nil, p.echo(ctx, n)
	}
	return nil, fmt.Errorf("unknown command %q", cmd)
}

func (p *meshPeer) listen(port string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		return errors.New("already listening")
	}
	ln, err := p.conn.Listen("tcp", ":"+port)
	if err != nil {
		return err
	}
	p.ln, p.lnDone = ln, make(chan struct{})
	go func() {
		defer close(p.lnDone)
		var wg sync.WaitGroup
		defer wg.Wait()
		var mu sync.Mutex
		var open []net.Conn
		defer func() {
			mu.Lock()
			for _, c := range open {
				_ = c.Close()
			}
			mu.Unlock()
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				mu.Lock()
				for _, c := range open {
					_ = c.Close()
				}
				open = nil
				mu.Unlock()
				return
			}
			mu.Lock()
			open = append(open, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return nil
}

func (p *meshPeer) closeListener() {
	p.mu.Lock()
	ln, done := p.ln, p.lnDone
	p.ln = nil
	p.mu.Unlock()
	if ln != nil {
		_ = ln.Close()
		<-done
	}
}

func (p *meshPeer) open(ctx context.Context, addr string) error {
	c, err := p.conn.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("dial %s: %w", addr, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stream != nil {
		_ = p.stream.Close()
	}
	p.stream = c
	return nil
}

func (p *meshPeer) closeStream() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stream != nil {
		_ = p.stream.Close()
		p.stream = nil
	}
}

// echo sends n bytes on the open stream and reads them back, within ctx.
// A failed echo leaves the stream unusable (its bytes are out of step), so
// it is closed.
func (p *meshPeer) echo(ctx context.Context, n int) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stream == nil {
		return errors.New("no open stream")
	}
	p.sentSeq++
	msg := bytes.Repeat([]byte{byte('a' + p.sentSeq%26)}, n)
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Now().Add(30 * time.Second)
	}
	if err := p.stream.SetDeadline(dl); err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() {
		_, err := p.stream.Write(msg)
		errc <- err
	}()
	back := make([]byte, n)
	_, rerr := io.ReadFull(p.stream, back)
	werr := <-errc
	if err := errors.Join(werr, rerr); err != nil {
		_ = p.stream.Close()
		p.stream = nil
		return fmt.Errorf("echo %d bytes: %w", n, err)
	}
	if !bytes.Equal(back, msg) {
		return errors.New("echo came back different")
	}
	return nil
}
