// Package derp hosts the embedded DERP relay and STUN server of coderd and
// builds and validates the DERP map handed to every peer of the mesh.
//
// The relay is upstream tailscale.com/derp/derpserver; this package only
// wires it to net/http (plain DERP upgrades and DERP over websockets), routes
// its logs to log/slog and answers the latency probe. The DERP map never
// contains Tailscale's public regions: OmitDefaultRegions is always set.
package derp
