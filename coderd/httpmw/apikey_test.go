package httpmw_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/wgmesh/coder/coderd/apikey"
	"github.com/wgmesh/coder/coderd/httpmw"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/database"
	"github.com/wgmesh/coder/database/dbtestutil"
)

// authEnv is a database with a clock, and helpers to make users and keys.
type authEnv struct {
	t   *testing.T
	db  *database.Store
	now time.Time
}

func newAuthEnv(t *testing.T) *authEnv {
	t.Helper()
	return &authEnv{
		t:   t,
		db:  database.NewStore(dbtestutil.NewPoolFor(t, dbtestutil.NewDB(t))),
		now: time.Now().UTC().Truncate(time.Microsecond),
	}
}

func (e *authEnv) clock() time.Time { return e.now }

func (e *authEnv) user(status database.UserStatus, deleted bool) database.User {
	e.t.Helper()
	id := uuid.New()
	name := "u" + strings.ReplaceAll(id.String(), "-", "")[:12]
	u, err := e.db.InsertUser(context.Background(), database.InsertUserParams{
		ID: id, Email: name + "@coder.test", Username: name, HashedPassword: []byte("x"),
		CreatedAt: e.now, UpdatedAt: e.now, Status: status, RbacRoles: []string{"member"},
		LoginType: database.LoginTypePassword, LastSeenAt: e.now.Add(-time.Hour), Deleted: deleted,
	})
	if err != nil {
		e.t.Fatalf("insert user: %v", err)
	}
	return u
}

type keySpec struct {
	loginType database.LoginType
	scope     codersdk.APIKeyScope
	tokenName string
	lastUsed  time.Duration // before now
	expiresIn time.Duration // after now (negative: expired)
	lifetime  time.Duration
}

func (e *authEnv) key(u database.User, s keySpec) (string, database.APIKey) {
	e.t.Helper()
	if s.loginType == "" {
		s.loginType = database.LoginTypePassword
	}
	if s.scope == "" {
		s.scope = codersdk.APIKeyScopeAll
	}
	if s.expiresIn == 0 {
		s.expiresIn = time.Hour
	}
	if s.lifetime == 0 {
		s.lifetime = 24 * time.Hour
	}
	if s.tokenName == "" {
		s.tokenName = "k" + uuid.NewString()[:8]
	}
	k, err := apikey.Generate()
	if err != nil {
		e.t.Fatal(err)
	}
	row, err := e.db.InsertAPIKey(context.Background(), database.InsertAPIKeyParams{
		ID: k.ID, HashedSecret: k.HashedSecret, UserID: u.ID,
		LastUsed: e.now.Add(-s.lastUsed), ExpiresAt: e.now.Add(s.expiresIn), CreatedAt: e.now, UpdatedAt: e.now,
		LoginType: s.loginType, LifetimeSeconds: int64(s.lifetime / time.Second), TokenName: s.tokenName, Scope: string(s.scope),
	})
	if err != nil {
		e.t.Fatalf("insert key: %v", err)
	}
	return k.Token(), row
}

func (e *authEnv) reload(k database.APIKey) database.APIKey {
	e.t.Helper()
	got, err := e.db.GetAPIKeyByID(context.Background(), k.ID)
	if err != nil {
		e.t.Fatal(err)
	}
	return got
}

func TestAuthenticateRejects(t *testing.T) {
	t.Parallel()
	e := newAuthEnv(t)
	auth := httpmw.NewAuthenticator(httpmw.APIKeyConfig{DB: e.db, Now: e.clock})
	active := e.user(database.UserStatusActive, false)
	valid, _ := e.key(active, keySpec{})
	id, _, _ := strings.Cut(valid, "-")
	expired, _ := e.key(active, keySpec{expiresIn: -time.Second})
	deletedTok, _ := e.key(e.user(database.UserStatusActive, true), keySpec{})
	suspendedTok, _ := e.key(e.user(database.UserStatusSuspended, false), keySpec{})
	appKey, _ := e.key(active, keySpec{scope: codersdk.APIKeyScopeApplicationConnect, tokenName: "app_aaaa_1"})

	tests := []struct {
		name    string
		token   string
		want    httpmw.KeyRequirement
		status  int
		message string
	}{
		{name: "no token", token: "", status: 401, message: "logged in"},
		{name: "malformed", token: "not-a-key", status: 401, message: "Invalid API key"},
		{name: "unknown id", token: "abcdefghij-abcdefghijklmnopqrstuv", status: 401, message: "Invalid API key"},
		{name: "wrong secret", token: id + "-abcdefghijklmnopqrstuv", status: 401, message: "Invalid API key"},
		{name: "expired", token: expired, status: 401, message: "expired"},
		{name: "deleted user", token: deletedTok, status: 401, message: "Invalid API key"},
		{name: "suspended user", token: suspendedTok, status: 401, message: "suspended"},
		{name: "app key on the API", token: appKey, status: 403, message: "scope"},
		{name: "session as an app key", token: valid, want: httpmw.KeyRequirement{Scope: codersdk.APIKeyScopeApplicationConnect}, status: 403, message: "scope"},
		{name: "app key of another origin", token: appKey, want: httpmw.KeyRequirement{Scope: codersdk.APIKeyScopeApplicationConnect, TokenNamePrefix: "app_bbbb_"}, status: 401, message: "another application"},
	}
	for _, tc := range tests {
		_, err := auth.Authenticate(context.Background(), tc.token, tc.want)
		var authErr *httpmw.AuthError
		if !errors.As(err, &authErr) {
			t.Errorf("%s: err = %v, want an AuthError", tc.name, err)
			continue
		}
		if authErr.Status != tc.status || !strings.Contains(authErr.Message+authErr.Detail, tc.message) {
			t.Errorf("%s: got %d %q %q, want %d mentioning %q", tc.name, authErr.Status, authErr.Message, authErr.Detail, tc.status, tc.message)
		}
	}

	a, err := auth.Authenticate(context.Background(), valid, httpmw.KeyRequirement{})
	if err != nil || a.User.ID != active.ID || a.Subject.ID != active.ID {
		t.Fatalf("valid session: %+v %v", a, err)
	}
	a, err = auth.Authenticate(context.Background(), appKey, httpmw.KeyRequirement{Scope: codersdk.APIKeyScopeApplicationConnect, TokenNamePrefix: "app_aaaa_"})
	if err != nil || a.User.ID != active.ID {
		t.Fatalf("app key on its origin: %+v %v", a, err)
	}
}

