package tunnel

import (
	"errors"

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

// configureDERPTransport turns on the process-wide upstream switches that
// decide how DERP clients reach relays. They are only ever turned on: one
// Conn asking for them must not break another that already relies on them.
func configureDERPTransport(plainHTTP, websockets bool) error {
	if websockets {
		if !DERPWebsocketsAvailable {
			return ErrDERPWebsocketsUnavailable
		}
		envknob.Setenv(envDERPWebsockets, "true")
	}
	if plainHTTP {
		envknob.Setenv(envDERPPlainHTTP, "true")
	}
	return nil
}
