package httpmw

import (
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/wgmesh/coder/database"
)

// WorkspaceParam returns the workspace of the route: the {workspace}, the
// workspace named by {user} and {workspacename}, or the workspace of the
// {workspacebuild} or {workspaceagent}.
func WorkspaceParam(r *http.Request) database.Workspace {
	return param[database.Workspace](r, "ExtractWorkspaceParam, ExtractWorkspaceByNameParam, ExtractWorkspaceBuildParam or ExtractWorkspaceAgentParam")
}

// WorkspaceBuildParam returns the {workspacebuild} of the route.
func WorkspaceBuildParam(r *http.Request) database.WorkspaceBuild {
	return param[database.WorkspaceBuild](r, "ExtractWorkspaceBuildParam")
}

// WorkspaceAgentParam returns the {workspaceagent} of the route.
func WorkspaceAgentParam(r *http.Request) database.WorkspaceAgent {
	return param[database.WorkspaceAgent](r, "ExtractWorkspaceAgentParam")
}

// ExtractWorkspaceParam resolves {workspace} (a UUID) to the workspace,
// deleted or not, for WorkspaceParam.
func ExtractWorkspaceParam(cfg ParamConfig) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			id, ok := uuidParam(w, r, "workspace", "workspace")
			if !ok {
				return
			}
			ws, err := cfg.DB.GetWorkspaceByID(r.Context(), id)
			if err != nil {
				cfg.loadFailed(w, r, "workspace", err)
				return
			}
			next.ServeHTTP(w, r.WithContext(withParam(r.Context(), ws)))
		})
	}
}

// ExtractWorkspaceByNameParam resolves {workspacename} to the workspace
// (not deleted) of that name owned by the {user}, for WorkspaceParam. It
// must run behind ExtractUserParam.
func ExtractWorkspaceByNameParam(cfg ParamConfig) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ws, err := cfg.DB.GetWorkspaceByOwnerIDAndName(r.Context(), database.GetWorkspaceByOwnerIDAndNameParams{
				OwnerID: UserParam(r).ID, Name: chi.URLParam(r, "workspacename"),
			})
			if err != nil {
				cfg.loadFailed(w, r, "workspace", err)
				return
			}
			next.ServeHTTP(w, r.WithContext(withParam(r.Context(), ws)))
		})
	}
}

// ExtractWorkspaceBuildParam resolves {workspacebuild} (a UUID) to the
// build, for WorkspaceBuildParam, and to its workspace, for WorkspaceParam.
func ExtractWorkspaceBuildParam(cfg ParamConfig) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			id, ok := uuidParam(w, r, "workspacebuild", "workspace build")
			if !ok {
				return
			}
			b, err := cfg.DB.GetWorkspaceBuildByID(r.Context(), id)
			if err != nil {
				cfg.loadFailed(w, r, "workspace build", err)
				return
			}
			ws, err := cfg.DB.GetWorkspaceByID(r.Context(), b.WorkspaceID)
			if err != nil {
				cfg.loadFailed(w, r, "workspace", err)
				return
			}
			ctx := withParam(withParam(r.Context(), b), ws)
			next.ServeHTTP(w, r.WithContext(ctx))
		})
	}
}

// ExtractWorkspaceAgentParam resolves {workspaceagent} (a UUID) to the
// agent, for WorkspaceAgentParam, and to the workspace whose build created
// it, for WorkspaceParam. An agent without a workspace (one of a template
// version's import) counts as missing.
func ExtractWorkspaceAgentParam(cfg ParamConfig) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			id, ok := uuidParam(w, r, "workspaceagent", "workspace agent")
			if !ok {
				return
			}
			agent, err := cfg.DB.GetWorkspaceAgentByID(r.Context(), id)
			if err != nil {
				cfg.loadFailed(w, r, "workspace agent", err)
				return
			}
			ws, err := cfg.DB.GetWorkspaceByAgentID(r.Context(), agent.ID)
			if err != nil {
				cfg.loadFailed(w, r, "workspace", err)
				return
			}
			ctx := withParam(withParam(r.Context(), agent), ws)
			next.ServeHTTP(w, r.WithContext(ctx))
		})
	}
}