func TestAuthenticateRefresh(t *testing.T) {
	t.Parallel()
	e := newAuthEnv(t)
	auth := httpmw.NewAuthenticator(httpmw.APIKeyConfig{DB: e.db, Now: e.clock})
	u := e.user(database.UserStatusActive, false)
	appScope := httpmw.KeyRequirement{Scope: codersdk.APIKeyScopeApplicationConnect}

	tests := []struct {
		name        string
		spec        keySpec
		want        httpmw.KeyRequirement
		refreshed   bool // last_used written
		slides      bool // expires_at moved to now + lifetime
		wantExpires time.Duration
	}{
		{name: "session slides", spec: keySpec{lastUsed: 2 * time.Minute, lifetime: 24 * time.Hour}, refreshed: true, slides: true},
		{name: "recently used session is not written", spec: keySpec{lastUsed: 30 * time.Second}},
		{name: "API token keeps its expiry", spec: keySpec{loginType: database.LoginTypeToken, lastUsed: 2 * time.Minute}, refreshed: true},
		{name: "app key keeps its expiry", spec: keySpec{scope: codersdk.APIKeyScopeApplicationConnect, lastUsed: 2 * time.Minute}, want: appScope, refreshed: true},
	}
	for _, tc := range tests {
		tok, before := e.key(u, tc.spec)
		a, err := auth.Authenticate(context.Background(), tok, tc.want)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		after := e.reload(before)
		if !a.Key.LastUsed.Equal(after.LastUsed) || !a.Key.ExpiresAt.Equal(after.ExpiresAt) {
			t.Errorf("%s: returned key %v/%v differs from stored %v/%v", tc.name, a.Key.LastUsed, a.Key.ExpiresAt, after.LastUsed, after.ExpiresAt)
		}
		if got := after.LastUsed.Equal(e.now); got != tc.refreshed {
			t.Errorf("%s: last_used refreshed = %v (%v), want %v", tc.name, got, after.LastUsed, tc.refreshed)
		}
		wantExpires := before.ExpiresAt
		if tc.slides {
			wantExpires = e.now.Add(time.Duration(before.LifetimeSeconds) * time.Second)
		}
		if !after.ExpiresAt.Equal(wantExpires) {
			t.Errorf("%s: expires_at = %v, want %v", tc.name, after.ExpiresAt, wantExpires)
		}
	}
	seen, err := e.db.GetUserByID(context.Background(), u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !seen.LastSeenAt.Equal(e.now) {
		t.Fatalf("last_seen_at = %v, want %v", seen.LastSeenAt, e.now)
	}
}

// TestExtractAPIKeySources checks where the middleware reads keys from:
// the header and the session cookie, never the URL.
func TestExtractAPIKeySources(t *testing.T) {
	t.Parallel()
	e := newAuthEnv(t)
	u := e.user(database.UserStatusActive, false)
	tok, _ := e.key(u, keySpec{})
	h := httpmw.ExtractAPIKey(httpmw.APIKeyConfig{DB: e.db, Now: e.clock})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, ok := httpmw.AuthorizationFromContext(r.Context())
		if !ok || a.User.ID != u.ID {
			t.Errorf("handler saw authorization %+v %v", a, ok)
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	tests := []struct {
		name   string
		mod    func(*http.Request)
		status int
	}{
		{name: "header", mod: func(r *http.Request) { r.Header.Set(codersdk.SessionTokenHeader, tok) }, status: http.StatusNoContent},
		{name: "cookie", mod: func(r *http.Request) { r.AddCookie(&http.Cookie{Name: codersdk.SessionTokenCookie, Value: tok}) }, status: http.StatusNoContent},
		{name: "query parameter is ignored", mod: func(r *http.Request) {
			r.URL.RawQuery = codersdk.SessionTokenCookie + "=" + tok + "&" + "session_token=" + tok
		}, status: http.StatusUnauthorized},
		{name: "none", mod: func(*http.Request) {}, status: http.StatusUnauthorized},
	}
	for _, tc := range tests {
		r := httptest.NewRequest(http.MethodGet, "/api/v2/users/me", nil)
		tc.mod(r)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != tc.status {
			t.Errorf("%s: status %d, want %d (%s)", tc.name, w.Code, tc.status, w.Body)
		}
		if tc.status != http.StatusNoContent {
			var resp codersdk.Response
			if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil || resp.Message == "" {
				t.Errorf("%s: error body %q: %v", tc.name, w.Body, err)
			}
		}
	}
}
