// Package httpmw holds coderd's HTTP middlewares: API key authentication,
// path parameter extraction, request logging and metrics.
package httpmw

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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

// APIKeyConfig configures ExtractAPIKey.
type APIKeyConfig struct {
	// DB is the store keys and users are read from.
	DB *database.Store
	// Logger receives errors; nil discards.
	Logger *slog.Logger
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// SessionTokenFromRequest returns the API key carried by the request
// (header first, then cookie), or "".
func SessionTokenFromRequest(r *http.Request) string {
	if v := strings.TrimSpace(r.Header.Get(codersdk.SessionTokenHeader)); v != "" {
		return v
	}
	if c, err := r.Cookie(codersdk.SessionTokenCookie); err == nil && c.Value != "" {
		return c.Value
	}
	return ""
}

// ExtractAPIKey authenticates the request by its API key and stores the
// Authorization in the context. Requests without a valid, unexpired key of
// an active user are answered with 401.
func ExtractAPIKey(cfg APIKeyConfig) func(http.Handler) http.Handler {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx := r.Context()
			unauthorized := func(message, detail string) {
				httpapi.Write(ctx, w, http.StatusUnauthorized, codersdk.Response{Message: message, Detail: detail})
			}
			token := SessionTokenFromRequest(r)
			if token == "" {
				unauthorized("You must be logged in to do this.",
					fmt.Sprintf("Send an API key in the %q header or the %q cookie.", codersdk.SessionTokenHeader, codersdk.SessionTokenCookie))
				return
			}
			id, secret, err := apikey.Parse(token)
			if err != nil {
				unauthorized("Invalid API key.", err.Error())
				return
			}
			key, err := cfg.DB.GetAPIKeyByID(ctx, id)
			if errors.Is(err, pgx.ErrNoRows) {
				unauthorized("Invalid API key.", "The API key does not exist; it may have been deleted.")
				return
			}
			if err != nil {
				httpapi.InternalServerError(w, r, "Internal error fetching API key.", err)
				return
			}
			if !apikey.SecretMatches(secret, key.HashedSecret) {
				unauthorized("Invalid API key.", "The API key secret does not match.")
				return
			}
			current := now()
			if !current.Before(key.ExpiresAt) {
				unauthorized("API key expired.", fmt.Sprintf("The API key expired at %s.", key.ExpiresAt.UTC().Format(time.RFC3339)))
				return
			}
			user, err := cfg.DB.GetUserByID(ctx, key.UserID)
			if errors.Is(err, pgx.ErrNoRows) || (err == nil && user.Deleted) {
				unauthorized("Invalid API key.", "The API key's user no longer exists.")
				return
			}
			if err != nil {
				httpapi.InternalServerError(w, r, "Internal error fetching user.", err)
				return
			}
			if user.Status == database.UserStatusSuspended {
				unauthorized("Your account is suspended.",
					"User is not active (status = suspended). Contact an administrator to reactivate your account.")
				return
			}

			if current.Sub(key.LastUsed) > RefreshInterval {
				key.LastUsed = current
				if key.LoginType == database.LoginTypePassword {
					// Sessions slide: each use (at most once a minute) extends them.
					key.ExpiresAt = current.Add(time.Duration(key.LifetimeSeconds) * time.Second)
				}
				if err := cfg.DB.UpdateAPIKeyByID(ctx, database.UpdateAPIKeyByIDParams{
					ID: key.ID, LastUsed: key.LastUsed, ExpiresAt: key.ExpiresAt,
				}); err != nil {
					httpapi.InternalServerError(w, r, "Internal error refreshing API key.", err)
					return
				}
			}
			if current.Sub(user.LastSeenAt) > RefreshInterval {
				updated, err := cfg.DB.UpdateUserLastSeenAt(ctx, database.UpdateUserLastSeenAtParams{
					ID: user.ID, LastSeenAt: current, UpdatedAt: current,
				})
				if err != nil {
					httpapi.InternalServerError(w, r, "Internal error updating user.", err)
					return
				}
				user = updated
			}
			if key.Scope != string(codersdk.APIKeyScopeAll) {
				httpapi.Write(ctx, w, http.StatusForbidden, codersdk.Response{
					Message: "This API key's scope does not allow this request.",
					Detail:  fmt.Sprintf("The key has scope %q.", key.Scope),
				})
				return
			}

			auth := Authorization{
				Key:     key,
				User:    user,
				Subject: rbac.Subject{ID: user.ID, Roles: append([]string(nil), user.RbacRoles...)},
			}
			next.ServeHTTP(w, r.WithContext(WithAuthorization(ctx, auth)))
		})
	}
}
