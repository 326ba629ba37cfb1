package tunnel

import (
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"net/netip"

	"github.com/google/uuid"
)

// TailnetPrefix is the IPv6 ULA prefix every tailnet address lives in.
var TailnetPrefix = netip.MustParsePrefix("fd7a:115c:a1e0::/48")

// IPFromUUID returns the stable tailnet address derived from id: the
// TailnetPrefix followed by 80 bits of SHA-256(id). Agents use their agent ID,
// so clients know an agent's address before it connects.
func IPFromUUID(id uuid.UUID) netip.Addr {
	sum := sha256.Sum256(id[:])
	return addrWithSuffix(sum[:10])
}

// PrefixFromUUID returns IPFromUUID(id) as a single-address (/128) prefix.
func PrefixFromUUID(id uuid.UUID) netip.Prefix {
	return netip.PrefixFrom(IPFromUUID(id), 128)
}

// AgentPrefix returns the /128 prefix of the agent with the given ID. It is the
// same as PrefixFromUUID and exists to make call sites read naturally.
func AgentPrefix(agentID uuid.UUID) netip.Prefix {
	return PrefixFromUUID(agentID)
}

// RandomIP returns a random address inside TailnetPrefix, for clients that do
// not need a stable address.
func RandomIP() netip.Addr {
	var suffix [10]byte
	// crypto/rand.Read never returns an error on supported platforms.
	_, _ = rand.Read(suffix[:])
	return addrWithSuffix(suffix[:])
}

// RandomPrefix returns RandomIP as a /128 prefix.
func RandomPrefix() netip.Prefix {
	return netip.PrefixFrom(RandomIP(), 128)
}

func addrWithSuffix(suffix []byte) netip.Addr {
	b := TailnetPrefix.Addr().As16()
	copy(b[6:], suffix)
	return netip.AddrFrom16(b)
}

// CheckAssignedAddresses reports whether n claims only the address assigned
// to peerID: its Addresses must be exactly PrefixFromUUID(peerID) and its
// AllowedIPs (when set) nothing else. coderd assigns every peer's address
// from its peer ID (agents: the agent ID; clients: the peer ID coderd hands
// out), so a node announcing any other address is spoofing another peer.
func CheckAssignedAddresses(peerID uuid.UUID, n *Node) error {
	want := PrefixFromUUID(peerID)
	if len(n.Addresses) != 1 || n.Addresses[0] != want {
		return fmt.Errorf("node addresses %v are not the address %s assigned to peer %s", n.Addresses, want, peerID)
	}
	for _, p := range n.AllowedIPs {
		if p != want {
			return fmt.Errorf("node allowed IP %s is not the address %s assigned to peer %s", p, want, peerID)
		}
	}
	return nil
}
