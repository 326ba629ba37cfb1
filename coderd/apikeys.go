package coderd

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5"

	"github.com/wgmesh/coder/coderd/apikey"
	"github.com/wgmesh/coder/coderd/httpapi"
	"github.com/wgmesh/coder/coderd/httpmw"
	"github.com/wgmesh/coder/coderd/rbac"
	"github.com/wgmesh/coder/coderd/revocation"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/database"
)

func apiKeyObject(owner database.User) rbac.Object {
	return rbac.Object{Type: rbac.ResourceAPIKey, OwnerID: owner.ID}
}

// validateTokenName reports why a token name is invalid, or "".
func validateTokenName(name string) string {
	if len(name) > 64 {
		return "must be at most 64 characters"
	}
	for _, c := range name {
		if unicode.IsSpace(c) || !unicode.IsPrint(c) || c == '/' {
			return "must not contain spaces, slashes or control characters"
		}
	}
	return ""
}

func (api *API) postToken(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	user := httpmw.UserParam(r)
	if !api.authorizeVisible(w, r, rbac.ActionCreate, apiKeyObject(user)) {
		return
	}
	var req codersdk.CreateTokenRequest
	if !httpapi.Read(ctx, w, r, &req) {
		return
	}
	var errs []codersdk.ValidationError
	lifetime := req.Lifetime
	switch {
	case lifetime < 0:
		errs = append(errs, codersdk.ValidationError{Field: "lifetime", Detail: "must not be negative"})
	case lifetime == 0:
		lifetime = api.opts.DefaultTokenLifetime
	case lifetime > api.opts.MaxTokenLifetime:
		errs = append(errs, codersdk.ValidationError{Field: "lifetime", Detail: fmt.Sprintf("must be at most %s", api.opts.MaxTokenLifetime)})
	case lifetime < time.Second:
		errs = append(errs, codersdk.ValidationError{Field: "lifetime", Detail: "must be at least one second"})
	}
	scope := req.Scope
	if scope == "" {
		scope = codersdk.APIKeyScopeAll
	}
	if scope != codersdk.APIKeyScopeAll && scope != codersdk.APIKeyScopeApplicationConnect {
		errs = append(errs, codersdk.ValidationError{Field: "scope", Detail: fmt.Sprintf("unknown scope %q", scope)})
	}
	name := strings.TrimSpace(req.TokenName)
	if d := validateTokenName(name); d != "" {
		errs = append(errs, codersdk.ValidationError{Field: "token_name", Detail: d})
	}
	if len(errs) > 0 {
		writeValidation(w, r, errs)
		return
	}
	if name == "" {
		suffix, err := apikey.RandomString(8)
		if err != nil {
			httpapi.InternalServerError(w, r, "Internal error naming token.", err)
			return
		}
		name = "token-" + strings.ToLower(suffix)
	}
	token, _, err := api.createAPIKey(ctx, user.ID, database.LoginTypeToken, lifetime, name, scope)
	if database.IsUniqueViolation(err, database.UniqueAPIKeysUserTokenName) {
		httpapi.Write(ctx, w, http.StatusConflict, codersdk.Response{
			Message:     fmt.Sprintf("A token named %q already exists.", name),
			Validations: []codersdk.ValidationError{{Field: "token_name", Detail: "is already taken"}},
		})
		return
	}
	if err != nil {
		httpapi.InternalServerError(w, r, "Internal error creating token.", err)
		return
	}
	httpapi.Write(ctx, w, http.StatusCreated, codersdk.GenerateAPIKeyResponse{Key: token})
}

func (api *API) tokens(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	user := httpmw.UserParam(r)
	if !api.authorizeVisible(w, r, rbac.ActionRead, apiKeyObject(user)) {
		return
	}
	rows, err := api.db.GetAPIKeysByUserID(ctx, database.GetAPIKeysByUserIDParams{UserID: user.ID, LoginType: database.LoginTypeToken})
	if err != nil {
		httpapi.InternalServerError(w, r, "Internal error listing tokens.", err)
		return
	}
	keys := make([]codersdk.APIKey, 0, len(rows))
	for _, k := range rows {
		keys = append(keys, convertAPIKey(k))
	}
	httpapi.Write(ctx, w, http.StatusOK, keys)
}

func (api *API) apiKeyByName(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	user := httpmw.UserParam(r)
	if !api.authorizeVisible(w, r, rbac.ActionRead, apiKeyObject(user)) {
		return
	}
	key, err := api.db.GetAPIKeyByName(ctx, database.GetAPIKeyByNameParams{UserID: user.ID, TokenName: chi.URLParam(r, "keyname")})
	if errors.Is(err, pgx.ErrNoRows) {
		httpapi.ResourceNotFound(w, r)
		return
	}
	if err != nil {
		httpapi.InternalServerError(w, r, "Internal error fetching token.", err)
		return
	}
	httpapi.Write(ctx, w, http.StatusOK, convertAPIKey(key))
}

func (api *API) deleteAPIKey(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	user := httpmw.UserParam(r)
	if !api.authorizeVisible(w, r, rbac.ActionDelete, apiKeyObject(user)) {
		return
	}
	key, err := api.db.GetAPIKeyByID(ctx, chi.URLParam(r, "keyid"))
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && key.UserID != user.ID) {
		httpapi.ResourceNotFound(w, r)
		return
	}
	if err != nil {
		httpapi.InternalServerError(w, r, "Internal error fetching API key.", err)
		return
	}
	if err := api.db.DeleteAPIKeyByID(ctx, key.ID); err != nil {
		httpapi.InternalServerError(w, r, "Internal error deleting API key.", err)
		return
	}
	// The key no longer authenticates; end what it already opened.
	api.revoke(ctx, revocation.APIKey(key.ID))
	w.WriteHeader(http.StatusNoContent)
}

func convertAPIKey(k database.APIKey) codersdk.APIKey {
	return codersdk.APIKey{
		ID:              k.ID,
		UserID:          k.UserID,
		LastUsed:        k.LastUsed,
		ExpiresAt:       k.ExpiresAt,
		CreatedAt:       k.CreatedAt,
		UpdatedAt:       k.UpdatedAt,
		LoginType:       codersdk.LoginType(k.LoginType),
		Scope:           codersdk.APIKeyScope(k.Scope),
		TokenName:       k.TokenName,
		LifetimeSeconds: k.LifetimeSeconds,
	}
}
