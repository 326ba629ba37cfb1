package coderd

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/wgmesh/coder/coderd/apikey"
	"github.com/wgmesh/coder/coderd/httpapi"
	"github.com/wgmesh/coder/coderd/httpmw"
	"github.com/wgmesh/coder/coderd/rbac"
	"github.com/wgmesh/coder/coderd/revocation"
	"github.com/wgmesh/coder/coderd/userpassword"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/database"
)

var errFirstUserExists = errors.New("the first user has already been created")

func (api *API) firstUser(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	count, err := api.db.GetUserCount(ctx)
	if err != nil {
		httpapi.InternalServerError(w, r, "Internal error counting users.", err)
		return
	}
	if count == 0 {
		httpapi.Write(ctx, w, http.StatusNotFound, codersdk.Response{Message: "The initial user has not been created!"})
		return
	}
	httpapi.Write(ctx, w, http.StatusOK, codersdk.Response{Message: "The initial user has already been created!"})
}

// validateNewUser checks the fields of a user being created.
func validateNewUser(email, username, password string, needPassword bool) []codersdk.ValidationError {
	var errs []codersdk.ValidationError
	if d := httpapi.UsernameValid(username); d != "" {
		errs = append(errs, codersdk.ValidationError{Field: "username", Detail: d})
	}
	if d := httpapi.EmailValid(email); d != "" {
		errs = append(errs, codersdk.ValidationError{Field: "email", Detail: d})
	}
	if needPassword {
		if d := httpapi.PasswordValid(password); d != "" {
			errs = append(errs, codersdk.ValidationError{Field: "password", Detail: d})
		}
	} else if password != "" {
		errs = append(errs, codersdk.ValidationError{Field: "password", Detail: "must be empty for this login type"})
	}
	return errs
}

func writeValidation(w http.ResponseWriter, r *http.Request, errs []codersdk.ValidationError) {
	httpapi.Write(r.Context(), w, http.StatusBadRequest, codersdk.Response{Message: "Validation failed.", Validations: errs})
}

// uniqueUserConflict answers a unique violation on users with 409.
func uniqueUserConflict(w http.ResponseWriter, r *http.Request, err error) bool {
	if !database.IsUniqueViolation(err) {
		return false
	}
	resp := codersdk.Response{Message: "A user with that username or email already exists."}
	switch {
	case database.IsUniqueViolation(err, database.UniqueUsersUsernameLower):
		resp.Message = "A user with that username already exists."
		resp.Validations = []codersdk.ValidationError{{Field: "username", Detail: "is already taken"}}
	case database.IsUniqueViolation(err, database.UniqueUsersEmailLower):
		resp.Message = "A user with that email already exists."
		resp.Validations = []codersdk.ValidationError{{Field: "email", Detail: "is already taken"}}
	}
	httpapi.Write(r.Context(), w, http.StatusConflict, resp)
	return true
}

// newUserParams builds the insert parameters of a user.
func (api *API) newUserParams(email, username, name, password string, loginType database.LoginType, roles []string) (database.InsertUserParams, error) {
	var hashed []byte
	if password != "" {
		var err error
		hashed, err = userpassword.Hash(password)
		if err != nil {
			return database.InsertUserParams{}, err
		}
	}
	if hashed == nil {
		hashed = []byte{}
	}
	if roles == nil {
		roles = []string{}
	}
	now := api.now()
	return database.InsertUserParams{
		ID:             uuid.New(),
		Email:          email,
		Username:       username,
		Name:           name,
		HashedPassword: hashed,
		CreatedAt:      now,
		UpdatedAt:      now,
		Status:         database.UserStatusActive,
		RbacRoles:      roles,
		LoginType:      loginType,
		LastSeenAt:     now,
		Deleted:        false,
	}, nil
}

