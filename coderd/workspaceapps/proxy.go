package workspaceapps

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Options configures New.
type Options struct {
	// Logger; nil discards.
	Logger *slog.Logger
	// Authorizer decides the requests the proxy has not decided recently
	// (coderd: a Policy on its database). Required.
	Authorizer Authorizer
	// AppKeys runs the subdomain cookie handshake. Required.
	AppKeys AppKeys
	// Dialer carries requests to agents (coderd: its Mesh). Required.
	Dialer AgentDialer
	// AccessURL is the dashboard origin. Required.
	AccessURL *url.URL
	// WildcardHostname is the subdomain apps pattern, e.g.
	// "*.apps.example.com" (a port, if any, is ignored); empty disables
	// subdomain apps.
	WildcardHostname string
	// DisablePathApps refuses path-based apps (they share the dashboard
	// origin).
	DisablePathApps bool
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// AuthCacheTTL is how long a granted request (credential + app) is
	// remembered without asking the Authorizer again: the staleness bound
	// of authorization decisions (default DefaultAuthCacheTTL; negative
	// disables the cache).
	AuthCacheTTL time.Duration
	// Track, when set, is called for every proxied request with its
	// grant; the request is served with the returned context and done is
	// called when it ends. coderd ends the context when the grant's key,
	// user or workspace is revoked, which closes the request and, for an
	// upgraded (websocket) connection, the connection.
	Track func(ctx context.Context, g *Grant) (tracked context.Context, done func())
}

// Server resolves, authorizes and proxies workspace app requests.
type Server struct {
	opts           Options
	logger         *slog.Logger
	wildcardSuffix string // ".apps.example.com", lower case; "" when disabled
	cache          *decisionCache
	buffers        *bufferPool
}

// New returns a Server.
func New(opts Options) (*Server, error) {
	switch {
	case opts.Authorizer == nil:
		return nil, errors.New("workspace apps: Authorizer is required")
	case opts.AppKeys == nil:
		return nil, errors.New("workspace apps: AppKeys is required")
	case opts.Dialer == nil:
		return nil, errors.New("workspace apps: Dialer is required")
	case opts.AccessURL == nil:
		return nil, errors.New("workspace apps: AccessURL is required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.AuthCacheTTL == 0 {
		opts.AuthCacheTTL = DefaultAuthCacheTTL
	}
	s := &Server{
		opts:    opts,
		logger:  opts.Logger.With("component", "workspace-apps"),
		cache:   newDecisionCache(opts.AuthCacheTTL, DefaultAuthCacheSize),
		buffers: newBufferPool(),
	}
	if opts.WildcardHostname != "" {
		suffix, err := ParseWildcardHostname(opts.WildcardHostname)
		if err != nil {
			return nil, err
		}
		s.wildcardSuffix = suffix
	}
	return s, nil
}

// ParseWildcardHostname validates a pattern like "*.apps.example.com"
// (optionally with a port) and returns its suffix ".apps.example.com".
func ParseWildcardHostname(pattern string) (string, error) {
	p := strings.ToLower(hostOnly(strings.TrimSpace(pattern)))
	if !strings.HasPrefix(p, "*.") || len(p) < 4 || strings.Contains(p[2:], "*") {
		return "", fmt.Errorf("wildcard access URL %q: want the form *.example.com", pattern)
	}
	return p[1:], nil
}

// WildcardHostname returns the configured pattern ("" when subdomain apps
// are disabled).
func (s *Server) WildcardHostname() string { return s.opts.WildcardHostname }

// ForgetGrants drops every remembered authorization decision, so the next
// request of a revoked credential, user or workspace is decided afresh.
func (s *Server) ForgetGrants() { s.cache.clear() }

// Request names what an app request asks for.
type Request struct {
	// Owner is the workspace owner's username.
	Owner string `json:"owner"`
	// Workspace is the workspace name.
	Workspace string `json:"workspace"`
	// Agent is the agent name ("" picks the workspace's only/first agent).
	Agent string `json:"agent,omitempty"`
	// App is the app slug; empty for a port request.
	App string `json:"app,omitempty"`
	// Port is the port for a port request.
	Port uint16 `json:"port,omitempty"`
}

// ParsePathApp parses /@OWNER/WORKSPACE[.AGENT]/apps/APP/REST or
// /@OWNER/WORKSPACE[.AGENT]/ports/PORT/REST. prefix is the part that
// names the app (without the trailing slash) and rest what follows it
// ("" when the URL ends right after the app name).
func ParsePathApp(path string) (req Request, prefix, rest string, ok bool) {
	if !strings.HasPrefix(path, "/@") {
		return Request{}, "", "", false
	}
	parts := strings.SplitN(path[2:], "/", 4)
	if len(parts) < 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return Request{}, "", "", false
	}
	if len(parts) == 3 {
		// /@o/w/apps: nothing named.
		return Request{}, "", "", false
	}
	req.Owner = parts[0]
	var hasAgent bool
	req.Workspace, req.Agent, hasAgent = strings.Cut(parts[1], ".")
	if req.Workspace == "" || hasAgent && req.Agent == "" {
		// "/@o/.x/..." or "/@o/w./...": an empty workspace or agent name.
		return Request{}, "", "", false
	}
	name, after, hasSlash := strings.Cut(parts[3], "/")
	if name == "" {
		return Request{}, "", "", false
	}
	switch parts[2] {
	case "apps":
		req.App = name
	case "ports":
		p, ok := parsePort(name)
		if !ok {
			return Request{}, "", "", false
		}
		req.Port = p
	default:
		return Request{}, "", "", false
	}
	prefix = "/@" + parts[0] + "/" + parts[1] + "/" + parts[2] + "/" + name
	if hasSlash {
		rest = "/" + after
	}
	return req, prefix, rest, true
}

