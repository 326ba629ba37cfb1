package reconnectingpty

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
)

// Conn is the client side of a reconnecting PTY connection. Read returns
// terminal output (the scrollback first when re-attaching) and io.EOF after
// the process exited or the server closed the connection.
type Conn struct {
	conn net.Conn

	wmu sync.Mutex

	rmu     sync.Mutex
	pending []byte
	exit    *Exit
	err     error
}

// Dial sends the init frame on conn (for example a TCP connection to the
// agent's reconnecting PTY port) and returns the attached terminal.
func Dial(conn net.Conn, req InitRequest) (*Conn, error) {
	payload, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encode init: %w", err)
	}
	if err := writeFrame(conn, FrameInit, payload); err != nil {
		return nil, fmt.Errorf("send init: %w", err)
	}
	return &Conn{conn: conn}, nil
}

// Read reads terminal output.
func (c *Conn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for len(c.pending) == 0 {
		if c.err != nil {
			return 0, c.err
		}
		typ, payload, err := readFrame(c.conn)
		switch {
		case err != nil:
			c.err = io.EOF
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				c.err = fmt.Errorf("read frame: %w", err)
			}
		case typ == FrameData:
			c.pending = payload
		case typ == FrameExit:
			var e Exit
			if err := json.Unmarshal(payload, &e); err != nil {
				c.err = fmt.Errorf("decode exit: %w", err)
			} else {
				c.exit = &e
				c.err = io.EOF
			}
		case typ == FrameError:
			c.err = fmt.Errorf("reconnecting pty: %s", payload)
		default:
			c.err = fmt.Errorf("unexpected frame type %d", typ)
		}
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

// Write sends input to the terminal.
func (c *Conn) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		chunk := p
		if len(chunk) > MaxPayload {
			chunk = chunk[:MaxPayload]
		}
		if err := c.send(FrameData, chunk); err != nil {
			return written, err
		}
		written += len(chunk)
		p = p[len(chunk):]
	}
	return written, nil
}

// Resize changes the terminal size.
func (c *Conn) Resize(height, width uint16) error {
	payload, err := json.Marshal(Resize{Height: height, Width: width})
	if err != nil {
		return fmt.Errorf("encode resize: %w", err)
	}
	return c.send(FrameResize, payload)
}

// ExitCode reports the process's exit code once Read returned io.EOF
// because the process exited; ok is false otherwise.
func (c *Conn) ExitCode() (code int, ok bool) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if c.exit == nil {
		return 0, false
	}
	return c.exit.ExitCode, true
}

// Close detaches from the terminal; the PTY keeps running on the server.
func (c *Conn) Close() error {
	return c.conn.Close()
}

func (c *Conn) send(typ byte, payload []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return writeFrame(c.conn, typ, payload)
}
