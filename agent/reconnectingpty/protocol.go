// Package reconnectingpty serves the web terminal: pseudo-terminals that
// survive client disconnects and can be re-attached by ID.
//
// # Wire protocol
//
// A stream connection (TCP over the mesh) carries frames in both directions:
//
//	+--------+----------------------+-----------------+
//	| type   | length (uint32, BE)  | payload         |
//	| 1 byte | 4 bytes              | length bytes    |
//	+--------+----------------------+-----------------+
//
// Payloads are at most MaxPayload bytes. Frame types:
//
//   - FrameInit (client to server, first frame, exactly once): JSON InitRequest
//     {"id": uuid, "height": rows, "width": cols, "command": "..."}. An ID
//     not known to the server starts a new PTY running command through the
//     shell (`shell -c command`, or a login shell when command is empty); a
//     known ID re-attaches: the server first sends the scrollback (the last
//     ScrollbackBytes of output) as one FrameData, then live output.
//   - FrameData (both directions): client input for the terminal, or terminal
//     output for the client.
//   - FrameResize (client to server): JSON {"height": rows, "width": cols}.
//   - FrameExit (server to client, last frame): JSON {"exit_code": n} once
//     the process exited; the server then closes the connection.
//   - FrameError (server to client): UTF-8 message; the server then closes the
//     connection (for example a malformed init frame).
//
// Several clients may attach to one PTY at once; all see the output and all
// may type. A PTY with no client attached for Server.Timeout is killed.
package reconnectingpty

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/google/uuid"
)

// Frame types of the wire protocol.
const (
	FrameInit   byte = 1
	FrameData   byte = 2
	FrameResize byte = 3
	FrameExit   byte = 4
	FrameError  byte = 5
)

// MaxPayload is the largest frame payload accepted.
const MaxPayload = 1 << 20

// InitRequest is the payload of FrameInit.
type InitRequest struct {
	ID      uuid.UUID `json:"id"`
	Height  uint16    `json:"height"`
	Width   uint16    `json:"width"`
	Command string    `json:"command"`
}

// Resize is the payload of FrameResize.
type Resize struct {
	Height uint16 `json:"height"`
	Width  uint16 `json:"width"`
}

// Exit is the payload of FrameExit.
type Exit struct {
	ExitCode int `json:"exit_code"`
}

// writeFrame writes one frame.
func writeFrame(w io.Writer, typ byte, payload []byte) error {
	if len(payload) > MaxPayload {
		return fmt.Errorf("frame payload %d bytes exceeds %d", len(payload), MaxPayload)
	}
	buf := make([]byte, 5+len(payload))
	buf[0] = typ
	binary.BigEndian.PutUint32(buf[1:5], uint32(len(payload)))
	copy(buf[5:], payload)
	if _, err := w.Write(buf); err != nil {
		return fmt.Errorf("write frame: %w", err)
	}
	return nil
}

// readFrame reads one frame.
func readFrame(r io.Reader) (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:5])
	if n > MaxPayload {
		return 0, nil, fmt.Errorf("frame payload %d bytes exceeds %d", n, MaxPayload)
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		return 0, nil, fmt.Errorf("read frame payload: %w", err)
	}
	return hdr[0], payload, nil
}

// ring is a bounded byte buffer keeping the most recent bytes written.
type ring struct {
	buf   []byte
	start int
	size  int
}

func newRing(capacity int) *ring { return &ring{buf: make([]byte, capacity)} }

func (r *ring) Write(p []byte) {
	c := len(r.buf)
	if c == 0 {
		return
	}
	if len(p) >= c {
		copy(r.buf, p[len(p)-c:])
		r.start, r.size = 0, c
		return
	}
	end := (r.start + r.size) % c
	n := copy(r.buf[end:], p)
	copy(r.buf, p[n:])
	r.size += len(p)
	if r.size > c {
		r.start = (r.start + r.size - c) % c
		r.size = c
	}
}

// Bytes returns a copy of the buffered bytes, oldest first.
func (r *ring) Bytes() []byte {
	out := make([]byte, 0, r.size)
	c := len(r.buf)
	if r.start+r.size <= c {
		return append(out, r.buf[r.start:r.start+r.size]...)
	}
	out = append(out, r.buf[r.start:]...)
	return append(out, r.buf[:(r.start+r.size)%c]...)
}
