package codersdk

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/google/uuid"
)

// UserStatus is the state of a user account.
type UserStatus string

// User statuses.
const (
	UserStatusActive    UserStatus = "active"
	UserStatusSuspended UserStatus = "suspended"
	UserStatusDormant   UserStatus = "dormant"
)

// LoginType is how a user (or an API key) authenticates.
type LoginType string

// Login types.
const (
	LoginTypePassword LoginType = "password"
	LoginTypeToken    LoginType = "token"
)

// Site role names.
const (
	RoleOwner         = "owner"
	RoleTemplateAdmin = "template-admin"
	RoleMember        = "member"
)

// SlimRole is a role assigned to a user.
type SlimRole struct {
	Name        string `json:"name"`
	DisplayName string `json:"display_name"`
}

// User is a user account.
type User struct {
	ID         uuid.UUID  `json:"id"`
	Username   string     `json:"username"`
	Email      string     `json:"email"`
	Name       string     `json:"name"`
	CreatedAt  time.Time  `json:"created_at"`
	LastSeenAt time.Time  `json:"last_seen_at"`
	Status     UserStatus `json:"status"`
	LoginType  LoginType  `json:"login_type"`
	Roles      []SlimRole `json:"roles"`
}

// CreateFirstUserRequest creates the first user of a deployment.
type CreateFirstUserRequest struct {
	Email    string `json:"email"`
	Username string `json:"username"`
	Name     string `json:"name"`
	Password string `json:"password"`
}

// CreateFirstUserResponse names the first user.
type CreateFirstUserResponse struct {
	UserID uuid.UUID `json:"user_id"`
}

// LoginWithPasswordRequest logs in with email and password.
type LoginWithPasswordRequest struct {
	Email    string `json:"email"`
	Password string `json:"password"`
}

// LoginWithPasswordResponse carries the new session token.
type LoginWithPasswordResponse struct {
	SessionToken string `json:"session_token"`
}

// CreateUserRequest creates a user.
type CreateUserRequest struct {
	Email    string `json:"email"`
	Username string `json:"username"`
	Name     string `json:"name"`
	Password string `json:"password"`
	// Roles are site roles granted in addition to the implicit member role.
	Roles []string `json:"roles,omitempty"`
	// LoginType defaults to password.
	LoginType LoginType `json:"login_type,omitempty"`
}

// UpdateRoles replaces a user's site roles.
type UpdateRoles struct {
	Roles []string `json:"roles"`
}

// UsersRequest filters and pages the users list.
type UsersRequest struct {
	// Search matches usernames and emails (substring, case-insensitive);
	// "status:<status>" terms filter by status.
	Search string
	// Limit bounds the number of users returned; 0 means the server default.
	Limit int
	// Offset skips users.
	Offset int
}

// GetUsersResponse is a page of users plus the total number matching.
type GetUsersResponse struct {
	Users []User `json:"users"`
	Count int    `json:"count"`
}

// HasFirstUser reports whether the deployment has a user yet.
func (c *Client) HasFirstUser(ctx context.Context) (bool, error) {
	res, err := c.Request(ctx, http.MethodGet, "/api/v2/users/first", nil)
	if err != nil {
		return false, err
	}
	defer res.Body.Close()
	switch res.StatusCode {
	case http.StatusOK:
		return true, nil
	case http.StatusNotFound:
		return false, nil
	default:
		return false, ReadBodyAsError(res)
	}
}

// CreateFirstUser creates the first user; it becomes an owner. It fails
// with 409 once any user exists.
func (c *Client) CreateFirstUser(ctx context.Context, req CreateFirstUserRequest) (CreateFirstUserResponse, error) {
	var resp CreateFirstUserResponse
	err := c.do(ctx, http.MethodPost, "/api/v2/users/first", req, http.StatusCreated, &resp)
	return resp, err
}

// LoginWithPassword creates a session. The token is returned, not set on
// the client.
func (c *Client) LoginWithPassword(ctx context.Context, req LoginWithPasswordRequest) (LoginWithPasswordResponse, error) {
	var resp LoginWithPasswordResponse
	err := c.do(ctx, http.MethodPost, "/api/v2/users/login", req, http.StatusCreated, &resp)
	return resp, err
}

// Logout deletes the API key the client is using.
func (c *Client) Logout(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/api/v2/users/logout", nil, http.StatusOK, nil)
}

// User returns a user by "me", username or ID.
func (c *Client) User(ctx context.Context, user string) (User, error) {
	var u User
	err := c.do(ctx, http.MethodGet, "/api/v2/users/"+url.PathEscape(user), nil, http.StatusOK, &u)
	return u, err
}

// Users lists users.
func (c *Client) Users(ctx context.Context, req UsersRequest) (GetUsersResponse, error) {
	q := url.Values{}
	if req.Search != "" {
		q.Set("q", req.Search)
	}
	if req.Limit > 0 {
		q.Set("limit", strconv.Itoa(req.Limit))
	}
	if req.Offset > 0 {
		q.Set("offset", strconv.Itoa(req.Offset))
	}
	path := "/api/v2/users"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var resp GetUsersResponse
	err := c.do(ctx, http.MethodGet, path, nil, http.StatusOK, &resp)
	return resp, err
}

// CreateUser creates a user.
func (c *Client) CreateUser(ctx context.Context, req CreateUserRequest) (User, error) {
	var u User
	err := c.do(ctx, http.MethodPost, "/api/v2/users", req, http.StatusCreated, &u)
	return u, err
}

// UpdateUserStatus suspends or activates a user.
func (c *Client) UpdateUserStatus(ctx context.Context, user string, status UserStatus) (User, error) {
	var path string
	switch status {
	case UserStatusActive:
		path = "activate"
	case UserStatusSuspended:
		path = "suspend"
	default:
		return User{}, fmt.Errorf("unsupported user status %q", status)
	}
	var u User
	err := c.do(ctx, http.MethodPut, "/api/v2/users/"+url.PathEscape(user)+"/status/"+path, nil, http.StatusOK, &u)
	return u, err
}

// DeleteUser deletes a user (owners only). It is refused (409) while the
// user owns workspaces; the user's keys stop working and their live
// connections end.
func (c *Client) DeleteUser(ctx context.Context, user string) error {
	return c.do(ctx, http.MethodDelete, "/api/v2/users/"+url.PathEscape(user), nil, http.StatusNoContent, nil)
}

// UpdateUserRoles replaces a user's site roles.
func (c *Client) UpdateUserRoles(ctx context.Context, user string, req UpdateRoles) (User, error) {
	var u User
	err := c.do(ctx, http.MethodPut, "/api/v2/users/"+url.PathEscape(user)+"/roles", req, http.StatusOK, &u)
	return u, err
}
