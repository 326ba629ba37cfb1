// Package httpmw holds coderd's HTTP middlewares: authentication (API keys
// for users, agent tokens for workspace agents), path parameter
// extraction, request logging and metrics.
package httpmw

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/wgmesh/coder/coderd/apikey"
	"github.com/wgmesh/coder/coderd/httpapi"
	"github.com/wgmesh/coder/coderd/rbac"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/database"
)

// RefreshInterval is the minimum time between two writes of an API key's
// last_used (and, for sessions, expires_at), and of a user's last_seen_at.
const RefreshInterval = time.Minute

// Authorization is what the API key middleware puts in the request context.
type Authorization struct {
	// Key is the API key used for the request.
	Key database.APIKey
	// User is the key's owner.
	User database.User
	// Subject is the user and roles authorization decisions are made for.
	Subject rbac.Subject
	// CheckedAt is when the key was looked up (real time, whatever clock
	// the authenticator runs on): a revocation after it may not have been
	// seen (coderd/revocation).
	CheckedAt time.Time
}

type authzContextKey struct{}

// AuthorizationFromContext returns the authorization of an authenticated
// request.
func AuthorizationFromContext(ctx context.Context) (Authorization, bool) {
	a, ok := ctx.Value(authzContextKey{}).(Authorization)
	return a, ok
}

// WithAuthorization returns ctx carrying a.
func WithAuthorization(ctx context.Context, a Authorization) context.Context {
	return context.WithValue(ctx, authzContextKey{}, a)
}

