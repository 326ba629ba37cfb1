package agentproto

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// UDP relay protocol (tailnet TCP port UDPRelayPort).
//
// The mesh rejects inbound flows the agent does not serve, so UDP reaches
// the workspace through an explicit relay: the client opens a TCP stream
// to UDPRelayPort and sends a UDPRelayRequest as JSON on one line ending
// in a newline (at most MaxUDPRelayHeader bytes). The agent answers with a
// UDPRelayResponse line; when its Error is empty, both sides then exchange
// datagrams, each framed as a 2-byte big-endian length followed by the
// payload (UDPFrameConn). The agent sends every datagram from one UDP
// socket connected to the target, and relays what the target answers. The
// relay ends when either side closes the stream, or after the idle timeout
// without a datagram in either direction.
const (
	// MaxUDPDatagram is the largest datagram the relay carries.
	MaxUDPDatagram = 65535
	// MaxUDPRelayHeader bounds the request line of a UDP relay, newline
	// included.
	MaxUDPRelayHeader = 4 << 10
	// DefaultUDPRelayIdleTimeout ends a relay without traffic when the
	// request names no idle timeout.
	DefaultUDPRelayIdleTimeout = 2 * time.Minute
	// MaxUDPRelayIdleTimeout bounds the idle timeout a client may ask for.
	MaxUDPRelayIdleTimeout = time.Hour
)

// UDPRelayRequest opens a UDP relay.
type UDPRelayRequest struct {
	// Target is the UDP address dialled in the workspace; only loopback
	// addresses (127.0.0.0/8, ::1) are accepted.
	Target string `json:"target"`
	// IdleTimeout ends the relay after this long without a datagram
	// (0: DefaultUDPRelayIdleTimeout; capped at MaxUDPRelayIdleTimeout).
	IdleTimeout time.Duration `json:"idle_timeout,omitempty"`
}

// UDPRelayResponse answers a UDPRelayRequest; a non-empty Error means the
// agent refused it and closes the stream.
type UDPRelayResponse struct {
	Error string `json:"error,omitempty"`
}

// ParseUDPRelayTarget checks that target is a loopback "ip:port" the relay
// may dial and returns it.
func ParseUDPRelayTarget(target string) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(target)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("udp relay target %q: want a loopback ip:port: %w", target, err)
	}
	addr := ap.Addr().Unmap()
	if !addr.IsLoopback() {
		return netip.AddrPort{}, fmt.Errorf("udp relay target %q: only loopback addresses in the workspace may be reached", target)
	}
	if ap.Port() == 0 {
		return netip.AddrPort{}, fmt.Errorf("udp relay target %q: port 0", target)
	}
	return netip.AddrPortFrom(addr, ap.Port()), nil
}

// OpenUDPRelay is the client side of the relay handshake: it sends req on
// stream (a connection to the agent's UDPRelayPort), reads the agent's
// answer and returns the datagram connection over stream, whose
// RemoteAddr is the target. The agent decides which targets it accepts; a
// refusal is returned as an error carrying the agent's message. On error
// the caller still owns stream; to bound the handshake, set a deadline on
// stream or close it.
func OpenUDPRelay(stream net.Conn, req UDPRelayRequest) (*UDPFrameConn, error) {
	hdr, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encode relay request: %w", err)
	}
	if len(hdr)+1 > MaxUDPRelayHeader {
		return nil, fmt.Errorf("relay request of %d bytes exceeds %d", len(hdr)+1, MaxUDPRelayHeader)
	}
	if _, err := stream.Write(append(hdr, '\n')); err != nil {
		return nil, fmt.Errorf("send relay request: %w", err)
	}
	// The agent may send datagrams right after its answer, so the reader
	// holding them becomes the frame reader.
	br := bufio.NewReaderSize(stream, 64<<10)
	line, err := br.ReadSlice('\n')
	if err != nil {
		return nil, fmt.Errorf("read relay response: %w", err)
	}
	var res UDPRelayResponse
	if err := json.Unmarshal(line, &res); err != nil {
		return nil, fmt.Errorf("decode relay response: %w", err)
	}
	if res.Error != "" {
		return nil, fmt.Errorf("agent refused: %s", res.Error)
	}
	var remote net.Addr
	if ap, err := netip.ParseAddrPort(req.Target); err == nil {
		remote = net.UDPAddrFromAddrPort(ap)
	}
	return NewUDPFrameConn(stream, br, remote), nil
}