func (api *API) postFirstUser(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var req codersdk.CreateFirstUserRequest
	if !httpapi.Read(ctx, w, r, &req) {
		return
	}
	if errs := validateNewUser(req.Email, req.Username, req.Password, true); len(errs) > 0 {
		writeValidation(w, r, errs)
		return
	}
	params, err := api.newUserParams(req.Email, req.Username, req.Name, req.Password, database.LoginTypePassword, []string{rbac.RoleOwner})
	if err != nil {
		httpapi.InternalServerError(w, r, "Internal error hashing password.", err)
		return
	}
	// Serializable: two concurrent first-user requests cannot both see zero
	// users; the loser is retried, sees the winner and gets 409.
	var user database.User
	err = api.db.InTxOpts(ctx, database.TxOptions{Isolation: pgx.Serializable}, func(q *database.Queries) error {
		count, err := q.GetUserCount(ctx)
		if err != nil {
			return fmt.Errorf("count users: %w", err)
		}
		if count > 0 {
			return errFirstUserExists
		}
		user, err = q.InsertUser(ctx, params)
		if err != nil {
			return fmt.Errorf("insert user: %w", err)
		}
		return nil
	})
	if errors.Is(err, errFirstUserExists) {
		httpapi.Write(ctx, w, http.StatusConflict, codersdk.Response{Message: "The initial user has already been created."})
		return
	}
	if uniqueUserConflict(w, r, err) {
		return
	}
	if err != nil {
		httpapi.InternalServerError(w, r, "Internal error creating the first user.", err)
		return
	}
	api.logger.InfoContext(ctx, "first user created", "user_id", user.ID, "username", user.Username)
	httpapi.Write(ctx, w, http.StatusCreated, codersdk.CreateFirstUserResponse{UserID: user.ID})
}

func (api *API) postLogin(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var req codersdk.LoginWithPasswordRequest
	if !httpapi.Read(ctx, w, r, &req) {
		return
	}
	if errs := httpapi.Required([2]string{"email", req.Email}, [2]string{"password", req.Password}); len(errs) > 0 {
		writeValidation(w, r, errs)
		return
	}
	if !api.logins.admit(w, r, req.Email) {
		return
	}
	user, err := api.db.GetUserByEmail(ctx, req.Email)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		httpapi.InternalServerError(w, r, "Internal error fetching user.", err)
		return
	}
	var ok bool
	var cmpErr error
	noUser := errors.Is(err, pgx.ErrNoRows)
	if err := api.logins.hash(ctx, func() {
		if noUser {
			// Spend the same time as for a real user, so timing does not
			// reveal which emails exist.
			ok = userpassword.CompareDummy(req.Password)
		} else {
			ok, cmpErr = userpassword.Compare(user.HashedPassword, req.Password)
		}
	}); err != nil {
		return // the client went away while waiting for a hashing slot
	}
	if cmpErr != nil {
		httpapi.InternalServerError(w, r, "Internal error checking password.", cmpErr)
		return
	}
	if !ok {
		api.logins.perAccount.Add(accountKey(req.Email))
		httpapi.Write(ctx, w, http.StatusUnauthorized, codersdk.Response{Message: "Incorrect email or password."})
		return
	}
	if user.LoginType != database.LoginTypePassword {
		httpapi.Write(ctx, w, http.StatusUnauthorized, codersdk.Response{
			Message: fmt.Sprintf("This account cannot log in with a password (login type %q).", user.LoginType),
		})
		return
	}
	if user.Status == database.UserStatusSuspended {
		httpapi.Write(ctx, w, http.StatusUnauthorized, codersdk.Response{
			Message: "Your account is suspended. Contact an administrator to reactivate your account.",
		})
		return
	}
	api.logins.perAccount.Reset(accountKey(req.Email))
	token, _, err := api.createAPIKey(ctx, user.ID, database.LoginTypePassword, api.opts.SessionLifetime, "", codersdk.APIKeyScopeAll)
	if err != nil {
		httpapi.InternalServerError(w, r, "Internal error creating session.", err)
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name:     codersdk.SessionTokenCookie,
		Value:    token,
		Path:     "/",
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
		Secure:   api.opts.AccessURL.Scheme == "https",
	})
	httpapi.Write(ctx, w, http.StatusCreated, codersdk.LoginWithPasswordResponse{SessionToken: token})
}

