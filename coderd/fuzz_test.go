package coderd_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/wgmesh/coder/coderd/coderdtest"
	"github.com/wgmesh/coder/codersdk"
)

// fuzzEndpoint is a public API route that reads a JSON request body.
type fuzzEndpoint struct {
	method, path string
	// anonymous routes are called without the owner's token.
	anonymous bool
	// created checks a 201's body against the request (nil: any JSON).
	created func(t *testing.T, f *apiFuzz, req, resp []byte)
}

// apiFuzz is the coderd FuzzAPIRequestBodies posts to.
type apiFuzz struct {
	url      string
	token    string
	memberID string
	fileID   string
}

func (a *apiFuzz) do(t *testing.T, method, path, token string, body []byte) (int, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, a.url+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set(codersdk.SessionTokenHeader, token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return res.StatusCode, data
}

var fuzzEndpoints = []fuzzEndpoint{
	{method: http.MethodPost, path: "/api/v2/users/first", anonymous: true},
	{method: http.MethodPost, path: "/api/v2/users/login", anonymous: true},
	{method: http.MethodPost, path: "/api/v2/users", created: checkCreatedUser},
	{method: http.MethodPut, path: "/api/v2/users/$MEMBER/roles"},
	{method: http.MethodPost, path: "/api/v2/users/me/keys/tokens", created: checkCreatedToken},
	{method: http.MethodPost, path: "/api/v2/templateversions"},
	{method: http.MethodPost, path: "/api/v2/templates"},
	{method: http.MethodPost, path: "/api/v2/users/me/workspaces"},
}

// FuzzAPIRequestBodies posts arbitrary bodies to the public API's JSON
// routes of a real coderd on a real PostgreSQL database, as the owner (or
// anonymously for the first-user and login routes). endpoint picks the route
// (modulo the table above); "$FILE" in a body is replaced by the ID of an
// uploaded template archive and "$MEMBER" in a path by a member's ID, so
// seeds reach past the not-found checks. Properties:
//   - no body gets a 5xx: bad input is the client's error, and the database
//     must never be the first to notice (a NUL byte, an out-of-range number);
//   - every error is the API's error shape: JSON, a message, field-level
//     validations naming a field, valid UTF-8, and no database error text;
//   - what a 201 reports is what was asked (a created user has the
//     requested username and email; a created token authenticates).
func FuzzAPIRequestBodies(f *testing.F) {
	client, srv := coderdtest.New(f, nil)
	coderdtest.CreateFirstUser(f, client)
	_, member := coderdtest.CreateAnotherUser(f, client)
	a := &apiFuzz{url: srv.URL.String(), token: client.SessionToken(), memberID: member.ID.String()}

	var archive bytes.Buffer
	tw := tar.NewWriter(&archive)
	mainTF := []byte("terraform {}\n")
	if err := tw.WriteHeader(&tar.Header{Name: "main.tf", Mode: 0o644, Size: int64(len(mainTF)), Typeflag: tar.TypeReg}); err != nil {
		f.Fatal(err)
	}
	if _, err := tw.Write(mainTF); err != nil {
		f.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		f.Fatal(err)
	}
	up, err := client.Upload(context.Background(), codersdk.ContentTypeTar, &archive)
	if err != nil {
		f.Fatalf("upload template archive: %v", err)
	}
	a.fileID = up.ID.String()

	f.Fuzz(func(t *testing.T, endpoint uint8, body []byte) {
		ep := fuzzEndpoints[int(endpoint)%len(fuzzEndpoints)]
		body = bytes.ReplaceAll(body, []byte("$FILE"), []byte(a.fileID))
		path := strings.ReplaceAll(ep.path, "$MEMBER", a.memberID)
		token := a.token
		if ep.anonymous {
			token = ""
		}
		status, resp := a.do(t, ep.method, path, token, body)
		where := fmt.Sprintf("%s %s %q -> %d %s", ep.method, path, body, status, resp)
		if status >= 500 {
			t.Fatalf("server error: %s", where)
		}
		if !utf8.Valid(resp) || !json.Valid(resp) {
			t.Fatalf("response is not valid UTF-8 JSON: %s", where)
		}
		if status >= 400 {
			var e codersdk.Response
			if err := json.Unmarshal(resp, &e); err != nil || e.Message == "" {
				t.Fatalf("error is not the API's error shape: %s", where)
			}
			for _, v := range e.Validations {
				if v.Field == "" || v.Detail == "" {
					t.Fatalf("validation without field or detail: %s", where)
				}
			}
			if text := e.Message + e.Detail; strings.Contains(text, "SQLSTATE") || strings.Contains(text, "ERROR: ") {
				t.Fatalf("database error text in the response: %s", where)
			}
			return
		}
		if status == http.StatusCreated && ep.created != nil {
			ep.created(t, a, body, resp)
		}
	})
}

// checkCreatedUser: the user coderd created is the one requested.
func checkCreatedUser(t *testing.T, _ *apiFuzz, body, resp []byte) {
	t.Helper()
	var req codersdk.CreateUserRequest
	var user codersdk.User
	if err := json.Unmarshal(body, &req); err != nil {
		t.Fatalf("201 for a body that does not decode: %q", body)
	}
	if err := json.Unmarshal(resp, &user); err != nil {
		t.Fatalf("201 with a body that is not a user: %s", resp)
	}
	if user.Username != req.Username || user.Email != req.Email || user.Name != req.Name {
		t.Fatalf("asked for %q <%s> (%q), created %q <%s> (%q)", req.Username, req.Email, req.Name, user.Username, user.Email, user.Name)
	}
}

// checkCreatedToken: a token coderd created authenticates as the owner
// (an application_connect token is refused the API with 403, not 401).
func checkCreatedToken(t *testing.T, a *apiFuzz, body, resp []byte) {
	t.Helper()
	var req codersdk.CreateTokenRequest
	var key codersdk.GenerateAPIKeyResponse
	if err := json.Unmarshal(body, &req); err != nil {
		t.Fatalf("201 for a body that does not decode: %q", body)
	}
	if err := json.Unmarshal(resp, &key); err != nil || key.Key == "" {
		t.Fatalf("201 without a key for %q: %s", body, resp)
	}
	want := http.StatusOK
	if req.Scope == codersdk.APIKeyScopeApplicationConnect {
		want = http.StatusForbidden
	}
	status, me := a.do(t, http.MethodGet, "/api/v2/users/me", key.Key, nil)
	if status != want {
		t.Fatalf("new token (scope %q) got %d %s on /users/me, want %d; body %q", req.Scope, status, me, want, body)
	}
}