// RelayDatagrams moves datagrams between a and b, two datagram
// connections (each Read returns one datagram, each Write sends one: a
// connected UDP socket or a UDPFrameConn), until either side fails or
// nothing moves in either direction for idle. It closes both before
// returning. The agent and clients of the relay both use it; logger may be
// nil.
func RelayDatagrams(a, b net.Conn, idle time.Duration, logger *slog.Logger) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	var once sync.Once
	done := make(chan struct{})
	stop := func() {
		once.Do(func() {
			close(done)
			_ = a.Close()
			_ = b.Close()
		})
	}
	var wg sync.WaitGroup
	copyDatagrams := func(dst, src net.Conn) {
		defer wg.Done()
		defer stop()
		buf := make([]byte, MaxUDPDatagram)
		for {
			n, err := src.Read(buf)
			if err != nil {
				if isTransientUDPError(err) {
					continue
				}
				if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
					logger.Debug("udp relay: receive datagram", "error", err)
				}
				return
			}
			last.Store(time.Now().UnixNano())
			if _, err := dst.Write(buf[:n]); err != nil && !isTransientUDPError(err) {
				if !errors.Is(err, net.ErrClosed) {
					logger.Debug("udp relay: send datagram", "error", err)
				}
				return
			}
		}
	}
	wg.Add(2)
	go copyDatagrams(a, b)
	go copyDatagrams(b, a)
	timer := time.NewTimer(idle)
	defer timer.Stop()
	for {
		select {
		case <-done:
			wg.Wait()
			return
		case <-timer.C:
			quiet := time.Since(time.Unix(0, last.Load()))
			if quiet >= idle {
				logger.Debug("udp relay idle; closing", "idle", quiet)
				stop()
				wg.Wait()
				return
			}
			timer.Reset(idle - quiet)
		}
	}
}

// isTransientUDPError reports errors that concern one datagram (an ICMP
// port unreachable from a target not listening yet) rather than the
// socket.
func isTransientUDPError(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH)
}

// UDPFrameConn carries datagrams over a relay stream: each Write sends one
// datagram as a frame, each Read returns one datagram (truncated, like a
// UDP socket, when p is too small). Reads and writes are each serialized.
type UDPFrameConn struct {
	net.Conn
	r io.Reader

	rmu     sync.Mutex
	readErr error
	wmu     sync.Mutex
	wbuf    []byte
	remote  net.Addr
}

// NewUDPFrameConn wraps stream; frames are read from r (stream itself, or
// a buffered reader over it holding bytes already read). remote, when not
// nil, is what RemoteAddr reports.
func NewUDPFrameConn(stream net.Conn, r io.Reader, remote net.Addr) *UDPFrameConn {
	if r == nil {
		r = stream
	}
	return &UDPFrameConn{Conn: stream, r: r, remote: remote}
}

// RemoteAddr is the relay's target when known, else the stream's peer.
func (f *UDPFrameConn) RemoteAddr() net.Addr {
	if f.remote != nil {
		return f.remote
	}
	return f.Conn.RemoteAddr()
}

// Read returns the next datagram. An error in the middle of a frame
// (a read deadline, say) breaks the framing, so it is returned by every
// later Read too.
func (f *UDPFrameConn) Read(p []byte) (int, error) {
	f.rmu.Lock()
	defer f.rmu.Unlock()
	if f.readErr != nil {
		return 0, f.readErr
	}
	var hdr [2]byte
	if n, err := io.ReadFull(f.r, hdr[:]); err != nil {
		if n > 0 {
			f.readErr = fmt.Errorf("read udp frame: %w", io.ErrUnexpectedEOF)
		}
		return 0, err
	}
	size := int(binary.BigEndian.Uint16(hdr[:]))
	n := min(size, len(p))
	if _, err := io.ReadFull(f.r, p[:n]); err != nil {
		f.readErr = fmt.Errorf("read udp frame: %w", err)
		return 0, f.readErr
	}
	if rest := size - n; rest > 0 {
		if _, err := io.CopyN(io.Discard, f.r, int64(rest)); err != nil {
			f.readErr = fmt.Errorf("read udp frame: %w", err)
			return 0, f.readErr
		}
	}
	return n, nil
}

// Write sends p as one datagram.
func (f *UDPFrameConn) Write(p []byte) (int, error) {
	if len(p) > MaxUDPDatagram {
		return 0, fmt.Errorf("datagram of %d bytes exceeds %d", len(p), MaxUDPDatagram)
	}
	f.wmu.Lock()
	defer f.wmu.Unlock()
	f.wbuf = append(f.wbuf[:0], 0, 0)
	binary.BigEndian.PutUint16(f.wbuf, uint16(len(p)))
	f.wbuf = append(f.wbuf, p...)
	if _, err := f.Conn.Write(f.wbuf); err != nil {
		return 0, err
	}
	return len(p), nil
}
