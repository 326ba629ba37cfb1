package coderd

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/wgmesh/coder/coderd/httpapi"
	"github.com/wgmesh/coder/codersdk"
)

// AgentBinaryHashHeader carries the hex SHA-256 of the agent binary on
// /bin/coder-<os>-<arch> responses (the ETag is the same hash, quoted).
const AgentBinaryHashHeader = "X-Coder-Agent-Binary-Sha256"

// agentBinaryHashes caches the SHA-256 of the served binary, recomputed
// when its path, size or modification time changes.
type agentBinaryHashes struct {
	mu    sync.Mutex
	path  string
	size  int64
	mtime time.Time
	sum   string
}

func (h *agentBinaryHashes) hash(path string, f *os.File, st os.FileInfo) (string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.sum != "" && h.path == path && h.size == st.Size() && h.mtime.Equal(st.ModTime()) {
		return h.sum, nil
	}
	sum := sha256.New()
	if _, err := io.Copy(sum, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", fmt.Errorf("rewind %s: %w", path, err)
	}
	h.path, h.size, h.mtime, h.sum = path, st.Size(), st.ModTime(), hex.EncodeToString(sum.Sum(nil))
	return h.sum, nil
}

// agentBinary serves /bin/coder-<os>-<arch>: the coder binary for the
// server's own platform (the running executable, or
// ProvisioningOptions.AgentBinaryPath), with its SHA-256 as ETag and in
// AgentBinaryHashHeader (a request with If-None-Match of that ETag gets
// 304). /bin/coder-<os>-<arch>.sha256 serves the hash alone, as text, so
// that an init script can tell whether its cached copy is current before
// downloading anything. Other platforms are 404.
func (api *API) agentBinary(w http.ResponseWriter, r *http.Request) {
	want := "coder-" + runtime.GOOS + "-" + runtime.GOARCH
	name := chi.URLParam(r, "name")
	hashOnly := strings.HasSuffix(name, ".sha256")
	if strings.TrimSuffix(name, ".sha256") != want {
		httpapi.Write(r.Context(), w, http.StatusNotFound, codersdk.Response{
			Message: "Agent binary not found.",
			Detail:  "This server only serves " + want + ".",
		})
		return
	}
	path := api.prov.opts.AgentBinaryPath
	if path == "" {
		exe, err := os.Executable()
		if err != nil {
			httpapi.InternalServerError(w, r, "Locate the coder binary.", err)
			return
		}
		path = exe
	}
	f, err := os.Open(path)
	if err != nil {
		httpapi.InternalServerError(w, r, "Open the coder binary.", err)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		httpapi.InternalServerError(w, r, "Stat the coder binary.", err)
		return
	}
	sum, err := api.agentBinaryHashes.hash(path, f, st)
	if err != nil {
		httpapi.InternalServerError(w, r, "Hash the coder binary.", err)
		return
	}
	w.Header().Set(AgentBinaryHashHeader, sum)
	w.Header().Set("Cache-Control", "no-cache")
	if hashOnly {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, sum+"\n")
		return
	}
	w.Header().Set("ETag", `"`+sum+`"`)
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, r, want, st.ModTime(), f)
}
