package httpmw

import (
	"mime"
	"net/http"
	"net/url"
	"strings"

	"github.com/wgmesh/coder/coderd/httpapi"
	"github.com/wgmesh/coder/codersdk"
)

// CrossOriginReason returns why a browser request must be refused as
// cross-origin, or "" when it is not. Browsers name the initiator in
// Sec-Fetch-Site (only "same-origin", and "none" for a URL the user typed,
// are ours: "same-site" is a sibling host such as a subdomain workspace
// app) and in Origin, which must be the access URL's origin or the
// request's own host. Clients that send neither (the CLI, agents,
// provisioner daemons) are not browsers and pass.
func CrossOriginReason(r *http.Request, accessURL *url.URL) string {
	switch site := r.Header.Get("Sec-Fetch-Site"); site {
	case "", "same-origin", "none":
	default:
		return "The request came from another site or origin (Sec-Fetch-Site: " + site + ")."
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return ""
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return "The request's Origin header (" + origin + ") is not this deployment's origin."
	}
	if strings.EqualFold(u.Scheme, accessURL.Scheme) && strings.EqualFold(u.Host, accessURL.Host) {
		return ""
	}
	if strings.EqualFold(u.Host, r.Host) {
		return ""
	}
	return "The request came from origin " + origin + ", not " + accessURL.Scheme + "://" + accessURL.Host + "."
}

// CSRF refuses cross-site request forgery on state-changing requests
// (every method but GET, HEAD and OPTIONS). A request that carries the
// Coder-Session-Token header passes: browsers cannot add that header to a
// cross-origin request without a CORS preflight, which coderd never
// grants. Every other request (cookie-authenticated, or unauthenticated
// such as first-user creation and login) must
//   - pass CrossOriginReason against accessURL (403), and
//   - when it has a body, declare it Content-Type: application/json (415),
//     a type a cross-origin page cannot send without a preflight (forms and
//     no-cors fetches are limited to text/plain, urlencoded and multipart).
func CSRF(accessURL *url.URL) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch r.Method {
			case http.MethodGet, http.MethodHead, http.MethodOptions:
				next.ServeHTTP(w, r)
				return
			}
			if r.Header.Get(codersdk.SessionTokenHeader) != "" {
				next.ServeHTTP(w, r)
				return
			}
			ctx := r.Context()
			if reason := CrossOriginReason(r, accessURL); reason != "" {
				httpapi.Logger(ctx).WarnContext(ctx, "refused cross-origin request",
					"origin", r.Header.Get("Origin"), "sec_fetch_site", r.Header.Get("Sec-Fetch-Site"), "remote_addr", r.RemoteAddr)
				httpapi.Write(ctx, w, http.StatusForbidden, codersdk.Response{
					Message: "Cross-origin request refused.",
					Detail:  reason,
				})
				return
			}
			if hasBody(r) {
				mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
				if err != nil || mt != "application/json" {
					httpapi.Write(ctx, w, http.StatusUnsupportedMediaType, codersdk.Response{
						Message:     "Request body must be sent as Content-Type: application/json.",
						Validations: []codersdk.ValidationError{{Field: "Content-Type", Detail: "must be application/json"}},
					})
					return
				}
			}
			next.ServeHTTP(w, r)
		})
	}
}

// hasBody reports whether r declares a request body.
func hasBody(r *http.Request) bool {
	return r.ContentLength > 0 || (r.ContentLength < 0 && r.Body != nil && r.Body != http.NoBody) || len(r.TransferEncoding) > 0
}
