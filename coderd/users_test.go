package coderd_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wgmesh/coder/coderd"
	"github.com/wgmesh/coder/coderd/coderdtest"
	"github.com/wgmesh/coder/codersdk"
)

// clock is a settable time source for the API.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Now()} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// requireStatus fails unless err is an API error with the given status.
func requireStatus(t *testing.T, err error, status int) *codersdk.Error {
	t.Helper()
	if err == nil {
		t.Fatalf("want API error with status %d, got success", status)
	}
	apiErr, ok := codersdk.AsError(err)
	if !ok {
		t.Fatalf("want API error with status %d, got %v", status, err)
	}
	if apiErr.StatusCode() != status {
		t.Fatalf("status = %d, want %d (%v)", apiErr.StatusCode(), status, err)
	}
	if apiErr.Message == "" {
		t.Fatalf("error response has no message: %v", err)
	}
	return apiErr
}

func TestFirstUser(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	client, _ := coderdtest.New(t, nil)

	has, err := client.HasFirstUser(ctx)
	if err != nil || has {
		t.Fatalf("HasFirstUser before = %v, %v; want false", has, err)
	}
	first := coderdtest.CreateFirstUser(t, client)
	has, err = client.HasFirstUser(ctx)
	if err != nil || !has {
		t.Fatalf("HasFirstUser after = %v, %v; want true", has, err)
	}
	me, err := client.User(ctx, codersdk.Me)
	if err != nil {
		t.Fatal(err)
	}
	if me.Username != first.Username || len(me.Roles) != 1 || me.Roles[0].Name != "owner" {
		t.Fatalf("first user = %+v, want owner %q", me, first.Username)
	}

	_, err = client.CreateFirstUser(ctx, codersdk.CreateFirstUserRequest{
		Email: "second@coder.test", Username: "second", Password: coderdtest.FirstUserPassword,
	})
	requireStatus(t, err, http.StatusConflict)
}

func TestFirstUserConcurrent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	client, _ := coderdtest.New(t, nil)
	const n = 4
	errs := make(chan error, n)
	for i := range n {
		go func() {
			_, err := client.CreateFirstUser(ctx, codersdk.CreateFirstUserRequest{
				Email: "u" + string(rune('a'+i)) + "@coder.test", Username: "u" + string(rune('a'+i)), Password: coderdtest.FirstUserPassword,
			})
			errs <- err
		}()
	}
	created := 0
	for range n {
		err := <-errs
		if err == nil {
			created++
			continue
		}
		requireStatus(t, err, http.StatusConflict)
	}
	if created != 1 {
		t.Fatalf("%d first users created concurrently, want 1", created)
	}
}

func TestLogin(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	client, _ := coderdtest.New(t, nil)
	first := coderdtest.CreateFirstUser(t, client)
	anon := codersdk.New(client.URL)

	t.Run("WrongPassword", func(t *testing.T) {
		t.Parallel()
		_, err := anon.LoginWithPassword(ctx, codersdk.LoginWithPasswordRequest{Email: first.Email, Password: "not-the-password"})
		apiErr := requireStatus(t, err, http.StatusUnauthorized)
		if apiErr.Message != "Incorrect email or password." {
			t.Fatalf("message = %q", apiErr.Message)
		}
	})
	t.Run("UnknownUserSameAnswer", func(t *testing.T) {
		t.Parallel()
		_, err := anon.LoginWithPassword(ctx, codersdk.LoginWithPasswordRequest{Email: "nobody@coder.test", Password: "not-the-password"})
		apiErr := requireStatus(t, err, http.StatusUnauthorized)
		if apiErr.Message != "Incorrect email or password." {
			t.Fatalf("message = %q; unknown users must get the wrong-password answer", apiErr.Message)
		}
	})
	t.Run("EmailCaseInsensitive", func(t *testing.T) {
		t.Parallel()
		resp, err := anon.LoginWithPassword(ctx, codersdk.LoginWithPasswordRequest{Email: strings.ToUpper(first.Email), Password: coderdtest.FirstUserPassword})
		if err != nil {
			t.Fatal(err)
		}
		if resp.SessionToken == "" {
			t.Fatal("empty session token")
		}
	})
	t.Run("MissingFields", func(t *testing.T) {
		t.Parallel()
		_, err := anon.LoginWithPassword(ctx, codersdk.LoginWithPasswordRequest{})
		apiErr := requireStatus(t, err, http.StatusBadRequest)
		if len(apiErr.Validations) != 2 {
			t.Fatalf("validations = %+v, want email and password", apiErr.Validations)
		}
	})
	t.Run("NoToken", func(t *testing.T) {
		t.Parallel()
		_, err := anon.User(ctx, codersdk.Me)
		requireStatus(t, err, http.StatusUnauthorized)
	})
	t.Run("GarbageToken", func(t *testing.T) {
		t.Parallel()
		c := codersdk.New(client.URL)
		c.SetSessionToken("abcdefghij-abcdefghijabcdefghijab")
		_, err := c.User(ctx, codersdk.Me)
		requireStatus(t, err, http.StatusUnauthorized)
		c.SetSessionToken("not-a-key")
		_, err = c.User(ctx, codersdk.Me)
		requireStatus(t, err, http.StatusUnauthorized)
	})
	t.Run("WrongSecret", func(t *testing.T) {
		t.Parallel()
		id, _, _ := strings.Cut(client.SessionToken(), "-")
		c := codersdk.New(client.URL)
		c.SetSessionToken(id + "-" + strings.Repeat("x", 22))
		_, err := c.User(ctx, codersdk.Me)
		requireStatus(t, err, http.StatusUnauthorized)
	})
}

