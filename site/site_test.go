package site_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/wgmesh/coder/site"
)

func TestParseTerminalPath(t *testing.T) {
	t.Parallel()
	tests := []struct {
		path string
		ok   bool
		want site.TerminalTarget
	}{
		{"/@alice/dev/terminal", true, site.TerminalTarget{Owner: "alice", Workspace: "dev"}},
		{"/@alice/dev.main/terminal", true, site.TerminalTarget{Owner: "alice", Workspace: "dev", Agent: "main"}},
		{"/@alice/dev.main/terminal/", true, site.TerminalTarget{Owner: "alice", Workspace: "dev", Agent: "main"}},
		{"/@alice/dev", false, site.TerminalTarget{}},
		{"/@alice/dev/apps/x/terminal", false, site.TerminalTarget{}},
		{"/alice/dev/terminal", false, site.TerminalTarget{}},
	}
	for _, tt := range tests {
		got, ok := site.ParseTerminalPath(tt.path)
		if ok != tt.ok || got != tt.want {
			t.Errorf("ParseTerminalPath(%q) = %+v, %v; want %+v, %v", tt.path, got, ok, tt.want, tt.ok)
		}
	}
}

func TestHandler(t *testing.T) {
	t.Parallel()
	h, err := site.New(site.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)

	get := func(t *testing.T, method, path string, hdr http.Header) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range hdr {
			req.Header[k] = v
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatal(err)
		}
		return res, string(body)
	}

	tests := []struct {
		name        string
		method      string
		path        string
		status      int
		contentType string
		contains    []string
	}{
		{"root is the dashboard shell", "GET", "/", 200, "text/html", []string{`<script src="/static/app.js" defer>`, `id="main"`}},
		{"client routes get the shell", "GET", "/workspaces", 200, "text/html", []string{"/static/app.js"}},
		{"workspace page gets the shell", "GET", "/@alice/dev", 200, "text/html", []string{"/static/app.js"}},
		{"terminal page", "GET", "/@alice/dev.main/terminal", 200, "text/html", []string{
			`data-owner="alice"`, `data-workspace="dev"`, `data-agent="main"`, "/static/vendor/xterm.js", "/static/terminal.js",
		}},
		{"terminal page escapes names", "GET", "/@a%22%3Cb/dev/terminal", 200, "text/html", []string{`data-owner="a&#34;&lt;b"`}},
		{"app script", "GET", "/static/app.js", 200, "text/javascript", []string{"use strict"}},
		{"vendored xterm", "GET", "/static/vendor/xterm.js", 200, "text/javascript", []string{"Terminal"}},
		{"vendored xterm css", "GET", "/static/vendor/xterm.css", 200, "text/css", []string{".xterm"}},
		{"fit addon", "GET", "/static/vendor/addon-fit.js", 200, "text/javascript", []string{"FitAddon"}},
		{"missing asset", "GET", "/static/nope.js", 404, "text/plain", nil},
		{"path traversal", "GET", "/static/../site.go", 404, "text/plain", nil},
		{"unrouted api path is JSON 404", "GET", "/api/v2/nope", 404, "application/json", []string{"Route not found."}},
		{"post is refused", "POST", "/workspaces", 405, "text/plain", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res, body := get(t, tt.method, tt.path, nil)
			if res.StatusCode != tt.status {
				t.Fatalf("status %d, want %d; body %q", res.StatusCode, tt.status, body)
			}
			if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, tt.contentType) {
				t.Errorf("Content-Type %q, want prefix %q", ct, tt.contentType)
			}
			if csp := res.Header.Get("Content-Security-Policy"); csp != site.ContentSecurityPolicy {
				t.Errorf("CSP %q", csp)
			}
			if res.Header.Get("X-Frame-Options") != "DENY" || res.Header.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("security headers missing: %v", res.Header)
			}
			for _, s := range tt.contains {
				if !strings.Contains(body, s) {
					t.Errorf("body lacks %q", s)
				}
			}
		})
	}

	t.Run("etag revalidation", func(t *testing.T) {
		t.Parallel()
		res, _ := get(t, "GET", "/static/style.css", nil)
		etag := res.Header.Get("ETag")
		if etag == "" {
			t.Fatal("no ETag")
		}
		res, body := get(t, "GET", "/static/style.css", http.Header{"If-None-Match": {etag}})
		if res.StatusCode != http.StatusNotModified || body != "" {
			t.Fatalf("revalidation: %d %q", res.StatusCode, body)
		}
	})
}