func (api *API) postLogout(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	auth, _ := httpmw.AuthorizationFromContext(ctx)
	obj := rbac.Object{Type: rbac.ResourceAPIKey, OwnerID: auth.User.ID, ID: auth.Key.ID}
	if !api.authorize(r, rbac.ActionDelete, obj) {
		httpapi.Forbidden(w, r)
		return
	}
	if err := api.db.DeleteAPIKeyByID(ctx, auth.Key.ID); err != nil {
		httpapi.InternalServerError(w, r, "Internal error deleting API key.", err)
		return
	}
	api.revoke(ctx, revocation.APIKey(auth.Key.ID))
	http.SetCookie(w, &http.Cookie{
		Name:     codersdk.SessionTokenCookie,
		Value:    "",
		Path:     "/",
		MaxAge:   -1,
		HttpOnly: true,
	})
	httpapi.Write(ctx, w, http.StatusOK, codersdk.Response{Message: "Logged out."})
}

// authorizeVisible checks action on object. Callers that may not read the
// object get 404 (they may not learn it exists); callers that may read it
// but not do action get 403. It writes the response and returns false on
// denial.
func (api *API) authorizeVisible(w http.ResponseWriter, r *http.Request, action rbac.Action, object rbac.Object) bool {
	if !api.authorize(r, rbac.ActionRead, object) {
		httpapi.ResourceNotFound(w, r)
		return false
	}
	if action != rbac.ActionRead && !api.authorize(r, action, object) {
		httpapi.Forbidden(w, r)
		return false
	}
	return true
}

func userObject(u database.User) rbac.Object {
	return rbac.Object{Type: rbac.ResourceUser, OwnerID: u.ID, ID: u.ID.String()}
}

func (api *API) user(w http.ResponseWriter, r *http.Request) {
	user := httpmw.UserParam(r)
	if !api.authorizeVisible(w, r, rbac.ActionRead, userObject(user)) {
		return
	}
	httpapi.Write(r.Context(), w, http.StatusOK, convertUser(user))
}

// userFilter is a parsed users search query: "status:<s>" terms and free
// text matched against username and email.
type userFilter struct {
	status []database.UserStatus
	text   []string
}

func parseUserFilter(q string) (userFilter, []codersdk.ValidationError) {
	var f userFilter
	var errs []codersdk.ValidationError
	for _, term := range strings.Fields(q) {
		key, value, ok := strings.Cut(term, ":")
		if !ok {
			f.text = append(f.text, strings.ToLower(term))
			continue
		}
		switch key {
		case "status":
			s := database.UserStatus(value)
			if !s.Valid() {
				errs = append(errs, codersdk.ValidationError{Field: "q", Detail: fmt.Sprintf("unknown status %q", value)})
				continue
			}
			f.status = append(f.status, s)
		default:
			errs = append(errs, codersdk.ValidationError{Field: "q", Detail: fmt.Sprintf("unknown filter %q", key)})
		}
	}
	return f, errs
}

func (f userFilter) empty() bool { return len(f.status) == 0 && len(f.text) == 0 }

func (f userFilter) match(u database.User) bool {
	if len(f.status) > 0 && !slices.Contains(f.status, u.Status) {
		return false
	}
	for _, t := range f.text {
		if !strings.Contains(strings.ToLower(u.Username), t) && !strings.Contains(strings.ToLower(u.Email), t) {
			return false
		}
	}
	return true
}

