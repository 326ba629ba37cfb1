package workspaceapps

import (
	"crypto/sha256"
	"encoding/hex"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/wgmesh/coder/coderd/apikey"
	"github.com/wgmesh/coder/codersdk"
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

// AppKeyNamePrefix returns the token-name prefix that binds an app key to
// one app origin (host without port, lower case): keys issued for host
// have a token name starting with it.
func AppKeyNamePrefix(host string) string {
	sum := sha256.Sum256([]byte(strings.ToLower(hostOnly(host))))
	return "app_" + hex.EncodeToString(sum[:10]) + "_"
}

func hostOnly(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		return h
	}
	return host
}

// pathCredential is the credential of a request on the dashboard origin
// (path apps, the auth redirect): the user's session, read where the API
// reads it (apikey.FromRequest).
func pathCredential(r *http.Request) Credential {
	return Credential{Kind: CredentialSession, Token: apikey.FromRequest(r)}
}

// subdomainCredential is the credential of a subdomain-app request: a
// Coder-Session-Token header (non-browser clients; browsers never send
// that header on their own), else the app origin's own cookie. The
// dashboard session cookie is never sent to app origins.
func subdomainCredential(r *http.Request) Credential {
	if h := strings.TrimSpace(r.Header.Get(codersdk.SessionTokenHeader)); h != "" {
		return Credential{Kind: CredentialSession, Token: h}
	}
	c := Credential{Kind: CredentialAppKey, Host: r.Host}
	if cookie, err := r.Cookie(SubdomainAppSessionTokenCookie); err == nil {
		c.Token = cookie.Value
	}
	return c
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
