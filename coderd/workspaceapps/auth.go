package workspaceapps

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/wgmesh/coder/coderd/apikey"
	"github.com/wgmesh/coder/coderd/httpmw"
	"github.com/wgmesh/coder/coderd/rbac"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/database"
)

// Names of the subdomain handshake.
const (
	// SubdomainAppSessionTokenCookie is the cookie an app origin keeps its
	// own, app-scoped API key in. It is HttpOnly and host-only, so neither
	// the app's JavaScript nor other app origins can read it.
	SubdomainAppSessionTokenCookie = "coder_subdomain_app_session_token"
	// AppConnectAPIKeyParam carries a freshly issued app-scoped key from
	// the dashboard origin to the app origin, which turns it into its
	// cookie and strips it from the URL.
	AppConnectAPIKeyParam = "coder_application_connect_api_key"
	// AuthRedirectPath is the dashboard-origin endpoint that issues app
	// keys (it needs the dashboard session).
	AuthRedirectPath = "/api/v2/applications/auth-redirect"
	// RedirectURIParam names the app URL to return to after the handshake.
	RedirectURIParam = "redirect_uri"
	// DefaultAppKeyLifetime is the lifetime of an app-scoped key (never
	// longer than the dashboard session it was issued from).
	DefaultAppKeyLifetime = time.Hour
)

// identity is the authenticated user of an app request.
type identity struct {
	user    database.User
	key     database.APIKey
	subject rbac.Subject
}

// errNoKey means the request carries no usable credentials.
var errNoKey = errors.New("no valid API key")

// appKeyName returns the token-name prefix binding an app key to one app
// origin (host without port, lower case).
func appKeyName(host string) string {
	sum := sha256.Sum256([]byte(strings.ToLower(hostOnly(host))))
	return "app_" + hex.EncodeToString(sum[:10]) + "_"
}

func hostOnly(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		return h
	}
	return host
}

// validateKey checks a token: it exists, its secret matches, it has not
// expired and its user is active. wantScope is the scope it must have;
// for application_connect keys, host is the app origin the key is bound to.
func (s *Server) validateKey(ctx context.Context, token string, wantScope codersdk.APIKeyScope, host string) (*identity, error) {
	if token == "" {
		return nil, errNoKey
	}
	id, secret, err := apikey.Parse(token)
	if err != nil {
		return nil, errNoKey
	}
	key, err := s.opts.DB.GetAPIKeyByID(ctx, id)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, errNoKey
	}
	if err != nil {
		return nil, fmt.Errorf("get api key: %w", err)
	}
	if !apikey.SecretMatches(secret, key.HashedSecret) || !s.opts.Now().Before(key.ExpiresAt) {
		return nil, errNoKey
	}
	if key.Scope != string(wantScope) {
		return nil, errNoKey
	}
	if wantScope == codersdk.APIKeyScopeApplicationConnect && !strings.HasPrefix(key.TokenName, appKeyName(host)) {
		return nil, errNoKey
	}
	user, err := s.opts.DB.GetUserByID(ctx, key.UserID)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, errNoKey
	}
	if err != nil {
		return nil, fmt.Errorf("get api key user: %w", err)
	}
	if user.Deleted || user.Status == database.UserStatusSuspended {
		return nil, errNoKey
	}
	return &identity{user: user, key: key, subject: rbac.Subject{ID: user.ID, Roles: append([]string(nil), user.RbacRoles...)}}, nil
}

// pathIdentity authenticates a request on the dashboard origin by the
// dashboard session (header or cookie).
func (s *Server) pathIdentity(r *http.Request) (*identity, error) {
	c := pathCredential(r)
	return s.validateKey(r.Context(), c.token, c.scope, c.host)
}

// pathCredential is the credential of a path-app request: the dashboard
// session (header or cookie).
func pathCredential(r *http.Request) credential {
	return credential{token: httpmw.SessionTokenFromRequest(r), scope: codersdk.APIKeyScopeAll}
}

// subdomainCredential is the credential of a subdomain-app request: the
// app origin's own cookie, or a Coder-Session-Token header (non-browser
// clients; browsers never send that header on their own).
func subdomainCredential(r *http.Request) credential {
	if h := strings.TrimSpace(r.Header.Get(codersdk.SessionTokenHeader)); h != "" {
		return credential{token: h, scope: codersdk.APIKeyScopeAll}
	}
	c, err := r.Cookie(SubdomainAppSessionTokenCookie)
	if err != nil {
		return credential{scope: codersdk.APIKeyScopeApplicationConnect, host: r.Host}
	}
	return credential{token: c.Value, scope: codersdk.APIKeyScopeApplicationConnect, host: r.Host}
}

// issueAppKey stores a new application_connect key for the user, bound to
// the app origin host, expiring no later than the session it comes from.
func (s *Server) issueAppKey(ctx context.Context, from *identity, host string) (string, time.Time, error) {
	key, err := apikey.Generate()
	if err != nil {
		return "", time.Time{}, fmt.Errorf("generate app key: %w", err)
	}
	now := s.opts.Now().UTC().Truncate(time.Microsecond)
	expires := now.Add(s.opts.AppKeyLifetime)
	if from.key.ExpiresAt.Before(expires) {
		expires = from.key.ExpiresAt.UTC().Truncate(time.Microsecond)
	}
	_, err = s.opts.DB.InsertAPIKey(ctx, database.InsertAPIKeyParams{
		ID:              key.ID,
		HashedSecret:    key.HashedSecret,
		UserID:          from.user.ID,
		LastUsed:        now,
		ExpiresAt:       expires,
		CreatedAt:       now,
		UpdatedAt:       now,
		LoginType:       database.LoginTypePassword,
		LifetimeSeconds: int64(expires.Sub(now) / time.Second),
		TokenName:       appKeyName(host) + strings.ReplaceAll(uuid.NewString(), "-", "")[:12],
		Scope:           string(codersdk.APIKeyScopeApplicationConnect),
	})
	if err != nil {
		return "", time.Time{}, fmt.Errorf("insert app key: %w", err)
	}
	return key.Token(), expires, nil
}

// stripCredentials removes every coder credential from a request about
// to be forwarded to an app: the session header, the dashboard session
// cookie, the app-origin cookie and the handshake parameter.
func stripCredentials(h http.Header, q map[string][]string) {
	h.Del(codersdk.SessionTokenHeader)
	cookies := (&http.Request{Header: http.Header{"Cookie": h.Values("Cookie")}}).Cookies()
	h.Del("Cookie")
	var kept []string
	for _, c := range cookies {
		if c.Name == codersdk.SessionTokenCookie || c.Name == SubdomainAppSessionTokenCookie {
			continue
		}
		kept = append(kept, c.Name+"="+c.Value)
	}
	if len(kept) > 0 {
		h.Set("Cookie", strings.Join(kept, "; "))
	}
	delete(q, AppConnectAPIKeyParam)
}
