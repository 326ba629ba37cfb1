package coderd_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wgmesh/coder/coderd/coderdtest"
	"github.com/wgmesh/coder/codersdk"
)

// TestBadInputNever500 sends the public API what PostgreSQL cannot take —
// NUL bytes and invalid UTF-8 in JSON fields, path segments and query
// parameters, offsets past int32, negative and huge limits — and requires
// a 400 that names the field, with no driver or SQL text in the body.
func TestBadInputNever500(t *testing.T) {
	t.Parallel()
	client, srv := coderdtest.New(t, nil)
	first := coderdtest.CreateFirstUser(t, client)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pw := coderdtest.FirstUserPassword

	cases := []struct {
		name, method, path, body string
		anonymous                bool
		field                    string
	}{
		{"login email NUL", "POST", "/api/v2/users/login", `{"email":"owner\u0000@coder.test","password":"x"}`, true, "email"},
		{"login password NUL", "POST", "/api/v2/users/login", `{"email":"owner@coder.test","password":"a\u0000b"}`, true, "password"},
		{"first user NUL", "POST", "/api/v2/users/first", `{"email":"a@b.c","username":"a\u0000","password":"` + pw + `"}`, true, "username"},
		{"create user name NUL", "POST", "/api/v2/users", `{"email":"m@coder.test","username":"member","name":"x\u0000y","password":"` + pw + `"}`, false, "name"},
		{"token name NUL", "POST", "/api/v2/users/me/keys/tokens", `{"token_name":"t\u0000"}`, false, "token_name"},
		{"template name NUL", "POST", "/api/v2/templates", `{"name":"t\u0000","template_version_id":"` + first.UserID + `"}`, false, "name"},
		{"workspace name NUL", "POST", "/api/v2/users/me/workspaces", `{"name":"w\u0000","template_id":"` + first.UserID + `"}`, false, "name"},
		{"user path NUL", "GET", "/api/v2/users/own%00er", "", false, "path"},
		{"user path invalid UTF-8", "GET", "/api/v2/users/%ff%fe", "", false, "path"},
		{"token by name NUL", "GET", "/api/v2/users/me/keys/tokens/a%00b", "", false, "path"},
		{"workspace by name NUL", "GET", "/api/v2/users/me/workspace/ws%00", "", false, "path"},
		{"users search NUL", "GET", "/api/v2/users?q=own%00er", "", false, "q"},
		{"workspaces owner NUL", "GET", "/api/v2/workspaces?owner=a%00", "", false, "owner"},
		{"workspaces q invalid UTF-8", "GET", "/api/v2/workspaces?q=owner:%ff", "", false, "q"},
		{"offset past int32", "GET", "/api/v2/users?offset=2147483648", "", false, "offset"},
		{"offset huge", "GET", "/api/v2/users?offset=99999999999999999999", "", false, "offset"},
		{"offset negative", "GET", "/api/v2/users?offset=-1", "", false, "offset"},
		{"limit negative", "GET", "/api/v2/users?limit=-5", "", false, "limit"},
		{"limit huge", "GET", "/api/v2/users?limit=2147483648", "", false, "limit"},
		{"limit not a number", "GET", "/api/v2/users?limit=ten", "", false, "limit"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			req, err := http.NewRequestWithContext(ctx, tc.method, srv.URL.String()+tc.path, body)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			if !tc.anonymous {
				req.Header.Set(codersdk.SessionTokenHeader, client.SessionToken())
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			data, _ := io.ReadAll(res.Body)
			_ = res.Body.Close()
			text := string(data)
			for _, leak := range []string{"SQLSTATE", "ERROR:", "pgx", "pgconn", "invalid byte sequence", "out of range", "sql:"} {
				if strings.Contains(text, leak) {
					t.Errorf("response leaks %q: %s", leak, text)
				}
			}
			if res.StatusCode != http.StatusBadRequest {
				t.Fatalf("status %d, want 400: %s", res.StatusCode, text)
			}
			if !strings.Contains(text, `"field":"`+tc.field+`"`) {
				t.Errorf("the 400 does not name field %q: %s", tc.field, text)
			}
		})
	}
}
