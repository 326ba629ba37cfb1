package derp

import (
	"fmt"
	"log/slog"
	"net/http"

	"tailscale.com/derp/derpserver"
	"tailscale.com/types/key"
)

// Server is an embedded DERP relay. Mount Handler at "/derp" (and
// "/derp/latency-check") of an HTTP server; that HTTP server must support
// connection hijacking (HTTP/1.1), which plain net/http does.
type Server struct {
	derp    *derpserver.Server
	handler http.Handler
	logger  *slog.Logger
	// admission is the loopback admission controller (AdmitOnly).
	admission *admission
	// mesh follows the region's other relays (SetMeshPeers).
	mesh mesh
}

// NewServer returns a DERP relay. privateKey identifies the relay to its
// clients; the zero key generates a fresh one (clients do not pin it, the
// TLS certificate authenticates the relay). A nil logger discards logs.
func NewServer(logger *slog.Logger, privateKey key.NodePrivate) *Server {
	logger = discardLogger(logger).With("component", "derp")
	if privateKey.IsZero() {
		privateKey = key.NewNode()
	}
	srv := derpserver.New(privateKey, logfFor(logger))
	// Upgrade: DERP (the native protocol, used by magicsock) and
	// Upgrade: websocket with the "derp" subprotocol (used by clients that
	// can only speak websockets, e.g. behind proxies or in browsers).
	h := derpserver.AddWebSocketSupport(srv, derpserver.Handler(srv))
	return &Server{derp: srv, handler: h, logger: logger}
}

// PublicKey returns the relay's public key.
func (s *Server) PublicKey() key.NodePublic { return s.derp.PublicKey() }

// ServeHTTP serves "/derp" (DERP and websocket upgrades),
// "/derp/latency-check" and "/derp/probe" (latency probes answered with 200
// to GET and HEAD). Every other path is answered with 404.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/derp/latency-check", "/derp/probe":
		derpserver.ProbeHandler(w, r)
	case "/derp":
		s.handler.ServeHTTP(w, r)
	default:
		http.NotFound(w, r)
	}
}

// Handler returns s as an http.Handler (for routers that want one).
func (s *Server) Handler() http.Handler { return s }

// Close disconnects every client and stops the relay. It waits for the
// connections to finish.
func (s *Server) Close() error {
	s.stopMesh()
	err := s.derp.Close()
	if s.admission != nil {
		s.admission.close()
	}
	if err != nil {
		return fmt.Errorf("close derp server: %w", err)
	}
	return nil
}
