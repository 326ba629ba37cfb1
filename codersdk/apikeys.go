package codersdk

import (
	"context"
	"net/http"
	"net/url"
	"time"

	"github.com/google/uuid"
)

// APIKeyScope limits what an API key may do.
type APIKeyScope string

// API key scopes.
const (
	// APIKeyScopeAll allows everything the user may do.
	APIKeyScopeAll APIKeyScope = "all"
	// APIKeyScopeApplicationConnect only allows connecting to workspace apps.
	APIKeyScopeApplicationConnect APIKeyScope = "application_connect"
)

// APIKey describes an API key (never its secret).
type APIKey struct {
	ID              string      `json:"id"`
	UserID          uuid.UUID   `json:"user_id"`
	LastUsed        time.Time   `json:"last_used"`
	ExpiresAt       time.Time   `json:"expires_at"`
	CreatedAt       time.Time   `json:"created_at"`
	UpdatedAt       time.Time   `json:"updated_at"`
	LoginType       LoginType   `json:"login_type"`
	Scope           APIKeyScope `json:"scope"`
	TokenName       string      `json:"token_name"`
	LifetimeSeconds int64       `json:"lifetime_seconds"`
}

// CreateTokenRequest creates a long-lived token.
type CreateTokenRequest struct {
	// Lifetime of the token (nanoseconds in JSON); 0 means the server default.
	Lifetime time.Duration `json:"lifetime"`
	// Scope defaults to "all".
	Scope APIKeyScope `json:"scope,omitempty"`
	// TokenName must be unique per user; empty means a generated name.
	TokenName string `json:"token_name,omitempty"`
}

// GenerateAPIKeyResponse carries a new API key. It is the only time the
// secret is shown.
type GenerateAPIKeyResponse struct {
	Key string `json:"key"`
}

// CreateToken creates a token for the user.
func (c *Client) CreateToken(ctx context.Context, user string, req CreateTokenRequest) (GenerateAPIKeyResponse, error) {
	var resp GenerateAPIKeyResponse
	err := c.do(ctx, http.MethodPost, "/api/v2/users/"+url.PathEscape(user)+"/keys/tokens", req, http.StatusCreated, &resp)
	return resp, err
}

// Tokens lists the user's tokens.
func (c *Client) Tokens(ctx context.Context, user string) ([]APIKey, error) {
	var keys []APIKey
	err := c.do(ctx, http.MethodGet, "/api/v2/users/"+url.PathEscape(user)+"/keys/tokens", nil, http.StatusOK, &keys)
	return keys, err
}

// APIKeyByName returns the user's token with that name.
func (c *Client) APIKeyByName(ctx context.Context, user, name string) (APIKey, error) {
	var key APIKey
	err := c.do(ctx, http.MethodGet, "/api/v2/users/"+url.PathEscape(user)+"/keys/tokens/"+url.PathEscape(name), nil, http.StatusOK, &key)
	return key, err
}

// DeleteAPIKey deletes one of the user's API keys by ID.
func (c *Client) DeleteAPIKey(ctx context.Context, user, id string) error {
	return c.do(ctx, http.MethodDelete, "/api/v2/users/"+url.PathEscape(user)+"/keys/"+url.PathEscape(id), nil, http.StatusNoContent, nil)
}