func parsePaging(r *http.Request) (limit, offset int, errs []codersdk.ValidationError) {
	limit = DefaultUsersPageLimit
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > DefaultMaxUsersPageLimit {
			errs = append(errs, codersdk.ValidationError{Field: "limit", Detail: fmt.Sprintf("must be an integer between 0 and %d", DefaultMaxUsersPageLimit)})
		} else if n > 0 {
			limit = n
		}
	}
	if v := r.URL.Query().Get("offset"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > math.MaxInt32 {
			errs = append(errs, codersdk.ValidationError{Field: "offset", Detail: fmt.Sprintf("must be an integer between 0 and %d", math.MaxInt32)})
		} else {
			offset = n
		}
	}
	return limit, offset, errs
}

func (api *API) users(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	auth, _ := httpmw.AuthorizationFromContext(ctx)
	filter, errs := parseUserFilter(r.URL.Query().Get("q"))
	limit, offset, pagingErrs := parsePaging(r)
	errs = append(errs, pagingErrs...)
	if len(errs) > 0 {
		writeValidation(w, r, errs)
		return
	}

	// Subjects that may read every user see the whole list; others
	// (members) see only the users they may read: themselves.
	if !api.authorize(r, rbac.ActionRead, rbac.Object{Type: rbac.ResourceUser}) {
		var users []codersdk.User
		if api.authorize(r, rbac.ActionRead, userObject(auth.User)) && filter.match(auth.User) {
			users = append(users, convertUser(auth.User))
		}
		count := len(users)
		if offset >= len(users) {
			users = nil
		}
		writeUsers(w, r, users, count)
		return
	}

	if filter.empty() {
		count, err := api.db.GetUserCount(ctx)
		if err != nil {
			httpapi.InternalServerError(w, r, "Internal error counting users.", err)
			return
		}
		rows, err := api.db.GetUsers(ctx, database.GetUsersParams{Limit: int32(limit), Offset: int32(offset)})
		if err != nil {
			httpapi.InternalServerError(w, r, "Internal error listing users.", err)
			return
		}
		users := make([]codersdk.User, 0, len(rows))
		for _, u := range rows {
			users = append(users, convertUser(u))
		}
		writeUsers(w, r, users, int(count))
		return
	}

	// Filtered: scan all users page by page and filter here.
	var matched []codersdk.User
	const page = 500
	for off := 0; ; off += page {
		rows, err := api.db.GetUsers(ctx, database.GetUsersParams{Limit: page, Offset: int32(off)})
		if err != nil {
			httpapi.InternalServerError(w, r, "Internal error listing users.", err)
			return
		}
		for _, u := range rows {
			if filter.match(u) {
				matched = append(matched, convertUser(u))
			}
		}
		if len(rows) < page {
			break
		}
	}
	count := len(matched)
	start := min(offset, len(matched))
	end := min(start+limit, len(matched))
	writeUsers(w, r, matched[start:end], count)
}

func writeUsers(w http.ResponseWriter, r *http.Request, users []codersdk.User, count int) {
	if users == nil {
		users = []codersdk.User{}
	}
	httpapi.Write(r.Context(), w, http.StatusOK, codersdk.GetUsersResponse{Users: users, Count: count})
}

// validateRoles checks that every role can be assigned; "member" is
// implicit and dropped.
func validateRoles(roles []string) ([]string, []codersdk.ValidationError) {
	out := []string{}
	var errs []codersdk.ValidationError
	for _, role := range roles {
		if role == rbac.RoleMember {
			continue
		}
		if !slices.Contains(rbac.AssignableRoles(), role) {
			errs = append(errs, codersdk.ValidationError{Field: "roles", Detail: fmt.Sprintf("unknown role %q (valid: %s)", role, strings.Join(rbac.AssignableRoles(), ", "))})
			continue
		}
		if !slices.Contains(out, role) {
			out = append(out, role)
		}
	}
	slices.Sort(out)
	return out, errs
}

