package agentproto

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/google/uuid"
)

// Reconnecting PTY protocol (tailnet TCP port ReconnectingPTYPort).
//
// A stream connection carries frames in both directions:
//
//	+--------+----------------------+-----------------+
//	| type   | length (uint32, BE)  | payload         |
//	| 1 byte | 4 bytes              | length bytes    |
//	+--------+----------------------+-----------------+
//
// Payloads are at most MaxPTYPayload bytes. Several clients may attach to
// one PTY at once; all see the output and all may type. The agent kills a
// PTY that has had no client attached for a while (five minutes by
// default).
const (
	// PTYFrameInit (client to server, first frame, exactly once) carries a
	// PTYInit as JSON. An ID the server does not know starts a new PTY
	// running Command through the shell (`shell -c command`, or a login
	// shell when Command is empty); a known ID re-attaches: the server first
	// sends the scrollback (the most recent output it kept) as one
	// PTYFrameData, then live output.
	PTYFrameInit byte = 1
	// PTYFrameData (both directions) carries client input for the terminal,
	// or terminal output for the client.
	PTYFrameData byte = 2
	// PTYFrameResize (client to server) carries a PTYResize as JSON.
	PTYFrameResize byte = 3
	// PTYFrameExit (server to client, last frame) carries a PTYExit as JSON
	// once the process exited; the server then closes the connection.
	PTYFrameExit byte = 4
	// PTYFrameError (server to client) carries a UTF-8 message; the server
	// then closes the connection (for example after a malformed init frame).
	PTYFrameError byte = 5
)

// MaxPTYPayload is the largest frame payload either side accepts.
const MaxPTYPayload = 1 << 20

// ptyHeaderLen is the size of a frame header: type and length.
const ptyHeaderLen = 5

// PTYInit is the payload of PTYFrameInit.
type PTYInit struct {
	ID      uuid.UUID `json:"id"`
	Height  uint16    `json:"height"`
	Width   uint16    `json:"width"`
	Command string    `json:"command"`
}

// PTYResize is the payload of PTYFrameResize.
type PTYResize struct {
	Height uint16 `json:"height"`
	Width  uint16 `json:"width"`
}

// PTYExit is the payload of PTYFrameExit.
type PTYExit struct {
	ExitCode int `json:"exit_code"`
}

// WritePTYFrame writes one frame of type typ with payload in a single Write.
func WritePTYFrame(w io.Writer, typ byte, payload []byte) error {
	if len(payload) > MaxPTYPayload {
		return fmt.Errorf("frame payload %d bytes exceeds %d", len(payload), MaxPTYPayload)
	}
	buf := make([]byte, ptyHeaderLen+len(payload))
	buf[0] = typ
	binary.BigEndian.PutUint32(buf[1:ptyHeaderLen], uint32(len(payload)))
	copy(buf[ptyHeaderLen:], payload)
	if _, err := w.Write(buf); err != nil {
		return fmt.Errorf("write frame: %w", err)
	}
	return nil
}

// ReadPTYFrame reads one frame. It returns io.EOF unwrapped when r ends
// cleanly before a frame starts.
func ReadPTYFrame(r io.Reader) (typ byte, payload []byte, err error) {
	var hdr [ptyHeaderLen]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > MaxPTYPayload {
		return 0, nil, fmt.Errorf("frame payload %d bytes exceeds %d", n, MaxPTYPayload)
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		return 0, nil, fmt.Errorf("read frame payload: %w", err)
	}
	return hdr[0], payload, nil
}

// PTYConn is the client side of a reconnecting PTY connection. Read
// returns terminal output (the scrollback first when re-attaching) and
// io.EOF after the process exited or the server closed the connection.
type PTYConn struct {
	conn net.Conn

	wmu sync.Mutex

	rmu     sync.Mutex
	pending []byte
	exit    *PTYExit
	err     error
}

// AttachPTY sends the init frame on conn (a stream to the agent's
// ReconnectingPTYPort) and returns the attached terminal. On error the
// caller still owns conn.
func AttachPTY(conn net.Conn, init PTYInit) (*PTYConn, error) {
	payload, err := json.Marshal(init)
	if err != nil {
		return nil, fmt.Errorf("encode init: %w", err)
	}
	if err := WritePTYFrame(conn, PTYFrameInit, payload); err != nil {
		return nil, fmt.Errorf("send init: %w", err)
	}
	return &PTYConn{conn: conn}, nil
}

// Read reads terminal output.
func (c *PTYConn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for len(c.pending) == 0 {
		if c.err != nil {
			return 0, c.err
		}
		typ, payload, err := ReadPTYFrame(c.conn)
		switch {
		case err != nil:
			c.err = io.EOF
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				c.err = fmt.Errorf("read frame: %w", err)
			}
		case typ == PTYFrameData:
			c.pending = payload
		case typ == PTYFrameExit:
			var e PTYExit
			if err := json.Unmarshal(payload, &e); err != nil {
				c.err = fmt.Errorf("decode exit: %w", err)
			} else {
				c.exit = &e
				c.err = io.EOF
			}
		case typ == PTYFrameError:
			c.err = fmt.Errorf("reconnecting pty: %s", payload)
		default:
			c.err = fmt.Errorf("unexpected frame type %d", typ)
		}
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

// Write sends input to the terminal, split into frames of at most
// MaxPTYPayload bytes.
func (c *PTYConn) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		chunk := p[:min(len(p), MaxPTYPayload)]
		if err := c.send(PTYFrameData, chunk); err != nil {
			return written, err
		}
		written += len(chunk)
		p = p[len(chunk):]
	}
	return written, nil
}

// Resize changes the terminal size.
func (c *PTYConn) Resize(height, width uint16) error {
	payload, err := json.Marshal(PTYResize{Height: height, Width: width})
	if err != nil {
		return fmt.Errorf("encode resize: %w", err)
	}
	return c.send(PTYFrameResize, payload)
}

// ExitCode reports the process's exit code once Read returned io.EOF
// because the process exited; ok is false otherwise.
func (c *PTYConn) ExitCode() (code int, ok bool) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if c.exit == nil {
		return 0, false
	}
	return c.exit.ExitCode, true
}

// Close detaches from the terminal; the PTY keeps running on the server.
func (c *PTYConn) Close() error {
	return c.conn.Close()
}

func (c *PTYConn) send(typ byte, payload []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return WritePTYFrame(c.conn, typ, payload)
}
