// Package site serves coder's dashboard: a small single-page application
// (plain HTML, CSS and JavaScript, embedded in the binary) that talks to
// coderd's /api/v2 with the browser's session cookie, and the web terminal
// page built on xterm.js.
//
// The handler serves every path coderd does not route itself:
//
//   - /static/...                        embedded assets (content-hashed ETags)
//   - /@OWNER/WORKSPACE[.AGENT]/terminal  the web terminal page
//   - any other GET or HEAD              the dashboard shell (index.html); the
//     client-side router renders login, setup, workspaces, templates, users...
//
// Nothing here needs a Node server at run time: the xterm.js files are copied
// into static/vendor by `npm run build` (see package.json) and committed.
package site

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"mime"
	"net/http"
	"path"
	"regexp"
	"strings"
)

//go:embed static templates
var content embed.FS

// ContentSecurityPolicy is sent with every page. Scripts come only from this
// origin (no inline script); xterm.js sets inline styles, so style-src allows
// them. connect-src 'self' covers same-origin fetch, EventSource and
// websockets.
const ContentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; " +
	"img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

// Options configures the handler.
type Options struct {
	// Logger receives structured logs; nil discards.
	Logger *slog.Logger
}

// Handler serves the dashboard. It is safe for concurrent use.
type Handler struct {
	logger   *slog.Logger
	static   map[string]asset
	index    []byte
	terminal *template.Template
}

// asset is an embedded static file with its precomputed validator.
type asset struct {
	body        []byte
	etag        string
	contentType string
}

// terminalPath matches /@OWNER/WORKSPACE[.AGENT]/terminal.
var terminalPath = regexp.MustCompile(`^/@([^/]+)/([^/.]+)(?:\.([^/]+))?/terminal/?$`)

// New loads the embedded files and returns the handler.
func New(opts Options) (*Handler, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	h := &Handler{logger: logger, static: map[string]asset{}}
	err := fs.WalkDir(content, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := content.ReadFile(p)
		if err != nil {
			return fmt.Errorf("read %s: %w", p, err)
		}
		sum := sha256.Sum256(body)
		ct := mime.TypeByExtension(path.Ext(p))
		if ct == "" {
			ct = http.DetectContentType(body)
		}
		h.static["/"+p] = asset{body: body, etag: `"` + hex.EncodeToString(sum[:12]) + `"`, contentType: ct}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load static assets: %w", err)
	}
	if h.index, err = content.ReadFile("templates/index.html"); err != nil {
		return nil, fmt.Errorf("read index template: %w", err)
	}
	if h.terminal, err = template.ParseFS(content, "templates/terminal.html"); err != nil {
		return nil, fmt.Errorf("parse terminal template: %w", err)
	}
	return h, nil
}

// TerminalTarget is the workspace a terminal page is for.
type TerminalTarget struct {
	Owner     string
	Workspace string
	// Agent is empty when the URL names none (the workspace's only agent).
	Agent string
}

// ParseTerminalPath reports whether p is a terminal page path
// (/@OWNER/WORKSPACE[.AGENT]/terminal) and what it names.
func ParseTerminalPath(p string) (TerminalTarget, bool) {
	m := terminalPath.FindStringSubmatch(p)
	if m == nil {
		return TerminalTarget{}, false
	}
	return TerminalTarget{Owner: m[1], Workspace: m[2], Agent: m[3]}, true
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	setSecurityHeaders(w.Header())
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "Method not allowed.", http.StatusMethodNotAllowed)
		return
	}
	p := r.URL.Path
	switch {
	case strings.HasPrefix(p, "/static/"):
		h.serveStatic(w, r, p)
	case p == "/api" || strings.HasPrefix(p, "/api/"):
		// API paths coderd does not route are API 404s, never the dashboard.
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"message":"Route not found."}` + "\n"))
	default:
		if target, ok := ParseTerminalPath(p); ok {
			h.serveTerminal(w, r, target)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		if r.Method == http.MethodHead {
			return
		}
		_, _ = w.Write(h.index)
	}
}

func (h *Handler) serveStatic(w http.ResponseWriter, r *http.Request, p string) {
	a, ok := h.static[path.Clean(p)]
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", a.contentType)
	w.Header().Set("ETag", a.etag)
	// Revalidate every time: a 304 costs one round trip and an upgraded
	// binary never serves stale scripts.
	w.Header().Set("Cache-Control", "no-cache")
	if match := r.Header.Get("If-None-Match"); match != "" && strings.Contains(match, a.etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("Content-Length", fmt.Sprint(len(a.body)))
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(a.body)
}

func (h *Handler) serveTerminal(w http.ResponseWriter, r *http.Request, target TerminalTarget) {
	var buf bytes.Buffer
	if err := h.terminal.Execute(&buf, target); err != nil {
		h.logger.ErrorContext(r.Context(), "render terminal page", "error", err)
		http.Error(w, "Internal error rendering the terminal page.", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(buf.Bytes())
}

func setSecurityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", ContentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
}