// parsePort parses a port written canonically: 1-65535 in decimal digits
// without a sign or leading zeros, so each port has exactly one spelling
// (one origin, one path prefix).
func parsePort(s string) (uint16, bool) {
	if s == "" || s[0] == '0' || len(s) > 5 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	p, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0, false
	}
	return uint16(p), true
}

// isHostLabelByte reports whether c may appear in a subdomain app label:
// ASCII letters, digits, '-' and '_' (all a browser sends after IDNA;
// Terraform names may contain '_').
func isHostLabelByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_'
}

// ParseSubdomain parses the first label of a subdomain app host:
// APP--AGENT--WORKSPACE--OWNER or PORT--AGENT--WORKSPACE--OWNER. Only
// ASCII letters, digits, '-' and '_' are accepted, and a port must be
// written canonically, so a request has exactly one host (SubdomainLabel,
// case aside): an app never gets a second origin.
func ParseSubdomain(label string) (Request, bool) {
	for i := 0; i < len(label); i++ {
		if !isHostLabelByte(label[i]) {
			return Request{}, false
		}
	}
	parts := strings.Split(strings.ToLower(label), "--")
	if len(parts) != 4 {
		return Request{}, false
	}
	for _, p := range parts {
		if p == "" {
			return Request{}, false
		}
	}
	req := Request{Agent: parts[1], Workspace: parts[2], Owner: parts[3]}
	if p, ok := parsePort(parts[0]); ok {
		req.Port = p
	} else if strings.Trim(parts[0], "0123456789") == "" {
		// All digits but not a canonical port (0, 08080, 99999): neither
		// a port nor, being numeric, an app slug.
		return Request{}, false
	} else {
		req.App = parts[0]
	}
	return req, true
}

// SubdomainLabel is the host label of a subdomain app or port.
func SubdomainLabel(req Request) string {
	name := req.App
	if name == "" {
		name = strconv.Itoa(int(req.Port))
	}
	return strings.ToLower(name + "--" + req.Agent + "--" + req.Workspace + "--" + req.Owner)
}

