//go:build ts_debug_websockets

package tunnel

// DERPWebsocketsAvailable reports whether this binary's DERP clients can
// connect over websockets (the upstream ts_debug_websockets build tag).
const DERPWebsocketsAvailable = true
