package derp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"

	"tailscale.com/net/stun"
)

// DefaultSTUNPort is the standard STUN port. coderd listens on it on the
// hosts its HTTP server is bound to unless STUN addresses are configured.
const DefaultSTUNPort = 3478

// ListenSTUN answers STUN binding requests on the UDP address addr (e.g.
// "0.0.0.0:3478", or "127.0.0.1:0" for a random port) until ctx is done or the
// returned closer is closed. It returns the address actually bound. Anything
// that is not a binding request is ignored.
func ListenSTUN(ctx context.Context, addr string, logger *slog.Logger) (net.Addr, io.Closer, error) {
	logger = discardLogger(logger).With("component", "stun")
	var lc net.ListenConfig
	pc, err := lc.ListenPacket(ctx, "udp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("listen stun on %s: %w", addr, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	s := &stunServer{pc: pc, cancel: cancel, done: make(chan struct{})}
	stop := context.AfterFunc(ctx, func() { _ = pc.Close() })
	go func() {
		defer close(s.done)
		defer stop()
		s.serve(logger)
	}()
	logger.Info("stun listening", "addr", pc.LocalAddr().String())
	return pc.LocalAddr(), s, nil
}

type stunServer struct {
	pc     net.PacketConn
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

func (s *stunServer) serve(logger *slog.Logger) {
	buf := make([]byte, 64<<10)
	for {
		n, from, err := s.pc.ReadFrom(buf)
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				logger.Warn("stun read failed", "err", err)
			}
			return
		}
		pkt := buf[:n]
		if !stun.Is(pkt) {
			continue
		}
		txID, err := stun.ParseBindingRequest(pkt)
		if err != nil {
			logger.Debug("ignoring non-binding stun packet", "from", from.String(), "err", err)
			continue
		}
		ua, ok := from.(*net.UDPAddr)
		if !ok {
			continue
		}
		ap := ua.AddrPort()
		ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		if _, err := s.pc.WriteTo(stun.Response(txID, ap), from); err != nil {
			logger.Debug("stun reply failed", "to", from.String(), "err", err)
		}
	}
}

// Close stops the listener and waits for its goroutine.
func (s *stunServer) Close() error {
	s.once.Do(func() {
		s.cancel()
		_ = s.pc.Close()
	})
	<-s.done
	return nil
}