// SubdomainAppURL builds the URL of a subdomain app: the access URL's
// scheme and port with the wildcard pattern's domain.
func SubdomainAppURL(accessURL *url.URL, wildcard string, req Request) (*url.URL, error) {
	suffix, err := ParseWildcardHostname(wildcard)
	if err != nil {
		return nil, err
	}
	host := SubdomainLabel(req) + suffix
	if p := accessURL.Port(); p != "" {
		host = net.JoinHostPort(host, p)
	}
	return &url.URL{Scheme: accessURL.Scheme, Host: host, Path: "/"}, nil
}

// PathAppURL builds the path-based URL of an app or port.
func PathAppURL(accessURL *url.URL, req Request) *url.URL {
	ws := req.Workspace
	if req.Agent != "" {
		ws += "." + req.Agent
	}
	p := "/@" + req.Owner + "/" + ws + "/apps/" + req.App + "/"
	if req.App == "" {
		p = "/@" + req.Owner + "/" + ws + "/ports/" + strconv.Itoa(int(req.Port)) + "/"
	}
	u := *accessURL
	u.Path = strings.TrimSuffix(u.Path, "/") + p
	u.RawQuery = ""
	return &u
}

// subdomainRequest returns the app request named by the request's host
// when it is a subdomain app host.
func (s *Server) subdomainRequest(r *http.Request) (Request, bool) {
	if s.wildcardSuffix == "" {
		return Request{}, false
	}
	host := strings.ToLower(hostOnly(r.Host))
	label, ok := strings.CutSuffix(host, s.wildcardSuffix)
	if !ok || label == "" || strings.Contains(label, ".") {
		return Request{}, false
	}
	return ParseSubdomain(label)
}

// target is a granted app request, ready to proxy.
type target struct {
	grant    *Grant
	upstream *url.URL
}

// authorize decides the request, from the decision cache when it was
// granted within AuthCacheTTL (never beyond the grant's expiry), so a
// stream of requests to an app costs no round trip to the Authorizer.
// Denials are not cached. An invalid or missing credential is an
// anonymous request.
func (s *Server) authorize(ctx context.Context, c Credential, req Request, path bool) (*target, *Denial, error) {
	key := newDecisionKey(c, req, path)
	now := s.opts.Now()
	if t := s.cache.get(key, now); t != nil {
		return t, nil, nil
	}
	checkedAt := time.Now()
	d, err := s.opts.Authorizer.Authorize(ctx, AccessRequest{Credential: c, App: req, Path: path})
	if err != nil {
		return nil, nil, err
	}
	if d.Denial != nil {
		return nil, d.Denial, nil
	}
	if d.Grant == nil {
		return nil, nil, errors.New("authorizer returned an empty decision")
	}
	upstream, err := url.Parse(d.Grant.Upstream)
	if err != nil || (upstream.Scheme != "http" && upstream.Scheme != "https") || upstream.Port() == "" {
		return nil, nil, fmt.Errorf("granted upstream %q is not an http(s) URL with a port", d.Grant.Upstream)
	}
	d.Grant.CheckedAt = checkedAt
	t := &target{grant: d.Grant, upstream: upstream}
	s.cache.put(key, t, now, d.Grant.Expires)
	return t, nil, nil
}

