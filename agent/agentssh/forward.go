package agentssh

import (
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"

	"github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"
)

// remoteForwards implements tcpip-forward and cancel-tcpip-forward
// (RFC 4254 section 7.1) with loopback-only listeners.
type remoteForwards struct {
	s *Server

	mu        sync.Mutex
	listeners map[string]net.Listener // key: conn session id + bind address
}

type forwardRequest struct {
	BindAddr string
	BindPort uint32
}

type forwardReply struct {
	BindPort uint32
}

type forwardedChannel struct {
	DestAddr   string
	DestPort   uint32
	OriginAddr string
	OriginPort uint32
}

// bindHost maps a requested bind address to the loopback address to listen
// on, like OpenSSH's GatewayPorts=no.
func bindHost(addr string) string {
	if ip := net.ParseIP(addr); ip != nil && ip.IsLoopback() {
		return addr
	}
	return "127.0.0.1"
}

func (f *remoteForwards) key(ctx ssh.Context, addr string, port uint32) string {
	return ctx.SessionID() + "|" + net.JoinHostPort(addr, strconv.Itoa(int(port)))
}

func (f *remoteForwards) handle(ctx ssh.Context, _ *ssh.Server, req *gossh.Request) (bool, []byte) {
	var r forwardRequest
	if err := gossh.Unmarshal(req.Payload, &r); err != nil {
		return false, nil
	}
	switch req.Type {
	case "tcpip-forward":
		return f.forward(ctx, r)
	case "cancel-tcpip-forward":
		f.mu.Lock()
		l, ok := f.listeners[f.key(ctx, r.BindAddr, r.BindPort)]
		f.mu.Unlock()
		if !ok {
			return false, nil
		}
		_ = l.Close()
		return true, nil
	}
	return false, nil
}

func (f *remoteForwards) forward(ctx ssh.Context, r forwardRequest) (bool, []byte) {
	conn, _ := ctx.Value(ssh.ContextKeyConn).(*gossh.ServerConn)
	if conn == nil {
		return false, nil
	}
	l, err := net.Listen("tcp", net.JoinHostPort(bindHost(r.BindAddr), strconv.Itoa(int(r.BindPort))))
	if err != nil {
		f.s.logger.Info("remote forward listen", "bind_addr", r.BindAddr, "bind_port", r.BindPort, "error", err)
		return false, nil
	}
	port := uint32(l.Addr().(*net.TCPAddr).Port)
	key := f.key(ctx, r.BindAddr, port)
	if !f.s.track() {
		_ = l.Close()
		return false, nil
	}
	f.mu.Lock()
	if f.listeners == nil {
		f.listeners = make(map[string]net.Listener)
	}
	f.listeners[key] = l
	f.mu.Unlock()
	f.s.logger.Debug("remote forward", "bind_addr", r.BindAddr, "listen", l.Addr().String())
	go func() {
		defer f.s.wg.Done()
		<-ctx.Done() // connection closed
		_ = l.Close()
	}()
	if !f.s.track() {
		_ = l.Close()
		return false, nil
	}
	go func() {
		defer f.s.wg.Done()
		defer func() {
			f.mu.Lock()
			delete(f.listeners, key)
			f.mu.Unlock()
		}()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go f.proxy(ctx, conn, c, r.BindAddr, port)
		}
	}()
	return true, gossh.Marshal(&forwardReply{BindPort: port})
}

// proxy carries one accepted connection over a forwarded-tcpip channel. It
// ends when either side closes (closing the SSH connection closes both).
func (f *remoteForwards) proxy(ctx ssh.Context, conn *gossh.ServerConn, c net.Conn, bindAddr string, port uint32) {
	defer c.Close()
	finished := make(chan struct{})
	defer close(finished)
	go func() {
		select {
		case <-ctx.Done(): // SSH connection gone: unblock the copies
			_ = c.Close()
		case <-finished:
		}
	}()
	oh, op := splitAddr(c.RemoteAddr())
	opn, _ := strconv.Atoi(op)
	ch, reqs, err := conn.OpenChannel("forwarded-tcpip", gossh.Marshal(&forwardedChannel{
		DestAddr: bindAddr, DestPort: port, OriginAddr: oh, OriginPort: uint32(opn),
	}))
	if err != nil {
		f.s.logger.Debug("open forwarded-tcpip channel", "error", fmt.Errorf("open channel: %w", err))
		return
	}
	defer ch.Close()
	go gossh.DiscardRequests(reqs)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(ch, c)
		_ = ch.CloseWrite()
	}()
	_, _ = io.Copy(c, ch)
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	<-done
}
