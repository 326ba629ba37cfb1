package httpmw

import (
	"net/http"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/wgmesh/coder/database"
)

// TemplateParam returns the {template} of the route.
func TemplateParam(r *http.Request) database.Template {
	return param[database.Template](r, "ExtractTemplateParam")
}

// TemplateVersionParam returns the {templateversion} of the route.
func TemplateVersionParam(r *http.Request) database.TemplateVersion {
	return param[database.TemplateVersion](r, "ExtractTemplateVersionParam")
}

// FileParam returns the {fileid} of the route.
func FileParam(r *http.Request) database.File {
	return param[database.File](r, "ExtractFileParam")
}

// ExtractTemplateParam resolves {template}, a UUID or a name, to a
// template that is not deleted, for TemplateParam.
func ExtractTemplateParam(cfg ParamConfig) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx := r.Context()
			param := chi.URLParam(r, "template")
			var t database.Template
			var err error
			if id, perr := uuid.Parse(param); perr == nil {
				t, err = cfg.DB.GetTemplateByID(ctx, id)
				if err == nil && t.Deleted {
					err = pgx.ErrNoRows
				}
			} else {
				t, err = cfg.DB.GetTemplateByName(ctx, param)
			}
			if err != nil {
				cfg.loadFailed(w, r, "template", err)
				return
			}
			next.ServeHTTP(w, r.WithContext(withParam(ctx, t)))
		})
	}
}

// ExtractTemplateVersionParam resolves {templateversion} (a UUID) to the
// template version, for TemplateVersionParam.
func ExtractTemplateVersionParam(cfg ParamConfig) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			id, ok := uuidParam(w, r, "templateversion", "template version")
			if !ok {
				return
			}
			v, err := cfg.DB.GetTemplateVersionByID(r.Context(), id)
			if err != nil {
				cfg.loadFailed(w, r, "template version", err)
				return
			}
			next.ServeHTTP(w, r.WithContext(withParam(r.Context(), v)))
		})
	}
}

// ExtractFileParam resolves {fileid} (a UUID) to the uploaded file, for
// FileParam.
func ExtractFileParam(cfg ParamConfig) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			id, ok := uuidParam(w, r, "fileid", "file")
			if !ok {
				return
			}
			f, err := cfg.DB.GetFileByID(r.Context(), id)
			if err != nil {
				cfg.loadFailed(w, r, "file", err)
				return
			}
			next.ServeHTTP(w, r.WithContext(withParam(r.Context(), f)))
		})
	}
}
