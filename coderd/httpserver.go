package coderd

import (
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// Defaults of HTTPServerOptions.
const (
	DefaultHTTPReadHeaderTimeout = 10 * time.Second
	DefaultHTTPReadTimeout       = time.Minute
	DefaultHTTPIdleTimeout       = 2 * time.Minute
)

// HTTPServerOptions are the slow-client limits of coderd's HTTP server.
// Zero values take the defaults.
type HTTPServerOptions struct {
	// ReadHeaderTimeout bounds reading a request's headers (default 10s).
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading a request's body, from the end of its
	// headers (default 1 minute). It does not apply to responses or to
	// hijacked connections, so websockets and event streams stay open.
	ReadTimeout time.Duration
	// IdleTimeout closes keep-alive connections idle this long (default 2
	// minutes).
	IdleTimeout time.Duration
	// BaseContext is the http.Server's BaseContext (optional).
	BaseContext func(net.Listener) context.Context
}

// NewHTTPServer returns the http.Server that serves handler with o's
// limits. A client that dribbles its headers is cut off after
// ReadHeaderTimeout and one that dribbles its body after ReadTimeout, while
// long-lived responses (build log streams, the terminal and coordination
// websockets) are not limited: the server has no WriteTimeout, and the
// body deadline is set per request only while a body is being read.
func NewHTTPServer(handler http.Handler, o HTTPServerOptions) *http.Server {
	if o.ReadHeaderTimeout <= 0 {
		o.ReadHeaderTimeout = DefaultHTTPReadHeaderTimeout
	}
	if o.ReadTimeout <= 0 {
		o.ReadTimeout = DefaultHTTPReadTimeout
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultHTTPIdleTimeout
	}
	return &http.Server{
		Handler:           bodyReadTimeout(o.ReadTimeout, handler),
		ReadHeaderTimeout: o.ReadHeaderTimeout,
		IdleTimeout:       o.IdleTimeout,
		MaxHeaderBytes:    1 << 20,
		BaseContext:       o.BaseContext,
	}
}

// bodyReadTimeout sets a read deadline of d on the connection of every
// request that has a body, and clears it once the body has been read to
// its end (so the server's background read, which watches for the client
// going away during a long response, is not cut off). A body left unread
// keeps the deadline, so the server's drain of it cannot be held either.
func bodyReadTimeout(d time.Duration, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody || (r.ContentLength == 0 && len(r.TransferEncoding) == 0) {
			next.ServeHTTP(w, r)
			return
		}
		rc := http.NewResponseController(w)
		if err := rc.SetReadDeadline(time.Now().Add(d)); err != nil {
			// Not a net/http server connection (e.g. a test recorder).
			next.ServeHTTP(w, r)
			return
		}
		b := &deadlineBody{ReadCloser: r.Body, clear: func() { _ = rc.SetReadDeadline(time.Time{}) }}
		r.Body = b
		next.ServeHTTP(w, r)
	})
}

// deadlineBody clears the body read deadline at EOF.
type deadlineBody struct {
	io.ReadCloser
	clear func()
	once  sync.Once
}

func (b *deadlineBody) done() { b.once.Do(b.clear) }

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.done()
	}
	return n, err
}
