package derp

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"tailscale.com/tailcfg"
	"tailscale.com/types/key"
)

// AdmitWait bounds how long admission waits for an unknown key to be
// registered (a peer dials the relay and the coordinator at the same time).
// It stays below the relay's own 5 s admission timeout.
const AdmitWait = 4 * time.Second

// AdmitFunc reports whether the relay may serve the client holding node key
// k; it may wait (until ctx ends) for the key to become known.
type AdmitFunc func(ctx context.Context, k key.NodePublic) bool

// AdmitOnly makes the relay serve only clients whose node key admit
// accepts; replica relays presenting the mesh key are always admitted.
// Upstream's relay asks an admission controller over HTTP, so this serves
// one on a loopback port under a random path that only this process knows.
// It may be called once, before the relay serves clients.
func (s *Server) AdmitOnly(admit AdmitFunc) error {
	if admit == nil {
		return errors.New("admit only: nil admission function")
	}
	if s.admission != nil {
		return errors.New("admit only: admission already configured")
	}
	var secret [16]byte
	_, _ = rand.Read(secret[:])
	path := "/admit/" + hex.EncodeToString(secret[:])
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listen for DERP admission: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+path, func(w http.ResponseWriter, r *http.Request) {
		var req tailcfg.DERPAdmitClientRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 4<<10)).Decode(&req); err != nil {
			http.Error(w, "bad admission request", http.StatusBadRequest)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), AdmitWait)
		defer cancel()
		allow := admit(ctx, req.NodePublic)
		if !allow {
			s.logger.Info("relay refused an unknown node key", "node_key", req.NodePublic.ShortString(), "source", req.Source.String())
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(tailcfg.DERPAdmitClientResponse{Allow: allow})
	})
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = hs.Serve(ln)
	}()
	s.admission = &admission{srv: hs, done: done}
	s.derp.SetVerifyClientURL("http://" + ln.Addr().String() + path)
	s.derp.SetVerifyClientURLFailOpen(false)
	return nil
}

type admission struct {
	srv  *http.Server
	done chan struct{}
}

func (a *admission) close() {
	_ = a.srv.Close()
	<-a.done
}
