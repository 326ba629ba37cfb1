package httpmw

import (
	"context"
	"errors"
	"net/http"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/wgmesh/coder/coderd/httpapi"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/database"
)

type userParamContextKey struct{}

// UserParam returns the user named by the {user} path parameter; it must
// run behind ExtractUserParam.
func UserParam(r *http.Request) database.User {
	u, ok := r.Context().Value(userParamContextKey{}).(database.User)
	if !ok {
		panic("developer error: UserParam used without ExtractUserParam middleware")
	}
	return u
}

// LookupUser resolves "me", a UUID or a username to a user that is not
// deleted. It returns pgx.ErrNoRows (wrapped) when there is none.
func LookupUser(ctx context.Context, db *database.Store, self database.User, param string) (database.User, error) {
	if param == codersdk.Me {
		return self, nil
	}
	if id, err := uuid.Parse(param); err == nil {
		u, err := db.GetUserByID(ctx, id)
		if err != nil {
			return database.User{}, err
		}
		if u.Deleted {
			return database.User{}, pgx.ErrNoRows
		}
		return u, nil
	}
	return db.GetUserByUsername(ctx, param)
}

// ExtractUserParam resolves the {user} path parameter ("me", a UUID or a
// username). Unknown users get 404. It must run behind ExtractAPIKey.
// Whether the caller may see the user is the handler's decision.
func ExtractUserParam(db *database.Store) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx := r.Context()
			auth, ok := AuthorizationFromContext(ctx)
			if !ok {
				panic("developer error: ExtractUserParam used without ExtractAPIKey middleware")
			}
			user, err := LookupUser(ctx, db, auth.User, chi.URLParam(r, "user"))
			if errors.Is(err, pgx.ErrNoRows) {
				httpapi.ResourceNotFound(w, r)
				return
			}
			if err != nil {
				httpapi.InternalServerError(w, r, "Internal error fetching user.", err)
				return
			}
			next.ServeHTTP(w, r.WithContext(context.WithValue(ctx, userParamContextKey{}, user)))
		})
	}
}
