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

// TestCSRF sends the requests a cross-site page can make (no-cors fetches
// and form posts: text/plain bodies, a foreign Origin or Sec-Fetch-Site,
// the victim's cookie riding along) and the legitimate ones (the
// dashboard's same-origin JSON fetch, the CLI's token header).
func TestCSRF(t *testing.T) {
	t.Parallel()
	client, srv := coderdtest.New(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	base := srv.URL.String()
	origin := strings.TrimSuffix(base, "/")

	do := func(t *testing.T, method, path, body string, h map[string]string) (int, string) {
		t.Helper()
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range h {
			req.Header.Set(k, v)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		data, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(data)
	}
	firstUser := `{"email":"evil@coder.test","username":"evil","password":"` + coderdtest.FirstUserPassword + `"}`

	// The reported attack: the first-user endpoint is unauthenticated, so
	// a cross-site page could claim a fresh deployment.
	for _, tc := range []struct {
		name string
		h    map[string]string
		want int
	}{
		{"no-cors text/plain from a sibling site", map[string]string{"Content-Type": "text/plain;charset=UTF-8", "Origin": "http://evil.example.test", "Sec-Fetch-Site": "same-site"}, http.StatusForbidden},
		{"form post from another site", map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"null origin (sandboxed iframe)", map[string]string{"Content-Type": "text/plain", "Origin": "null"}, http.StatusForbidden},
		{"text/plain without origin headers", map[string]string{"Content-Type": "text/plain"}, http.StatusUnsupportedMediaType},
		{"no content type", map[string]string{}, http.StatusUnsupportedMediaType},
	} {
		status, body := do(t, http.MethodPost, "/api/v2/users/first", firstUser, tc.h)
		if status != tc.want {
			t.Errorf("first user, %s: %d %s, want %d", tc.name, status, body, tc.want)
		}
	}
	if has, err := client.HasFirstUser(ctx); err != nil || has {
		t.Fatalf("a forged request created the first user (%v)", err)
	}

	// The dashboard's own request works.
	status, body := do(t, http.MethodPost, "/api/v2/users/first",
		`{"email":"owner@coder.test","username":"owner","password":"`+coderdtest.FirstUserPassword+`"}`,
		map[string]string{"Content-Type": "application/json", "Origin": origin, "Sec-Fetch-Site": "same-origin"})
	if status != http.StatusCreated {
		t.Fatalf("same-origin first user: %d %s", status, body)
	}
	login, err := client.LoginWithPassword(ctx, codersdk.LoginWithPasswordRequest{Email: "owner@coder.test", Password: coderdtest.FirstUserPassword})
	if err != nil {
		t.Fatalf("CLI login: %v", err)
	}
	client.SetSessionToken(login.SessionToken)
	cookie := (&http.Cookie{Name: codersdk.SessionTokenCookie, Value: login.SessionToken}).String()
	newUser := func(name string) string {
		return `{"email":"` + name + `@coder.test","username":"` + name + `","password":"` + coderdtest.FirstUserPassword + `","roles":["owner"]}`
	}

	// Cookie-authenticated forgeries.
	for _, tc := range []struct {
		name, method, path, body string
		h                        map[string]string
		want                     int
	}{
		{"create owner, text/plain no-cors", http.MethodPost, "/api/v2/users", newUser("forged1"), map[string]string{"Cookie": cookie, "Content-Type": "text/plain", "Origin": "http://evil.example.test", "Sec-Fetch-Site": "same-site"}, http.StatusForbidden},
		{"create owner, JSON from another origin", http.MethodPost, "/api/v2/users", newUser("forged2"), map[string]string{"Cookie": cookie, "Content-Type": "application/json", "Origin": "http://evil.example"}, http.StatusForbidden},
		{"create owner, text/plain, no origin", http.MethodPost, "/api/v2/users", newUser("forged3"), map[string]string{"Cookie": cookie, "Content-Type": "text/plain"}, http.StatusUnsupportedMediaType},
		{"mint a token, form post", http.MethodPost, "/api/v2/users/me/keys/tokens", `{}`, map[string]string{"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded", "Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"log out, bodiless cross-site POST", http.MethodPost, "/api/v2/users/logout", "", map[string]string{"Cookie": cookie, "Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
	} {
		status, body := do(t, tc.method, tc.path, tc.body, tc.h)
		if status != tc.want {
			t.Errorf("%s: %d %s, want %d", tc.name, status, body, tc.want)
		}
	}
	users, err := client.Users(ctx, codersdk.UsersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(users.Users) != 1 {
		t.Fatalf("forged requests created users: %+v", users.Users)
	}

	// Legitimate: the dashboard's same-origin cookie fetch, and a token
	// header request (the CLI) whatever its content type or origin.
	status, body = do(t, http.MethodPost, "/api/v2/users", newUser("viadashboard"),
		map[string]string{"Cookie": cookie, "Content-Type": "application/json", "Origin": origin, "Sec-Fetch-Site": "same-origin"})
	if status != http.StatusCreated {
		t.Fatalf("dashboard create user: %d %s", status, body)
	}
	status, body = do(t, http.MethodPost, "/api/v2/users", newUser("viatoken"),
		map[string]string{codersdk.SessionTokenHeader: login.SessionToken, "Content-Type": "text/plain"})
	if status != http.StatusCreated {
		t.Fatalf("token-header create user: %d %s", status, body)
	}
	if _, err := client.CreateToken(ctx, "me", codersdk.CreateTokenRequest{}); err != nil {
		t.Fatalf("CLI create token: %v", err)
	}
	status, body = do(t, http.MethodPost, "/api/v2/users/logout", "", map[string]string{"Cookie": cookie, "Origin": origin, "Sec-Fetch-Site": "same-origin"})
	if status != http.StatusOK {
		t.Fatalf("dashboard logout: %d %s", status, body)
	}
}