// ServePathApp serves /@OWNER/WORKSPACE[.AGENT]/apps/APP/... and
// /@OWNER/WORKSPACE[.AGENT]/ports/PORT/... on the dashboard origin,
// authenticated by the dashboard session, which is stripped before the
// request is forwarded.
func (s *Server) ServePathApp(w http.ResponseWriter, r *http.Request) {
	req, _, rest, ok := ParsePathApp(r.URL.Path)
	if !ok {
		writePage(w, notFound)
		return
	}
	if s.opts.DisablePathApps {
		d := &Denial{Status: http.StatusNotFound, Title: "Path-based apps are disabled", Detail: "This deployment only serves apps on their own subdomain."}
		var link *url.URL
		if req.Agent != "" {
			link = s.subdomainLink(req, rest, r.URL.RawQuery)
		}
		writePageLink(w, d, link)
		return
	}
	if rest == "" {
		// Relative links in the app need the trailing slash.
		u := *r.URL
		u.Path += "/"
		http.Redirect(w, r, u.RequestURI(), http.StatusTemporaryRedirect)
		return
	}
	t, d, err := s.authorize(r.Context(), pathCredential(r), req, true)
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	if d != nil {
		if d.Login && isBrowserNavigation(r) {
			http.Redirect(w, r, s.loginURL(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		if d.Subdomain != nil {
			s.refusePathApp(w, d, rest, r.URL.RawQuery)
			return
		}
		writePage(w, d)
		return
	}
	s.proxy(w, r, t, rest)
}

// subdomainLink is the subdomain URL of an app or port (req names its
// agent) at rest?query, or nil when subdomain apps are disabled.
func (s *Server) subdomainLink(req Request, rest, query string) *url.URL {
	if s.wildcardSuffix == "" {
		return nil
	}
	u, err := SubdomainAppURL(s.opts.AccessURL, s.opts.WildcardHostname, req)
	if err != nil {
		return nil
	}
	if rest != "" {
		u.Path = cleanRedirectPath(rest)
	}
	q, err := url.ParseQuery(query)
	if err == nil {
		delete(q, AppConnectAPIKeyParam)
		u.RawQuery = q.Encode()
	}
	return u
}

// refusePathApp answers a path request that only the app's subdomain may
// serve, pointing there (or, without subdomain apps, to the administrator).
func (s *Server) refusePathApp(w http.ResponseWriter, d *Denial, rest, query string) {
	c := *d
	link := s.subdomainLink(*d.Subdomain, rest, query)
	if link != nil {
		c.Detail += " Open it on its own subdomain instead, where its code cannot act as you on the dashboard:"
	} else {
		c.Detail += " Ask the administrator to set --wildcard-access-url (CODER_WILDCARD_ACCESS_URL) so that apps can be opened on their own subdomain."
	}
	writePageLink(w, &c, link)
}

// SubdomainMiddleware serves requests whose host is a subdomain app host
// and passes every other request to next.
func (s *Server) SubdomainMiddleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, ok := s.subdomainRequest(r)
		if !ok {
			next.ServeHTTP(w, r)
			return
		}
		s.serveSubdomainApp(w, r, req)
	})
}

func (s *Server) serveSubdomainApp(w http.ResponseWriter, r *http.Request, req Request) {
	ctx := r.Context()
	// Step 2 of the handshake: the dashboard sent us a handshake key in
	// the URL, for this origin, to redeem once.
	if key := r.URL.Query().Get(AppConnectAPIKeyParam); key != "" {
		invalid := &Denial{Status: http.StatusUnauthorized, Title: "Invalid application key", Detail: "The sign-in link is invalid, expired or already used. Reload the application without it to sign in again."}
		if !s.schemeMatches(r) {
			invalid.Detail = "The sign-in link was opened over " + requestScheme(r) + "; this deployment is reached over " + s.opts.AccessURL.Scheme + "."
			writePage(w, invalid)
			return
		}
		token, expires, err := s.opts.AppKeys.RedeemHandshake(ctx, key, AppOrigin(s.opts.AccessURL.Scheme, r.Host))
		if errors.Is(err, ErrUnauthenticated) {
			writePage(w, invalid)
			return
		}
		if err != nil {
			s.internalError(w, r, err)
			return
		}
		http.SetCookie(w, &http.Cookie{
			Name:     SubdomainAppSessionTokenCookie,
			Value:    token,
			Path:     "/",
			Expires:  expires,
			HttpOnly: true,
			SameSite: http.SameSiteLaxMode,
			Secure:   s.opts.AccessURL.Scheme == "https",
		})
		// Back to the page asked for: a path on this origin only.
		q := r.URL.Query()
		q.Del(AppConnectAPIKeyParam)
		back := url.URL{Path: cleanRedirectPath(r.URL.Path), RawQuery: q.Encode()}
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Referrer-Policy", "no-referrer")
		http.Redirect(w, r, back.RequestURI(), http.StatusSeeOther)
		return
	}
	t, d, err := s.authorize(ctx, subdomainCredential(r), req, false)
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	if d != nil {
		if d.Login && isBrowserNavigation(r) {
			// Step 1: ask the dashboard origin for an app key.
			self := url.URL{Scheme: s.opts.AccessURL.Scheme, Host: r.Host, Path: cleanRedirectPath(r.URL.Path), RawQuery: r.URL.RawQuery}
			u := *s.opts.AccessURL
			u.Path = strings.TrimSuffix(u.Path, "/") + AuthRedirectPath
			u.RawQuery = url.Values{RedirectURIParam: {self.String()}}.Encode()
			http.Redirect(w, r, u.String(), http.StatusSeeOther)
			return
		}
		writePage(w, d)
		return
	}
	s.proxy(w, r, t, r.URL.Path)
}

