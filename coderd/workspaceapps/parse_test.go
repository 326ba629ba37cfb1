package workspaceapps_test

import (
	"net/url"
	"testing"

	"github.com/wgmesh/coder/coderd/workspaceapps"
)

func TestParsePathApp(t *testing.T) {
	t.Parallel()
	tests := []struct {
		path         string
		ok           bool
		req          workspaceapps.Request
		prefix, rest string
	}{
		{path: "/@bob/dev/apps/code/x/y?z", ok: true, req: workspaceapps.Request{Owner: "bob", Workspace: "dev", App: "code"}, prefix: "/@bob/dev/apps/code", rest: "/x/y?z"},
		{path: "/@bob/dev.main/apps/code/", ok: true, req: workspaceapps.Request{Owner: "bob", Workspace: "dev", Agent: "main", App: "code"}, prefix: "/@bob/dev.main/apps/code", rest: "/"},
		{path: "/@bob/dev/apps/code", ok: true, req: workspaceapps.Request{Owner: "bob", Workspace: "dev", App: "code"}, prefix: "/@bob/dev/apps/code"},
		{path: "/@bob/dev/ports/8080/a", ok: true, req: workspaceapps.Request{Owner: "bob", Workspace: "dev", Port: 8080}, prefix: "/@bob/dev/ports/8080", rest: "/a"},
		{path: "/@bob/dev/ports/0/"},
		{path: "/@bob/dev/ports/99999/"},
		{path: "/@bob/dev/terminal"},
		{path: "/@bob/dev/apps/"},
		{path: "/@/dev/apps/x/"},
		{path: "/bob/dev/apps/x/"},
	}
	for _, tc := range tests {
		req, prefix, rest, ok := workspaceapps.ParsePathApp(tc.path)
		if ok != tc.ok || req != tc.req || prefix != tc.prefix || rest != tc.rest {
			t.Errorf("%s: got %+v %q %q %v", tc.path, req, prefix, rest, ok)
		}
	}
}

func TestParseSubdomain(t *testing.T) {
	t.Parallel()
	tests := []struct {
		label string
		ok    bool
		req   workspaceapps.Request
	}{
		{label: "code--main--dev--bob", ok: true, req: workspaceapps.Request{App: "code", Agent: "main", Workspace: "dev", Owner: "bob"}},
		{label: "8080--main--dev--bob", ok: true, req: workspaceapps.Request{Port: 8080, Agent: "main", Workspace: "dev", Owner: "bob"}},
		{label: "Code--Main--Dev--Bob", ok: true, req: workspaceapps.Request{App: "code", Agent: "main", Workspace: "dev", Owner: "bob"}},
		{label: "code--dev--bob"},
		{label: "code----dev--bob"},
		{label: "0--main--dev--bob"},
	}
	for _, tc := range tests {
		req, ok := workspaceapps.ParseSubdomain(tc.label)
		if ok != tc.ok || req != tc.req {
			t.Errorf("%s: got %+v %v", tc.label, req, ok)
		}
		if ok && workspaceapps.SubdomainLabel(req) != lower(tc.label) {
			t.Errorf("%s: label round trip %q", tc.label, workspaceapps.SubdomainLabel(req))
		}
	}
}

func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

func TestAppURLs(t *testing.T) {
	t.Parallel()
	access, _ := url.Parse("https://coder.example.com:8443")
	req := workspaceapps.Request{Owner: "bob", Workspace: "dev", Agent: "main", App: "code"}
	u, err := workspaceapps.SubdomainAppURL(access, "*.apps.example.com", req)
	if err != nil || u.String() != "https://code--main--dev--bob.apps.example.com:8443/" {
		t.Fatalf("subdomain URL %v %v", u, err)
	}
	if got := workspaceapps.PathAppURL(access, req).String(); got != "https://coder.example.com:8443/@bob/dev.main/apps/code/" {
		t.Fatalf("path URL %s", got)
	}
	req.App, req.Port = "", 3000
	if got := workspaceapps.PathAppURL(access, req).String(); got != "https://coder.example.com:8443/@bob/dev.main/ports/3000/" {
		t.Fatalf("port path URL %s", got)
	}
	for _, bad := range []string{"apps.example.com", "*", "*.a*.com", "x.*.com"} {
		if _, err := workspaceapps.ParseWildcardHostname(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
