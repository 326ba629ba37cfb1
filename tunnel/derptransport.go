package tunnel

import (
	"errors"
	"sync"

	"tailscale.com/envknob"
)

// Upstream switches, read by tailscale.com/derp/derphttp each time a DERP
// client connects.
const (
	envDERPPlainHTTP  = "TS_DEBUG_USE_DERP_HTTP"
	envDERPWebsockets = "TS_DEBUG_DERP_WS_CLIENT"
)

// ErrDERPWebsocketsUnavailable is returned when DERP over websockets is
// requested from a binary built without the ts_debug_websockets tag.
var ErrDERPWebsocketsUnavailable = errors.New("DERP over websockets is not compiled into this binary: build it with -tags ts_debug_websockets (make build does)")

// The upstream switches are process-wide, so turning each on is a
// process-wide, once-only event: upstream reads them without a lock, so
// writing them again while other Conns' DERP clients run would race.
var (
	enableDERPPlainHTTP  = sync.OnceFunc(func() { envknob.Setenv(envDERPPlainHTTP, "true") })
	enableDERPWebsockets = sync.OnceFunc(func() { envknob.Setenv(envDERPWebsockets, "true") })
)

// configureDERPTransport turns on the process-wide upstream switches that
// decide how DERP clients reach relays. They are only ever turned on: one
// Conn asking for them must not break another that already relies on them.
func configureDERPTransport(plainHTTP, websockets bool) error {
	if websockets {
		if !DERPWebsocketsAvailable {
			return ErrDERPWebsocketsUnavailable
		}
		enableDERPWebsockets()
	}
	if plainHTTP {
		enableDERPPlainHTTP()
	}
	return nil
}

// UseDERPPlainHTTP turns on plain HTTP for every DERP client of the process
// (see Options.DERPPlainHTTP), for DERP clients created outside a Conn
// (coderd's health check of its relay on an http:// access URL).
func UseDERPPlainHTTP() { enableDERPPlainHTTP() }
