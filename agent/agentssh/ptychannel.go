package agentssh

import (
	"io"
	"sync"

	"github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"
)

// gliderlabs/ssh rewrites "\n" to "\r\n" in everything a PTY session writes,
// which corrupts the output of full-screen programs that turn ONLCR off. To
// keep terminal output byte-exact the server handles "pty-req" and
// "window-change" itself: sessionChannel wraps the accepted channel and
// filters those requests out before gliderlabs sees them, so gliderlabs
// treats every session as PTY-less and passes output through unchanged.

// ptyInfo is the terminal state of one session channel.
type ptyInfo struct {
	mu     sync.Mutex
	term   string
	window ssh.Window
	isPty  bool
	resize chan struct{} // signalled (capacity 1) when window changes
}

// get returns the requested terminal, if any.
func (p *ptyInfo) get() (term string, win ssh.Window, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.term, p.window, p.isPty
}

// sessionChannel is an accepted "session" channel with its PTY state.
type sessionChannel struct {
	gossh.Channel
	info *ptyInfo
}

// stderrRef is returned by sessionChannel.Stderr; it lets the session
// handler find the channel's ptyInfo through the ssh.Session interface.
type stderrRef struct {
	io.ReadWriter
	info *ptyInfo
}

// Stderr returns the channel's extended-data stream, tagged with its ptyInfo.
func (c *sessionChannel) Stderr() io.ReadWriter {
	return stderrRef{ReadWriter: c.Channel.Stderr(), info: c.info}
}

// sessionPty returns the PTY state of a session served by this package.
func sessionPty(sess ssh.Session) *ptyInfo {
	if ref, ok := sess.Stderr().(stderrRef); ok {
		return ref.info
	}
	return &ptyInfo{}
}

// newSessionChannel intercepts Accept of a "session" channel.
type newSessionChannel struct {
	gossh.NewChannel
}

type ptyRequestMsg struct {
	Term                   string
	Columns, Rows          uint32
	WidthPixels, HeightPix uint32
	Modes                  string
}

type windowChangeMsg struct {
	Columns, Rows          uint32
	WidthPixels, HeightPix uint32
}

// Accept accepts the channel and starts the request filter, which ends when
// the client's request stream ends (the channel closes).
func (n newSessionChannel) Accept() (gossh.Channel, <-chan *gossh.Request, error) {
	ch, reqs, err := n.NewChannel.Accept()
	if err != nil {
		return nil, nil, err
	}
	info := &ptyInfo{resize: make(chan struct{}, 1)}
	out := make(chan *gossh.Request)
	go func() {
		defer close(out)
		for req := range reqs {
			switch req.Type {
			case "pty-req":
				var m ptyRequestMsg
				ok := gossh.Unmarshal(req.Payload, &m) == nil
				info.mu.Lock()
				if ok && !info.isPty {
					info.isPty = true
					info.term = m.Term
					info.window = ssh.Window{Width: int(m.Columns), Height: int(m.Rows)}
				} else {
					ok = false
				}
				info.mu.Unlock()
				if req.WantReply {
					_ = req.Reply(ok, nil)
				}
			case "window-change":
				var m windowChangeMsg
				ok := gossh.Unmarshal(req.Payload, &m) == nil
				info.mu.Lock()
				ok = ok && info.isPty
				if ok {
					info.window = ssh.Window{Width: int(m.Columns), Height: int(m.Rows)}
				}
				info.mu.Unlock()
				if ok {
					select {
					case info.resize <- struct{}{}:
					default:
					}
				}
				if req.WantReply {
					_ = req.Reply(ok, nil)
				}
			default:
				out <- req
			}
		}
	}()
	return &sessionChannel{Channel: ch, info: info}, out, nil
}

// sessionChannelHandler is gliderlabs' session handler with PTY requests
// handled by this package.
func sessionChannelHandler(srv *ssh.Server, conn *gossh.ServerConn, newChan gossh.NewChannel, ctx ssh.Context) {
	ssh.DefaultSessionHandler(srv, conn, newSessionChannel{NewChannel: newChan}, ctx)
}
