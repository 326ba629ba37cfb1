package workspaceapps

import (
	"crypto/sha256"
	"encoding/hex"
	"net"
	"net/http"
	"path"
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
	// AppConnectAPIKeyParam carries a handshake key from the dashboard
	// origin to the app origin, which redeems it (once) for an app key in
	// its cookie and strips it from the URL.
	AppConnectAPIKeyParam = "coder_application_connect_api_key"
	// AuthRedirectPath is the dashboard-origin endpoint that issues app
	// keys (it needs the dashboard session).
	AuthRedirectPath = "/api/v2/applications/auth-redirect"
	// RedirectURIParam names the app URL to return to after the handshake.
	RedirectURIParam = "redirect_uri"
	// DefaultAppKeyLifetime is the lifetime of an app-scoped key (never
	// longer than the dashboard session it was issued from).
	DefaultAppKeyLifetime = time.Hour
	// HandshakeLifetime is how long a handshake key may be redeemed: the
	// browser follows the redirect at once, so a key that leaked into a
	// log or history is useless a minute later (and after its one use).
	HandshakeLifetime = time.Minute
	// CookiePrefix begins the name of every cookie coderd sets. The proxy
	// drops Set-Cookie headers for such names from app responses, so an app
	// cannot plant a session (a login CSRF) or overwrite one.
	CookiePrefix = "coder_"
)

// AppOrigin is the origin a handshake key is bound to: scheme and host
// (with its port; a default port is dropped), lower case.
func AppOrigin(scheme, host string) string {
	scheme, host = strings.ToLower(scheme), strings.ToLower(host)
	if h, p, err := net.SplitHostPort(host); err == nil && ((scheme == "http" && p == "80") || (scheme == "https" && p == "443")) {
		host = h
	}
	return scheme + "://" + host
}

// HandshakeKeyNamePrefix returns the token-name prefix that binds a
// handshake key to one app origin (see AppOrigin). It differs from every
// AppKeyNamePrefix, so a handshake key is never an app key.
func HandshakeKeyNamePrefix(origin string) string {
	sum := sha256.Sum256([]byte(origin))
	return "handshake_" + hex.EncodeToString(sum[:10]) + "_"
}

// isCoderCookie reports whether a cookie name is one of coderd's (also
// with a __Host- or __Secure- prefix, in any case).
func isCoderCookie(name string) bool {
	n := strings.ToLower(strings.TrimSpace(name))
	n = strings.TrimPrefix(strings.TrimPrefix(n, "__host-"), "__secure-")
	return strings.HasPrefix(n, CookiePrefix)
}

// stripCoderSetCookies removes the Set-Cookie headers of an app response
// that would set one of coderd's cookies.
func stripCoderSetCookies(h http.Header) {
	values := h.Values("Set-Cookie")
	if len(values) == 0 {
		return
	}
	h.Del("Set-Cookie")
	for _, v := range values {
		name, _, _ := strings.Cut(v, "=")
		if isCoderCookie(name) {
			continue
		}
		h.Add("Set-Cookie", v)
	}
}

// cleanRedirectPath turns a request path into a redirect target on the
// same origin: one leading slash, no "." or ".." segments, no empty
// segments and no backslashes, so "//evil.example" or "/\evil.example"
// can never become a host. A trailing slash is kept.
func cleanRedirectPath(p string) string {
	p = strings.ReplaceAll(p, "\\", "/")
	c := path.Clean("/" + p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c
}

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
