package coderd

import (
	"net/http"
	"os"
	"runtime"

	"github.com/go-chi/chi/v5"

	"github.com/wgmesh/coder/coderd/httpapi"
	"github.com/wgmesh/coder/codersdk"
)

// agentBinary serves /bin/coder-<os>-<arch>: the coder binary for the
// server's own platform (the running executable, or
// ProvisioningOptions.AgentBinaryPath). Other platforms are 404.
func (api *API) agentBinary(w http.ResponseWriter, r *http.Request) {
	want := "coder-" + runtime.GOOS + "-" + runtime.GOARCH
	if chi.URLParam(r, "name") != want {
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
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, r, want, st.ModTime(), f)
}
