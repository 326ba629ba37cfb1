package derp

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"

	"tailscale.com/derp"
	"tailscale.com/derp/derphttp"
	"tailscale.com/net/netmon"
)

// NewMeshKey returns a fresh random mesh key (64 hex digits), the shared
// secret by which the relays of one region recognise each other.
func NewMeshKey() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// SetMeshKey makes the relay accept other relays presenting key as trusted
// mesh peers (they skip admission and learn which clients are connected
// here). It must be called before the relay serves clients.
func (s *Server) SetMeshKey(meshKey string) error {
	if err := s.derp.SetMeshKey(meshKey); err != nil {
		return fmt.Errorf("set DERP mesh key: %w", err)
	}
	return nil
}

// mesh follows the other relays of the region.
type mesh struct {
	mu    sync.Mutex
	peers map[string]*meshPeer // by relay URL
}

type meshPeer struct {
	client *derphttp.Client
	cancel context.CancelFunc
	done   chan struct{}
}

// SetMeshPeers makes the relay mesh with exactly the relays at urls (base
// URLs of other replicas, e.g. "http://10.0.0.2:3000", whose relay is at
// <url>/derp): for each it keeps a watch connection, learns the clients
// connected there and forwards their packets to it. Peers no longer listed
// are dropped. SetMeshKey must have been called.
func (s *Server) SetMeshPeers(urls []string) error {
	if !s.derp.HasMeshKey() {
		return fmt.Errorf("set DERP mesh peers: no mesh key")
	}
	want := map[string]bool{}
	for _, u := range urls {
		d, err := derpURL(u)
		if err != nil {
			return err
		}
		want[d] = true
	}
	s.mesh.mu.Lock()
	defer s.mesh.mu.Unlock()
	if s.mesh.peers == nil {
		s.mesh.peers = map[string]*meshPeer{}
	}
	for u, p := range s.mesh.peers {
		if !want[u] {
			p.stop()
			delete(s.mesh.peers, u)
			s.logger.Info("stopped meshing with relay", "relay", u)
		}
	}
	for u := range want {
		if _, ok := s.mesh.peers[u]; ok {
			continue
		}
		p, err := s.startMeshPeer(u)
		if err != nil {
			return err
		}
		s.mesh.peers[u] = p
		s.logger.Info("meshing with relay", "relay", u)
	}
	return nil
}

// MeshPeers returns the relay URLs the relay meshes with.
func (s *Server) MeshPeers() []string {
	s.mesh.mu.Lock()
	defer s.mesh.mu.Unlock()
	out := make([]string, 0, len(s.mesh.peers))
	for u := range s.mesh.peers {
		out = append(out, u)
	}
	slices.Sort(out)
	return out
}

func derpURL(base string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(base))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("DERP mesh peer %q: want an http(s) URL", base)
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + "/derp"
	u.RawQuery, u.Fragment = "", ""
	return u.String(), nil
}

func (s *Server) startMeshPeer(derpURL string) (*meshPeer, error) {
	logf := logfFor(s.logger.With("mesh_peer", derpURL))
	c, err := derphttp.NewClient(s.derp.PrivateKey(), derpURL, logf, netmon.NewStatic())
	if err != nil {
		return nil, fmt.Errorf("DERP mesh client for %s: %w", derpURL, err)
	}
	c.MeshKey = s.derp.MeshKey()
	c.WatchConnectionChanges = true
	ctx, cancel := context.WithCancel(context.Background())
	p := &meshPeer{client: c, cancel: cancel, done: make(chan struct{})}
	add := func(m derp.PeerPresentMessage) { s.derp.AddPacketForwarder(m.Key, c) }
	remove := func(m derp.PeerGoneMessage) { s.derp.RemovePacketForwarder(m.Peer, c) }
	go func() {
		defer close(p.done)
		// Returns at once when the URL is this relay itself.
		c.RunWatchConnectionLoop(ctx, s.derp.PublicKey(), nil, add, remove, func(error) {})
	}()
	return p, nil
}

func (p *meshPeer) stop() {
	p.cancel()
	_ = p.client.Close()
	<-p.done
}

func (s *Server) stopMesh() {
	s.mesh.mu.Lock()
	defer s.mesh.mu.Unlock()
	for u, p := range s.mesh.peers {
		p.stop()
		delete(s.mesh.peers, u)
	}
}