// ServeAuthRedirect serves GET /api/v2/applications/auth-redirect on the
// dashboard origin: with a valid dashboard session it issues a single-use,
// short-lived handshake key bound to the redirect_uri's origin (which must
// be a subdomain app host, with the access URL's scheme and port) and
// redirects there with the key in AppConnectAPIKeyParam; without a session
// it redirects to the login page, which comes back here.
func (s *Server) ServeAuthRedirect(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if s.wildcardSuffix == "" {
		writePage(w, &Denial{Status: http.StatusNotFound, Title: "Subdomain apps are disabled", Detail: "This deployment has no wildcard access URL."})
		return
	}
	raw := r.URL.Query().Get(RedirectURIParam)
	dest, err := url.Parse(raw)
	if err != nil || dest.Host == "" || (dest.Scheme != "http" && dest.Scheme != "https") {
		writePage(w, &Denial{Status: http.StatusBadRequest, Title: "Invalid redirect", Detail: "redirect_uri must be an absolute application URL."})
		return
	}
	if _, ok := s.subdomainRequest(&http.Request{Host: dest.Host}); !ok || dest.User != nil || dest.Opaque != "" {
		writePage(w, &Denial{Status: http.StatusBadRequest, Title: "Invalid redirect", Detail: "redirect_uri is not an application of this deployment."})
		return
	}
	if dest.Scheme != s.opts.AccessURL.Scheme || effectivePort(dest) != effectivePort(s.opts.AccessURL) {
		writePage(w, &Denial{Status: http.StatusBadRequest, Title: "Invalid redirect", Detail: "redirect_uri must use the scheme and port of the access URL (" + s.opts.AccessURL.Scheme + "://…" + portSuffix(s.opts.AccessURL) + ")."})
		return
	}
	dest.Path, dest.RawPath = cleanRedirectPath(dest.Path), ""
	token, err := s.opts.AppKeys.IssueHandshake(ctx, pathCredential(r), AppOrigin(dest.Scheme, dest.Host))
	if errors.Is(err, ErrUnauthenticated) {
		http.Redirect(w, r, s.loginURL(r.URL.RequestURI()), http.StatusSeeOther)
		return
	}
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	q := dest.Query()
	q.Set(AppConnectAPIKeyParam, token)
	dest.RawQuery = q.Encode()
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, dest.String(), http.StatusSeeOther)
}

// effectivePort is the URL's port, or its scheme's default.
func effectivePort(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	if u.Scheme == "https" {
		return "443"
	}
	return "80"
}

func portSuffix(u *url.URL) string {
	if p := u.Port(); p != "" {
		return ":" + p
	}
	return ""
}

