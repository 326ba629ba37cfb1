package coderd

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"mime"
	"net/http"

	"github.com/google/uuid"

	"github.com/wgmesh/coder/coderd/httpapi"
	"github.com/wgmesh/coder/coderd/httpmw"
	"github.com/wgmesh/coder/coderd/rbac"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/database"
)

// postFile stores a tar archive (POST /api/v2/files). Uploading the same
// content twice returns the existing file (200) instead of a new one (201).
func (api *API) postFile(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	auth, _ := httpmw.AuthorizationFromContext(ctx)
	if !api.authorize(r, rbac.ActionCreate, rbac.Object{Type: rbac.ResourceTemplate}) {
		httpapi.Forbidden(w, r)
		return
	}
	contentType, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if contentType != codersdk.ContentTypeTar {
		httpapi.Write(ctx, w, http.StatusBadRequest, codersdk.Response{
			Message: "Unsupported content type.", Detail: "Upload a tar archive with Content-Type " + codersdk.ContentTypeTar + ".",
		})
		return
	}
	if r.ContentLength > codersdk.MaxFileSize {
		api.fileTooLarge(w, r)
		return
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, codersdk.MaxFileSize))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			api.fileTooLarge(w, r)
			return
		}
		httpapi.Write(ctx, w, http.StatusBadRequest, codersdk.Response{Message: "Read upload.", Detail: err.Error()})
		return
	}
	sum := sha256.Sum256(data)
	hash := hex.EncodeToString(sum[:])
	if existing, err := api.db.GetFileByHashAndCreator(ctx, database.GetFileByHashAndCreatorParams{Hash: hash, CreatedBy: auth.User.ID}); err == nil {
		httpapi.Write(ctx, w, http.StatusOK, codersdk.UploadResponse{ID: existing.ID})
		return
	} else if !database.IsNotFound(err) {
		httpapi.InternalServerError(w, r, "Get file.", err)
		return
	}
	file, err := api.db.InsertFile(ctx, database.InsertFileParams{
		ID: uuid.New(), Hash: hash, CreatedAt: api.now(), CreatedBy: auth.User.ID, Mimetype: contentType, Data: data,
	})
	if err != nil {
		httpapi.InternalServerError(w, r, "Insert file.", err)
		return
	}
	httpapi.Write(ctx, w, http.StatusCreated, codersdk.UploadResponse{ID: file.ID})
}

func (api *API) fileTooLarge(w http.ResponseWriter, r *http.Request) {
	httpapi.Write(r.Context(), w, http.StatusRequestEntityTooLarge, codersdk.Response{
		Message: "File too large.",
		Detail:  "Uploads are limited to 100 MiB.",
	})
}

// fileByID downloads a file: its creator, or anyone who may edit templates.
func (api *API) fileByID(w http.ResponseWriter, r *http.Request) {
	file := httpmw.FileParam(r)
	if !api.authorize(r, rbac.ActionRead, rbac.Object{Type: rbac.ResourceTemplate, OwnerID: file.CreatedBy, ID: file.ID.String()}) ||
		!(api.isSelf(r, file.CreatedBy) || api.authorize(r, rbac.ActionUpdate, rbac.Object{Type: rbac.ResourceTemplate})) {
		httpapi.ResourceNotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", file.Mimetype)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(file.Data)
}

// isSelf reports whether the request's user is id.
func (api *API) isSelf(r *http.Request, id uuid.UUID) bool {
	auth, ok := httpmw.AuthorizationFromContext(r.Context())
	return ok && auth.User.ID == id
}