// APIKeyConfig configures ExtractAPIKey and NewAuthenticator.
type APIKeyConfig struct {
	// DB is the store keys and users are read from. Required.
	DB *database.Store
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// KeyRequirement is what a valid key must also be to authenticate a
// request.
type KeyRequirement struct {
	// Scope is the scope the key must have ("" means APIKeyScopeAll).
	Scope codersdk.APIKeyScope
	// TokenNamePrefix, when set, must begin the key's token name; it binds
	// application_connect keys to the app origin they were issued for.
	TokenNamePrefix string
}

// AuthError is a request whose credential does not authenticate it; the
// answer is Status (401, or 403 for a key of the wrong scope) with Message
// and Detail.
type AuthError struct {
	Status  int
	Message string
	Detail  string
}

func (e *AuthError) Error() string {
	return fmt.Sprintf("authenticate: %s %s", e.Message, e.Detail)
}

func unauthorized(message, detail string) *AuthError {
	return &AuthError{Status: http.StatusUnauthorized, Message: message, Detail: detail}
}

// stepError is an internal failure of one authentication step; message is
// the response message naming the step.
type stepError struct {
	message string
	err     error
}

func (e *stepError) Error() string { return e.message + ": " + e.err.Error() }
func (e *stepError) Unwrap() error { return e.err }

// Authenticator is coderd's one authentication path for API keys, used by
// ExtractAPIKey for the API and by the workspace apps proxy's coderd
// backend for app requests.
type Authenticator struct {
	db  *database.Store
	now func() time.Time
}

// NewAuthenticator returns an Authenticator reading keys from cfg.DB.
func NewAuthenticator(cfg APIKeyConfig) *Authenticator {
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	return &Authenticator{db: cfg.DB, now: now}
}

// AuthenticateRequest authenticates r by the API key it carries
// (apikey.FromRequest: the Coder-Session-Token header, then the session
// cookie), which must have the "all" scope.
func (a *Authenticator) AuthenticateRequest(r *http.Request) (Authorization, error) {
	return a.Authenticate(r.Context(), apikey.FromRequest(r), KeyRequirement{})
}

// Authenticate validates token: it must name an existing key whose secret
// matches, that has not expired, of a user that exists and is not
// suspended, and that meets want. It then records the use, at most once
// per RefreshInterval: the key's last_used, the sliding expiry of a login
// session (a password login of scope "all"; API tokens and app keys keep
// their expiry) and the user's last_seen_at.
//
// A credential that does not authenticate gives an *AuthError; any other
// error is an internal failure.
func (a *Authenticator) Authenticate(ctx context.Context, token string, want KeyRequirement) (Authorization, error) {
	if want.Scope == "" {
		want.Scope = codersdk.APIKeyScopeAll
	}
	if token == "" {
		return Authorization{}, unauthorized("You must be logged in to do this.",
			fmt.Sprintf("Send an API key in the %q header or the %q cookie.", codersdk.SessionTokenHeader, codersdk.SessionTokenCookie))
	}
	checkedAt := time.Now()
	id, secret, err := apikey.Parse(token)
	if err != nil {
		return Authorization{}, unauthorized("Invalid API key.", err.Error())
	}
	key, err := a.db.GetAPIKeyByID(ctx, id)
	if errors.Is(err, pgx.ErrNoRows) {
		return Authorization{}, unauthorized("Invalid API key.", "The API key does not exist; it may have been deleted.")
	}
	if err != nil {
		return Authorization{}, &stepError{"Internal error fetching API key.", fmt.Errorf("get api key: %w", err)}
	}
	if !apikey.SecretMatches(secret, key.HashedSecret) {
		return Authorization{}, unauthorized("Invalid API key.", "The API key secret does not match.")
	}
	now := a.now()
	if !now.Before(key.ExpiresAt) {
		return Authorization{}, unauthorized("API key expired.", fmt.Sprintf("The API key expired at %s.", key.ExpiresAt.UTC().Format(time.RFC3339)))
	}
	user, err := a.db.GetUserByID(ctx, key.UserID)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && user.Deleted) {
		return Authorization{}, unauthorized("Invalid API key.", "The API key's user no longer exists.")
	}
	if err != nil {
		return Authorization{}, &stepError{"Internal error fetching user.", fmt.Errorf("get api key user: %w", err)}
	}
	if user.Status == database.UserStatusSuspended {
		return Authorization{}, unauthorized("Your account is suspended.",
			"User is not active (status = suspended). Contact an administrator to reactivate your account.")
	}
	if key.Scope != string(want.Scope) {
		return Authorization{}, &AuthError{
			Status:  http.StatusForbidden,
			Message: "This API key's scope does not allow this request.",
			Detail:  fmt.Sprintf("The key has scope %q.", key.Scope),
		}
	}
	if want.TokenNamePrefix != "" && !strings.HasPrefix(key.TokenName, want.TokenNamePrefix) {
		return Authorization{}, unauthorized("Invalid API key.", "The API key was issued for another application.")
	}

	if now.Sub(key.LastUsed) > RefreshInterval {
		key.LastUsed = now
		if key.LoginType == database.LoginTypePassword && key.Scope == string(codersdk.APIKeyScopeAll) {
			// Sessions slide: each use (at most once a minute) extends them.
			key.ExpiresAt = now.Add(time.Duration(key.LifetimeSeconds) * time.Second)
		}
		if err := a.db.UpdateAPIKeyByID(ctx, database.UpdateAPIKeyByIDParams{
			ID: key.ID, LastUsed: key.LastUsed, ExpiresAt: key.ExpiresAt,
		}); err != nil {
			return Authorization{}, &stepError{"Internal error refreshing API key.", fmt.Errorf("refresh api key: %w", err)}
		}
	}
	if now.Sub(user.LastSeenAt) > RefreshInterval {
		updated, err := a.db.UpdateUserLastSeenAt(ctx, database.UpdateUserLastSeenAtParams{
			ID: user.ID, LastSeenAt: now, UpdatedAt: now,
		})
		if err != nil {
			return Authorization{}, &stepError{"Internal error updating user.", fmt.Errorf("update user last seen: %w", err)}
		}
		user = updated
	}
	return Authorization{
		Key:       key,
		User:      user,
		Subject:   rbac.Subject{ID: user.ID, Roles: append([]string(nil), user.RbacRoles...)},
		CheckedAt: checkedAt,
	}, nil
}

// ExtractAPIKey authenticates the request by its API key
// (Authenticator.AuthenticateRequest) and stores the Authorization in the
// context. Requests without a valid, unexpired key of an active user are
// answered with 401, keys of another scope with 403.
func ExtractAPIKey(cfg APIKeyConfig) func(http.Handler) http.Handler {
	auth := NewAuthenticator(cfg)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			a, err := auth.AuthenticateRequest(r)
			if err != nil {
				writeAuthError(w, r, err)
				return
			}
			next.ServeHTTP(w, r.WithContext(WithAuthorization(r.Context(), a)))
		})
	}
}

// writeAuthError answers a failed authentication: the AuthError's status,
// or a 500 naming the failed step.
func writeAuthError(w http.ResponseWriter, r *http.Request, err error) {
	var authErr *AuthError
	if errors.As(err, &authErr) {
		httpapi.Write(r.Context(), w, authErr.Status, codersdk.Response{Message: authErr.Message, Detail: authErr.Detail})
		return
	}
	message := "Internal error authenticating the request."
	var step *stepError
	if errors.As(err, &step) {
		message, err = step.message, step.err
	}
	httpapi.InternalServerError(w, r, message, err)
}