// requestScheme is the scheme a request evidently arrived by: https over
// TLS, else what a proxy in front says in X-Forwarded-Proto, else "".
func requestScheme(r *http.Request) string {
	if r.TLS != nil {
		return "https"
	}
	if p := strings.ToLower(strings.TrimSpace(strings.Split(r.Header.Get("X-Forwarded-Proto"), ",")[0])); p != "" {
		return p
	}
	return ""
}

// schemeMatches reports whether the request did not evidently arrive by a
// scheme other than the access URL's (a TLS-terminating proxy in front of
// an https deployment forwards plain http, which is not evidence).
func (s *Server) schemeMatches(r *http.Request) bool {
	got := requestScheme(r)
	return got == "" || got == s.opts.AccessURL.Scheme
}

func (s *Server) loginURL(back string) string {
	u := *s.opts.AccessURL
	u.Path = strings.TrimSuffix(u.Path, "/") + "/login"
	u.RawQuery = url.Values{"redirect": {back}}.Encode()
	return u.String()
}

// isBrowserNavigation reports whether a redirect makes sense: a GET or
// HEAD that is not a websocket upgrade.
func isBrowserNavigation(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	return !strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}

// proxy forwards the request to the target; rest (the path after the
// app's prefix) is appended to the upstream URL's path.
func (s *Server) proxy(w http.ResponseWriter, r *http.Request, t *target, rest string) {
	if s.opts.Track != nil {
		ctx, done := s.opts.Track(r.Context(), t.grant)
		defer done()
		r = r.WithContext(ctx)
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			q := pr.In.URL.Query()
			stripCredentials(pr.Out.Header, q)
			pr.Out.URL.Scheme = t.upstream.Scheme
			pr.Out.URL.Host = t.upstream.Host
			pr.Out.URL.Path = strings.TrimSuffix(t.upstream.Path, "/") + rest
			pr.Out.URL.RawPath = ""
			pr.Out.URL.RawQuery = pr.In.URL.RawQuery
			if pr.In.URL.Query().Has(AppConnectAPIKeyParam) {
				pr.Out.URL.RawQuery = q.Encode()
			}
			pr.Out.Host = ""
			pr.SetXForwarded()
		},
		// coderd's cookies are coderd's: an app may not set them (on a path
		// app they would land on the dashboard origin itself).
		ModifyResponse: func(res *http.Response) error {
			stripCoderSetCookies(res.Header)
			return nil
		},
		Transport:     s.opts.Dialer.Transport(t.grant.AgentID),
		FlushInterval: -1,
		BufferPool:    s.buffers,
		ErrorLog:      nil,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			s.logger.DebugContext(r.Context(), "proxy to workspace app failed", "agent_id", t.grant.AgentID, "upstream", t.upstream.Host, "error", err)
			var pe *PortError
			switch {
			case errors.As(err, &pe):
				writePage(w, &Denial{Status: http.StatusBadGateway, Title: "Port not listening", Detail: fmt.Sprintf("Nothing in workspace %q is listening on %s. Start the application and reload.", t.grant.WorkspaceName, t.upstream.Host)})
			case errors.Is(err, ErrAgentUnreachable):
				writePage(w, &Denial{Status: http.StatusBadGateway, Title: "Agent unreachable", Detail: fmt.Sprintf("coderd could not reach agent %q over the mesh.", t.grant.AgentName)})
			case errors.Is(err, context.Canceled):
				w.WriteHeader(499)
			default:
				writePage(w, &Denial{Status: http.StatusBadGateway, Title: "Application error", Detail: "The application did not answer: " + err.Error()})
			}
		},
	}
	rp.ServeHTTP(w, r)
}

func (s *Server) internalError(w http.ResponseWriter, r *http.Request, err error) {
	s.logger.ErrorContext(r.Context(), "workspace app request", "error", err, "path", r.URL.Path)
	writePage(w, &Denial{Status: http.StatusInternalServerError, Title: "Internal error", Detail: "Something went wrong serving this application."})
}
