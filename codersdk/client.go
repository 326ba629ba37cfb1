// Package codersdk is the typed HTTP client of the coderd API and the API's
// request and response types. It is the one contract between the processes
// of coder (CLI, agent, provisioner daemon and server).
package codersdk

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync"
)

// SessionTokenHeader is the HTTP header that carries an API key.
const SessionTokenHeader = "Coder-Session-Token"

// SessionTokenCookie is the cookie that carries an API key for browsers.
const SessionTokenCookie = "coder_session_token"

// Me is the user path parameter that names the authenticated user.
const Me = "me"

// Client is a typed client of the coderd HTTP API. It is safe for
// concurrent use.
type Client struct {
	// URL is the base URL of the coderd deployment.
	URL *url.URL
	// HTTPClient performs the requests; New sets a client without timeout.
	HTTPClient *http.Client

	mu           sync.RWMutex
	sessionToken string
}

// New returns a client of the coderd deployment at serverURL.
func New(serverURL *url.URL) *Client {
	return &Client{URL: serverURL, HTTPClient: &http.Client{}}
}

// SetSessionToken sets the API key sent with every request.
func (c *Client) SetSessionToken(token string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sessionToken = token
}

// SessionToken returns the API key sent with every request.
func (c *Client) SessionToken() string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.sessionToken
}

// Request performs an HTTP request against the API. path is relative to the
// deployment URL (for example "/api/v2/users/me"); body, when not nil, is
// encoded as JSON. The caller closes the response body.
func (c *Client) Request(ctx context.Context, method, path string, body any) (*http.Response, error) {
	ref, err := url.Parse(path)
	if err != nil {
		return nil, fmt.Errorf("parse path %q: %w", path, err)
	}
	if err := checkPathSegments(ref.EscapedPath()); err != nil {
		return nil, fmt.Errorf("request %s: %w", path, err)
	}
	target := c.URL.ResolveReference(ref)

	var reader io.Reader
	if body != nil {
		buf, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("encode request body: %w", err)
		}
		reader = bytes.NewReader(buf)
	}
	req, err := http.NewRequestWithContext(ctx, method, target.String(), reader)
	if err != nil {
		return nil, fmt.Errorf("create request: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if token := c.SessionToken(); token != "" {
		req.Header.Set(SessionTokenHeader, token)
	}
	httpClient := c.HTTPClient
	if httpClient == nil {
		httpClient = http.DefaultClient
	}
	res, err := httpClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, target.Redacted(), err)
	}
	return res, nil
}

// ErrInvalidPathSegment is returned by Request for a path with a "." or
// ".." segment: resolving it would silently call another endpoint (a
// workspace named ".." turns /users/me/workspace/.. into /users/me/).
var ErrInvalidPathSegment = errors.New(`API path has a "." or ".." segment`)

func checkPathSegments(escapedPath string) error {
	for _, seg := range strings.Split(escapedPath, "/") {
		if seg == "." || seg == ".." {
			return ErrInvalidPathSegment
		}
	}
	return nil
}

// do performs a request, turns a non-expected status into an *Error and
// decodes a successful response into out (when out is not nil).
func (c *Client) do(ctx context.Context, method, path string, body any, wantStatus int, out any) error {
	res, err := c.Request(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != wantStatus {
		return ReadBodyAsError(res)
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(res.Body).Decode(out); err != nil {
		return fmt.Errorf("decode %s %s response: %w", method, path, err)
	}
	return nil
}

// ValidationError names a request field that failed validation.
type ValidationError struct {
	Field  string `json:"field"`
	Detail string `json:"detail"`
}

// Response is the body of every error response (and of some plain
// successful ones) of the API.
type Response struct {
	// Message is a short, user-facing description.
	Message string `json:"message"`
	// Detail is optional technical detail for debugging.
	Detail string `json:"detail,omitempty"`
	// Validations lists the request fields that failed validation.
	Validations []ValidationError `json:"validations,omitempty"`
}

// Error is an API error: a non-2xx response decoded into the error shape.
type Error struct {
	// Message is a short, user-facing description.
	Message string `json:"message"`
	// Detail is optional technical detail for debugging.
	Detail string `json:"detail,omitempty"`
	// Validations lists the request fields that failed validation.
	Validations []ValidationError `json:"validations,omitempty"`

	statusCode int
	method     string
	url        string
}

// StatusCode is the HTTP status of the response.
func (e *Error) StatusCode() int { return e.statusCode }

// Error implements error.
func (e *Error) Error() string {
	var b strings.Builder
	if e.method != "" {
		fmt.Fprintf(&b, "%s %s: ", e.method, e.url)
	}
	fmt.Fprintf(&b, "unexpected status code %d: %s", e.statusCode, e.Message)
	if e.Detail != "" {
		fmt.Fprintf(&b, ": %s", e.Detail)
	}
	for _, v := range e.Validations {
		fmt.Fprintf(&b, "\n\t%s: %s", v.Field, v.Detail)
	}
	return b.String()
}

// AsError reports whether err is (or wraps) an API *Error and returns it.
func AsError(err error) (*Error, bool) {
	var apiErr *Error
	if errors.As(err, &apiErr) {
		return apiErr, true
	}
	return nil, false
}

// ReadBodyAsError reads a response body into an *Error. Bodies that are not
// the JSON error shape are kept (truncated) in Detail.
func ReadBodyAsError(res *http.Response) error {
	if res == nil {
		return errors.New("no response")
	}
	apiErr := &Error{statusCode: res.StatusCode}
	if res.Request != nil {
		apiErr.method = res.Request.Method
		apiErr.url = res.Request.URL.Redacted()
	}
	raw, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("read error response body: %w", err)
	}
	mediaType, _, _ := mime.ParseMediaType(res.Header.Get("Content-Type"))
	if mediaType == "application/json" {
		var body Response
		if err := json.Unmarshal(raw, &body); err == nil {
			apiErr.Message = body.Message
			apiErr.Detail = body.Detail
			apiErr.Validations = body.Validations
			return apiErr
		}
	}
	apiErr.Message = http.StatusText(res.StatusCode)
	text := strings.TrimSpace(string(raw))
	if len(text) > 512 {
		text = text[:512] + "..."
	}
	apiErr.Detail = text
	return apiErr
}