func TestLogout(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	client, _ := coderdtest.New(t, nil)
	coderdtest.CreateFirstUser(t, client)
	if err := client.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	_, err := client.User(ctx, codersdk.Me)
	requireStatus(t, err, http.StatusUnauthorized)
}

func TestSessionExpiryAndRefresh(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clk := newClock()
	client, srv := coderdtest.New(t, &coderdtest.Options{API: coderd.Options{Now: clk.Now}})
	coderdtest.CreateFirstUser(t, client)
	id, _, _ := strings.Cut(client.SessionToken(), "-")

	key, err := srv.DB.GetAPIKeyByID(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	firstExpiry := key.ExpiresAt

	// Used again after an hour: the session slides forward.
	clk.Advance(time.Hour)
	if _, err := client.User(ctx, codersdk.Me); err != nil {
		t.Fatal(err)
	}
	key, err = srv.DB.GetAPIKeyByID(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if !key.ExpiresAt.After(firstExpiry) {
		t.Fatalf("session not refreshed: expires %v, was %v", key.ExpiresAt, firstExpiry)
	}

	// Unused past its lifetime: expired.
	clk.Advance(coderd.DefaultSessionLifetime + time.Minute)
	_, err = client.User(ctx, codersdk.Me)
	apiErr := requireStatus(t, err, http.StatusUnauthorized)
	if !strings.Contains(apiErr.Message, "expired") {
		t.Fatalf("message = %q, want it to say expired", apiErr.Message)
	}
}

func TestTokenExpired(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clk := newClock()
	client, _ := coderdtest.New(t, &coderdtest.Options{API: coderd.Options{Now: clk.Now}})
	coderdtest.CreateFirstUser(t, client)
	resp, err := client.CreateToken(ctx, codersdk.Me, codersdk.CreateTokenRequest{TokenName: "short", Lifetime: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	tokenClient := codersdk.New(client.URL)
	tokenClient.SetSessionToken(resp.Key)
	if _, err := tokenClient.User(ctx, codersdk.Me); err != nil {
		t.Fatalf("fresh token rejected: %v", err)
	}
	// Tokens do not slide: used after 50 minutes, still expire at 1h.
	clk.Advance(50 * time.Minute)
	if _, err := tokenClient.User(ctx, codersdk.Me); err != nil {
		t.Fatalf("token rejected before expiry: %v", err)
	}
	clk.Advance(11 * time.Minute)
	_, err = tokenClient.User(ctx, codersdk.Me)
	requireStatus(t, err, http.StatusUnauthorized)
}

func TestTokens(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	client, _ := coderdtest.New(t, &coderdtest.Options{API: coderd.Options{MaxTokenLifetime: 48 * time.Hour}})
	coderdtest.CreateFirstUser(t, client)

	resp, err := client.CreateToken(ctx, codersdk.Me, codersdk.CreateTokenRequest{TokenName: "ci", Lifetime: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := client.Tokens(ctx, codersdk.Me)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0].TokenName != "ci" || keys[0].LifetimeSeconds != 86400 || keys[0].LoginType != codersdk.LoginTypeToken {
		t.Fatalf("tokens = %+v, want one token named ci (sessions are not listed)", keys)
	}
	if !strings.HasPrefix(resp.Key, keys[0].ID+"-") {
		t.Fatalf("key %q does not start with its id %q", resp.Key, keys[0].ID)
	}
	byName, err := client.APIKeyByName(ctx, codersdk.Me, "ci")
	if err != nil || byName.ID != keys[0].ID {
		t.Fatalf("APIKeyByName = %+v, %v", byName, err)
	}

	_, err = client.CreateToken(ctx, codersdk.Me, codersdk.CreateTokenRequest{TokenName: "ci"})
	requireStatus(t, err, http.StatusConflict)
	_, err = client.CreateToken(ctx, codersdk.Me, codersdk.CreateTokenRequest{TokenName: "long", Lifetime: 72 * time.Hour})
	apiErr := requireStatus(t, err, http.StatusBadRequest)
	if len(apiErr.Validations) != 1 || apiErr.Validations[0].Field != "lifetime" {
		t.Fatalf("validations = %+v, want lifetime", apiErr.Validations)
	}
	_, err = client.APIKeyByName(ctx, codersdk.Me, "missing")
	requireStatus(t, err, http.StatusNotFound)

	// Revoked: a deleted token no longer authenticates.
	tokenClient := codersdk.New(client.URL)
	tokenClient.SetSessionToken(resp.Key)
	if _, err := tokenClient.User(ctx, codersdk.Me); err != nil {
		t.Fatal(err)
	}
	if err := client.DeleteAPIKey(ctx, codersdk.Me, keys[0].ID); err != nil {
		t.Fatal(err)
	}
	_, err = tokenClient.User(ctx, codersdk.Me)
	requireStatus(t, err, http.StatusUnauthorized)
	err = client.DeleteAPIKey(ctx, codersdk.Me, keys[0].ID)
	requireStatus(t, err, http.StatusNotFound)
}

func TestMemberIsolation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	owner, _ := coderdtest.New(t, nil)
	first := coderdtest.CreateFirstUser(t, owner)
	alice, aliceUser := coderdtest.CreateAnotherUser(t, owner)
	bob, bobUser := coderdtest.CreateAnotherUser(t, owner)
	bobToken, err := bob.CreateToken(ctx, codersdk.Me, codersdk.CreateTokenRequest{TokenName: "bobs"})
	if err != nil {
		t.Fatal(err)
	}
	bobKeys, err := bob.Tokens(ctx, codersdk.Me)
	if err != nil || len(bobKeys) != 1 {
		t.Fatalf("bob tokens = %+v, %v", bobKeys, err)
	}
	_ = bobToken

	// Other users are invisible to a member.
	_, err = alice.User(ctx, bobUser.Username)
	requireStatus(t, err, http.StatusNotFound)
	_, err = alice.User(ctx, first.Username)
	requireStatus(t, err, http.StatusNotFound)
	_, err = alice.User(ctx, bobUser.ID.String())
	requireStatus(t, err, http.StatusNotFound)
	// ... and so are their tokens.
	_, err = alice.Tokens(ctx, bobUser.Username)
	requireStatus(t, err, http.StatusNotFound)
	_, err = alice.APIKeyByName(ctx, bobUser.Username, "bobs")
	requireStatus(t, err, http.StatusNotFound)
	err = alice.DeleteAPIKey(ctx, bobUser.Username, bobKeys[0].ID)
	requireStatus(t, err, http.StatusNotFound)
	// A key id of another user under one's own path is not found either.
	err = alice.DeleteAPIKey(ctx, codersdk.Me, bobKeys[0].ID)
	requireStatus(t, err, http.StatusNotFound)
	_, err = alice.CreateToken(ctx, bobUser.Username, codersdk.CreateTokenRequest{})
	requireStatus(t, err, http.StatusNotFound)

	// Members see themselves and may not administer anyone.
	me, err := alice.User(ctx, codersdk.Me)
	if err != nil || me.ID != aliceUser.ID {
		t.Fatalf("alice me = %+v, %v", me, err)
	}
	list, err := alice.Users(ctx, codersdk.UsersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if list.Count != 1 || len(list.Users) != 1 || list.Users[0].ID != aliceUser.ID {
		t.Fatalf("member users list = %+v, want only alice", list)
	}
	_, err = alice.UpdateUserStatus(ctx, codersdk.Me, codersdk.UserStatusSuspended)
	requireStatus(t, err, http.StatusForbidden)
	_, err = alice.UpdateUserRoles(ctx, codersdk.Me, codersdk.UpdateRoles{Roles: []string{"owner"}})
	requireStatus(t, err, http.StatusForbidden)
	_, err = alice.CreateUser(ctx, codersdk.CreateUserRequest{Email: "x@coder.test", Username: "x", Password: coderdtest.FirstUserPassword})
	requireStatus(t, err, http.StatusForbidden)

	// Owners see everyone.
	list, err = owner.Users(ctx, codersdk.UsersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if list.Count != 3 || len(list.Users) != 3 {
		t.Fatalf("owner users list = %+v, want 3", list)
	}
	list, err = owner.Users(ctx, codersdk.UsersRequest{Search: aliceUser.Username})
	if err != nil || list.Count != 1 || list.Users[0].ID != aliceUser.ID {
		t.Fatalf("owner search = %+v, %v", list, err)
	}
	page, err := owner.Users(ctx, codersdk.UsersRequest{Limit: 2, Offset: 2})
	if err != nil || page.Count != 3 || len(page.Users) != 1 {
		t.Fatalf("owner page = %+v, %v", page, err)
	}
	if _, err := owner.Tokens(ctx, bobUser.Username); err != nil {
		t.Fatalf("owner reading bob's tokens: %v", err)
	}
}

func TestTemplateAdminReadsUsers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	owner, _ := coderdtest.New(t, nil)
	coderdtest.CreateFirstUser(t, owner)
	admin, _ := coderdtest.CreateAnotherUser(t, owner, "template-admin")
	_, member := coderdtest.CreateAnotherUser(t, owner)
	if _, err := admin.User(ctx, member.Username); err != nil {
		t.Fatalf("template admin reading a member: %v", err)
	}
	_, err := admin.UpdateUserStatus(ctx, member.Username, codersdk.UserStatusSuspended)
	requireStatus(t, err, http.StatusForbidden)
	_, err = admin.Tokens(ctx, member.Username)
	requireStatus(t, err, http.StatusNotFound)
}

func TestSuspendedUser(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	owner, _ := coderdtest.New(t, nil)
	coderdtest.CreateFirstUser(t, owner)
	member, user := coderdtest.CreateAnotherUser(t, owner)
	token, err := member.CreateToken(ctx, codersdk.Me, codersdk.CreateTokenRequest{TokenName: "t"})
	if err != nil {
		t.Fatal(err)
	}

	suspended, err := owner.UpdateUserStatus(ctx, user.Username, codersdk.UserStatusSuspended)
	if err != nil || suspended.Status != codersdk.UserStatusSuspended {
		t.Fatalf("suspend = %+v, %v", suspended, err)
	}
	// Existing session and token are rejected.
	_, err = member.User(ctx, codersdk.Me)
	apiErr := requireStatus(t, err, http.StatusUnauthorized)
	if !strings.Contains(apiErr.Message, "suspended") {
		t.Fatalf("message = %q, want it to say suspended", apiErr.Message)
	}
	tokenClient := codersdk.New(owner.URL)
	tokenClient.SetSessionToken(token.Key)
	_, err = tokenClient.User(ctx, codersdk.Me)
	requireStatus(t, err, http.StatusUnauthorized)
	// Login is refused.
	_, err = codersdk.New(owner.URL).LoginWithPassword(ctx, codersdk.LoginWithPasswordRequest{Email: user.Email, Password: coderdtest.FirstUserPassword})
	apiErr = requireStatus(t, err, http.StatusUnauthorized)
	if !strings.Contains(apiErr.Message, "suspended") {
		t.Fatalf("login message = %q, want it to say suspended", apiErr.Message)
	}

	// Owners cannot suspend themselves.
	_, err = owner.UpdateUserStatus(ctx, codersdk.Me, codersdk.UserStatusSuspended)
	requireStatus(t, err, http.StatusBadRequest)

	// Reactivated: the old session works again.
	if _, err := owner.UpdateUserStatus(ctx, user.ID.String(), codersdk.UserStatusActive); err != nil {
		t.Fatal(err)
	}
	if _, err := member.User(ctx, codersdk.Me); err != nil {
		t.Fatalf("reactivated user rejected: %v", err)
	}
}

func TestCreateUserValidation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	owner, _ := coderdtest.New(t, nil)
	coderdtest.CreateFirstUser(t, owner)
	base := codersdk.CreateUserRequest{Email: "dup@coder.test", Username: "dup", Password: coderdtest.FirstUserPassword}
	if _, err := owner.CreateUser(ctx, base); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		mutate func(*codersdk.CreateUserRequest)
		status int
		field  string
	}{
		{"duplicate username (case-insensitive)", func(r *codersdk.CreateUserRequest) { r.Email = "other@coder.test"; r.Username = "DUP" }, http.StatusConflict, "username"},
		{"duplicate email (case-insensitive)", func(r *codersdk.CreateUserRequest) { r.Username = "other"; r.Email = "DUP@coder.test" }, http.StatusConflict, "email"},
		{"bad username", func(r *codersdk.CreateUserRequest) { r.Username = "has space" }, http.StatusBadRequest, "username"},
		{"bad email", func(r *codersdk.CreateUserRequest) { r.Username = "other"; r.Email = "nope" }, http.StatusBadRequest, "email"},
		{"short password", func(r *codersdk.CreateUserRequest) {
			r.Username = "other"
			r.Email = "o@coder.test"
			r.Password = "short"
		}, http.StatusBadRequest, "password"},
		{"unknown role", func(r *codersdk.CreateUserRequest) {
			r.Username = "other"
			r.Email = "o@coder.test"
			r.Roles = []string{"wizard"}
		}, http.StatusBadRequest, "roles"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			req := base
			tc.mutate(&req)
			_, err := owner.CreateUser(ctx, req)
			apiErr := requireStatus(t, err, tc.status)
			found := false
			for _, v := range apiErr.Validations {
				found = found || v.Field == tc.field
			}
			if !found {
				t.Fatalf("validations %+v do not name %q", apiErr.Validations, tc.field)
			}
		})
	}
}

func TestUpdateRoles(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	owner, _ := coderdtest.New(t, nil)
	coderdtest.CreateFirstUser(t, owner)
	member, user := coderdtest.CreateAnotherUser(t, owner)
	updated, err := owner.UpdateUserRoles(ctx, user.Username, codersdk.UpdateRoles{Roles: []string{"template-admin", "member"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(updated.Roles) != 1 || updated.Roles[0].Name != "template-admin" || updated.Roles[0].DisplayName != "Template Admin" {
		t.Fatalf("roles = %+v", updated.Roles)
	}
	// The new role takes effect on the existing session.
	list, err := member.Users(ctx, codersdk.UsersRequest{})
	if err != nil || list.Count != 2 {
		t.Fatalf("template admin users list = %+v, %v; want both users", list, err)
	}
	_, err = owner.UpdateUserRoles(ctx, codersdk.Me, codersdk.UpdateRoles{Roles: []string{}})
	requireStatus(t, err, http.StatusBadRequest)
}

func TestMalformedJSON(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	client, _ := coderdtest.New(t, nil)
	for _, path := range []string{"/api/v2/users/first", "/api/v2/users/login"} {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, client.URL.String()+path, bytes.NewBufferString(`{"email": `))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusBadRequest {
			t.Fatalf("%s: status %d, want 400", path, res.StatusCode)
		}
		var shape codersdk.Response
		if err := json.Unmarshal(body, &shape); err != nil {
			t.Fatalf("%s: body %q is not the error shape: %v", path, body, err)
		}
		if shape.Message == "" || shape.Detail == "" {
			t.Fatalf("%s: error shape %+v lacks message or detail", path, shape)
		}
	}
	// Wrong types name the field.
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, client.URL.String()+"/api/v2/users/login", bytes.NewBufferString(`{"email": 5, "extra": true}`))
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	apiErr := codersdk.ReadBodyAsError(res)
	res.Body.Close()
	got := requireStatus(t, apiErr, http.StatusBadRequest)
	if len(got.Validations) != 1 || got.Validations[0].Field != "email" {
		t.Fatalf("validations = %+v, want email", got.Validations)
	}
}

func TestBuildInfoAndHealth(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	client, srv := coderdtest.New(t, nil)
	info, err := client.BuildInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Version == "" || info.DashboardURL != srv.URL.String() {
		t.Fatalf("buildinfo = %+v", info)
	}
	res, err := client.Request(ctx, http.MethodGet, "/healthz", nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("healthz status %d", res.StatusCode)
	}
	res, err = client.Request(ctx, http.MethodGet, "/api/v2/nope", nil)
	if err != nil {
		t.Fatal(err)
	}
	requireStatus(t, codersdk.ReadBodyAsError(res), http.StatusNotFound)
	res.Body.Close()
}