func (api *API) postUser(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if !api.authorize(r, rbac.ActionCreate, rbac.Object{Type: rbac.ResourceUser}) {
		httpapi.Forbidden(w, r)
		return
	}
	var req codersdk.CreateUserRequest
	if !httpapi.Read(ctx, w, r, &req) {
		return
	}
	loginType := database.LoginType(req.LoginType)
	if req.LoginType == "" {
		loginType = database.LoginTypePassword
	}
	var errs []codersdk.ValidationError
	if !loginType.Valid() {
		errs = append(errs, codersdk.ValidationError{Field: "login_type", Detail: fmt.Sprintf("unknown login type %q", req.LoginType)})
	}
	errs = append(errs, validateNewUser(req.Email, req.Username, req.Password, loginType == database.LoginTypePassword)...)
	roles, roleErrs := validateRoles(req.Roles)
	errs = append(errs, roleErrs...)
	if len(errs) > 0 {
		writeValidation(w, r, errs)
		return
	}
	if len(roles) > 0 && !api.authorize(r, rbac.ActionUpdate, rbac.Object{Type: rbac.ResourceRoleAssignment}) {
		httpapi.Forbidden(w, r)
		return
	}
	params, err := api.newUserParams(req.Email, req.Username, req.Name, req.Password, loginType, roles)
	if err != nil {
		httpapi.InternalServerError(w, r, "Internal error hashing password.", err)
		return
	}
	user, err := api.db.InsertUser(ctx, params)
	if uniqueUserConflict(w, r, err) {
		return
	}
	if err != nil {
		httpapi.InternalServerError(w, r, "Internal error creating user.", err)
		return
	}
	httpapi.Write(ctx, w, http.StatusCreated, convertUser(user))
}

func (api *API) putUserStatus(status database.UserStatus) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		user := httpmw.UserParam(r)
		auth, _ := httpmw.AuthorizationFromContext(ctx)
		if !api.authorizeVisible(w, r, rbac.ActionUpdate, userObject(user)) {
			return
		}
		if status == database.UserStatusSuspended && user.ID == auth.User.ID {
			httpapi.Write(ctx, w, http.StatusBadRequest, codersdk.Response{Message: "You cannot suspend yourself."})
			return
		}
		updated, err := api.db.UpdateUserStatus(ctx, database.UpdateUserStatusParams{ID: user.ID, Status: status, UpdatedAt: api.now()})
		if err != nil {
			httpapi.InternalServerError(w, r, "Internal error updating user status.", err)
			return
		}
		api.logger.InfoContext(ctx, "user status changed", "user_id", user.ID, "status", status, "by", auth.User.ID)
		if status == database.UserStatusSuspended {
			// Suspended users' keys stop authenticating; end what they
			// already opened.
			api.revoke(ctx, revocation.User(user.ID))
		}
		httpapi.Write(ctx, w, http.StatusOK, convertUser(updated))
	}
}

// deleteUser serves DELETE /api/v2/users/{user}: owners delete another
// user, who must not own workspaces any more (their resources would be
// orphaned). The user is soft-deleted (username and email become
// reusable), their keys are deleted and their live sessions end.
func (api *API) deleteUser(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	user := httpmw.UserParam(r)
	auth, _ := httpmw.AuthorizationFromContext(ctx)
	if !api.authorizeVisible(w, r, rbac.ActionDelete, userObject(user)) {
		return
	}
	if user.ID == auth.User.ID {
		httpapi.Write(ctx, w, http.StatusBadRequest, codersdk.Response{Message: "You cannot delete yourself."})
		return
	}
	workspaces, err := api.db.GetWorkspaces(ctx, database.GetWorkspacesParams{OwnerID: user.ID})
	if err != nil {
		httpapi.InternalServerError(w, r, "Internal error fetching the user's workspaces.", err)
		return
	}
	if len(workspaces) > 0 {
		httpapi.Write(ctx, w, http.StatusConflict, codersdk.Response{
			Message: fmt.Sprintf("The user owns %d workspace(s); delete them before deleting the user.", len(workspaces)),
			Detail:  fmt.Sprintf("For example: coder delete %s/%s", user.Username, workspaces[0].Name),
		})
		return
	}
	err = api.db.InTx(ctx, func(q *database.Queries) error {
		if err := q.UpdateUserDeletedByID(ctx, database.UpdateUserDeletedByIDParams{ID: user.ID, UpdatedAt: api.now()}); err != nil {
			return fmt.Errorf("delete user: %w", err)
		}
		if err := q.DeleteAPIKeysByUserID(ctx, user.ID); err != nil {
			return fmt.Errorf("delete user's keys: %w", err)
		}
		return nil
	})
	if err != nil {
		httpapi.InternalServerError(w, r, "Internal error deleting the user.", err)
		return
	}
	api.logger.InfoContext(ctx, "user deleted", "user_id", user.ID, "by", auth.User.ID)
	api.revoke(ctx, revocation.User(user.ID))
	w.WriteHeader(http.StatusNoContent)
}

