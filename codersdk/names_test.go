package codersdk_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"

	"github.com/wgmesh/coder/codersdk"
)

func TestNameRules(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name                 string
		workspace, user, ref bool // valid as a workspace/template name, a username, a user reference
	}{
		{"dev", true, true, true},
		{"my-ws-2", true, true, true},
		{"me", true, false, true},
		{uuid.NewString(), false, false, true},
		{"", false, false, false},
		{".", false, false, false},
		{"..", false, false, false},
		{"a/b", false, false, false},
		{"x?y", false, false, false},
		{"x#y", false, false, false},
		{"%2e%2e", false, false, false},
		{"a--b", false, false, false},
		{"-a", false, false, false},
		{"bad name", false, false, false},
		{"abcdefghijklmnopqrstuvwxyz0123456", false, false, false}, // 33 characters
	} {
		if got := codersdk.NameValid(tc.name) == ""; got != tc.workspace {
			t.Errorf("NameValid(%q) valid=%v, want %v", tc.name, got, tc.workspace)
		}
		if got := codersdk.UsernameValid(tc.name) == ""; got != tc.user {
			t.Errorf("UsernameValid(%q) valid=%v, want %v", tc.name, got, tc.user)
		}
		if got := codersdk.UserRefValid(tc.name) == ""; got != tc.ref {
			t.Errorf("UserRefValid(%q) valid=%v, want %v", tc.name, got, tc.ref)
		}
	}
}

// TestRequestRefusesDotSegments: a name of "." or ".." never turns a
// request into a call to another endpoint; nothing is sent at all.
func TestRequestRefusesDotSegments(t *testing.T) {
	t.Parallel()
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusTeapot)
	}))
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	c := codersdk.New(u)
	ctx := context.Background()
	for _, call := range []func() error{
		func() error { _, err := c.WorkspaceByOwnerAndName(ctx, codersdk.Me, ".."); return err },
		func() error { _, err := c.WorkspaceByOwnerAndName(ctx, "..", "x"); return err },
		func() error { _, err := c.User(ctx, "."); return err },
		func() error { _, err := c.TemplateByName(ctx, ".."); return err },
	} {
		if err := call(); !errors.Is(err, codersdk.ErrInvalidPathSegment) {
			t.Fatalf("err = %v, want ErrInvalidPathSegment", err)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("%d requests reached the server", n)
	}
	// Escaped characters stay inside their segment and do reach it.
	if _, err := c.WorkspaceByOwnerAndName(ctx, codersdk.Me, "a/b?c#d%"); errors.Is(err, codersdk.ErrInvalidPathSegment) || hits.Load() != 1 {
		t.Fatalf("escaped name: err %v, %d requests", err, hits.Load())
	}
}
