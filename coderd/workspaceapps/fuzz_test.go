package workspaceapps

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
)

// fuzzWildcard is the subdomain pattern the host fuzz target parses against.
const fuzzWildcard = "*.apps.example.com"

// isLabelChar reports whether c may appear in a part of a subdomain app
// label: lower-case letters, digits, '-' and '_' (what a browser sends in a
// host after IDNA; Terraform resource names may contain '_').
func isLabelChar(c byte) bool {
	return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_'
}

// FuzzSubdomainHost feeds arbitrary Host headers to the subdomain app
// resolver. Properties of every accepted host:
//   - it is the canonical host of the request it names (SubdomainLabel plus
//     the wildcard suffix, ignoring the port): one app, one origin, so an app
//     key bound to an origin cannot be replayed on an alias of the same app;
//   - every part is non-empty and made of DNS label characters;
//   - it names an app or a port, never both, and a port is 1-65535;
//   - the URL built for the request (SubdomainAppURL) resolves to the same
//     request.
func FuzzSubdomainHost(f *testing.F) {
	s := &Server{wildcardSuffix: fuzzWildcard[1:]}
	access, err := url.Parse("https://coder.example.com:8443")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, host string) {
		req, ok := s.subdomainRequest(&http.Request{Host: host})
		if !ok {
			return
		}
		canonical := SubdomainLabel(req) + s.wildcardSuffix
		if got := strings.ToLower(hostOnly(host)); got != canonical {
			t.Fatalf("host %q accepted as %+v, whose canonical host is %q", host, req, canonical)
		}
		for _, part := range []string{req.App, req.Agent, req.Workspace, req.Owner} {
			for i := 0; i < len(part); i++ {
				if !isLabelChar(part[i]) {
					t.Fatalf("host %q accepted with part %q: byte %q is not a DNS label character", host, part, part[i])
				}
			}
		}
		if req.Agent == "" || req.Workspace == "" || req.Owner == "" {
			t.Fatalf("host %q accepted with an empty part: %+v", host, req)
		}
		if (req.App == "") == (req.Port == 0) {
			t.Fatalf("host %q accepted as neither or both an app and a port: %+v", host, req)
		}
		u, err := SubdomainAppURL(access, fuzzWildcard, req)
		if err != nil {
			t.Fatalf("subdomain URL of %+v: %v", req, err)
		}
		back, ok := s.subdomainRequest(&http.Request{Host: u.Host})
		if !ok || back != req {
			t.Fatalf("host %q: %+v -> %s -> %+v (ok %v)", host, req, u.Host, back, ok)
		}
	})
}

// FuzzPathApp feeds arbitrary paths to the path app parser. Properties of
// every accepted path: prefix+rest is the path (the proxy strips exactly
// the part that names the app); the request names an app or a port
// (1-65535), with non-empty owner and workspace names that contain no '/';
// the path built for the request (PathAppURL) parses to the same request
// with the rest "/".
func FuzzPathApp(f *testing.F) {
	access, err := url.Parse("https://coder.example.com/base/")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, path string) {
		req, prefix, rest, ok := ParsePathApp(path)
		if !ok {
			if req != (Request{}) || prefix != "" || rest != "" {
				t.Fatalf("refused %q but returned %+v %q %q", path, req, prefix, rest)
			}
			return
		}
		if prefix+rest != path {
			t.Fatalf("%q: prefix %q + rest %q is not the path", path, prefix, rest)
		}
		if rest != "" && !strings.HasPrefix(rest, "/") {
			t.Fatalf("%q: rest %q does not start with /", path, rest)
		}
		if req.Owner == "" || req.Workspace == "" || strings.ContainsAny(req.Owner+req.Workspace+req.Agent+req.App, "/") {
			t.Fatalf("%q: bad names %+v", path, req)
		}
		if strings.Contains(req.Workspace, ".") {
			t.Fatalf("%q: workspace %q contains the agent separator", path, req.Workspace)
		}
		if (req.App == "") == (req.Port == 0) {
			t.Fatalf("%q: neither or both an app and a port: %+v", path, req)
		}
		if req.Port != 0 && prefix != strings.TrimSuffix(prefix, "/ports/"+strconv.Itoa(int(req.Port)))+"/ports/"+strconv.Itoa(int(req.Port)) {
			t.Fatalf("%q: port %d is not written canonically in %q", path, req.Port, prefix)
		}
		built := PathAppURL(access, req)
		p := strings.TrimPrefix(built.Path, "/base")
		back, _, backRest, ok := ParsePathApp(p)
		if !ok || back != req || backRest != "/" {
			t.Fatalf("%q: %+v -> %s -> %+v %q (ok %v)", path, req, built, back, backRest, ok)
		}
	})
}