func (api *API) putUserRoles(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	user := httpmw.UserParam(r)
	auth, _ := httpmw.AuthorizationFromContext(ctx)
	if !api.authorize(r, rbac.ActionRead, userObject(user)) {
		httpapi.ResourceNotFound(w, r)
		return
	}
	if !api.authorize(r, rbac.ActionUpdate, rbac.Object{Type: rbac.ResourceRoleAssignment, ID: user.ID.String()}) {
		httpapi.Forbidden(w, r)
		return
	}
	var req codersdk.UpdateRoles
	if !httpapi.Read(ctx, w, r, &req) {
		return
	}
	roles, errs := validateRoles(req.Roles)
	if len(errs) > 0 {
		writeValidation(w, r, errs)
		return
	}
	if user.ID == auth.User.ID && slices.Contains(user.RbacRoles, rbac.RoleOwner) && !slices.Contains(roles, rbac.RoleOwner) {
		httpapi.Write(ctx, w, http.StatusBadRequest, codersdk.Response{Message: "You cannot remove the owner role from yourself."})
		return
	}
	updated, err := api.db.UpdateUserRoles(ctx, database.UpdateUserRolesParams{ID: user.ID, RbacRoles: roles})
	if err != nil {
		httpapi.InternalServerError(w, r, "Internal error updating roles.", err)
		return
	}
	httpapi.Write(ctx, w, http.StatusOK, convertUser(updated))
}

func convertUser(u database.User) codersdk.User {
	roles := make([]codersdk.SlimRole, 0, len(u.RbacRoles))
	for _, name := range u.RbacRoles {
		display := name
		if role, ok := rbac.RoleByName(name); ok {
			display = role.DisplayName
		}
		roles = append(roles, codersdk.SlimRole{Name: name, DisplayName: display})
	}
	return codersdk.User{
		ID:         u.ID,
		Username:   u.Username,
		Email:      u.Email,
		Name:       u.Name,
		CreatedAt:  u.CreatedAt,
		LastSeenAt: u.LastSeenAt,
		Status:     codersdk.UserStatus(u.Status),
		LoginType:  codersdk.LoginType(u.LoginType),
		Roles:      roles,
	}
}

// createAPIKey stores a new key for the user and returns its token.
func (api *API) createAPIKey(ctx context.Context, userID uuid.UUID, loginType database.LoginType, lifetime time.Duration, name string, scope codersdk.APIKeyScope) (string, database.APIKey, error) {
	key, err := apikey.Generate()
	if err != nil {
		return "", database.APIKey{}, err
	}
	now := api.now()
	row, err := api.db.InsertAPIKey(ctx, database.InsertAPIKeyParams{
		ID:              key.ID,
		HashedSecret:    key.HashedSecret,
		UserID:          userID,
		LastUsed:        now,
		ExpiresAt:       now.Add(lifetime),
		CreatedAt:       now,
		UpdatedAt:       now,
		LoginType:       loginType,
		LifetimeSeconds: int64(lifetime / time.Second),
		TokenName:       name,
		Scope:           string(scope),
	})
	if err != nil {
		return "", database.APIKey{}, fmt.Errorf("insert api key: %w", err)
	}
	return key.Token(), row, nil
}
