package codersdk

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// This file holds the user-facing provisioning API: files, templates, template
// versions, workspaces, workspace builds, provisioner jobs and their logs.

// MaxFileSize is the largest file coderd accepts (POST /api/v2/files).
const MaxFileSize = 100 << 20

// ContentTypeTar is the content type of template source archives.
const ContentTypeTar = "application/x-tar"

// UploadResponse is the answer to a file upload. Like Coder, the file ID is
// sent under the "hash" key.
type UploadResponse struct {
	ID uuid.UUID `json:"hash"`
}

// ProvisionerJobType is the kind of work a provisioner job asks for.
type ProvisionerJobType string

const (
	// ProvisionerJobTypeTemplateVersionImport parses a template version: its rich
	// parameters and the resources a start would create.
	ProvisionerJobTypeTemplateVersionImport ProvisionerJobType = "template_version_import"
	// ProvisionerJobTypeWorkspaceBuild applies a workspace transition (start, stop, delete).
	ProvisionerJobTypeWorkspaceBuild ProvisionerJobType = "workspace_build"
	// ProvisionerJobTypeTemplateVersionDryRun plans a workspace build without applying it.
	ProvisionerJobTypeTemplateVersionDryRun ProvisionerJobType = "template_version_dry_run"
)

// WorkspaceTransition is the desired state a workspace build moves the workspace to.
type WorkspaceTransition string

const (
	// WorkspaceTransitionStart creates or starts the workspace.
	WorkspaceTransitionStart WorkspaceTransition = "start"
	// WorkspaceTransitionStop stops the workspace, keeping persistent resources.
	WorkspaceTransitionStop WorkspaceTransition = "stop"
	// WorkspaceTransitionDelete destroys every resource of the workspace.
	WorkspaceTransitionDelete WorkspaceTransition = "delete"
)

// LogLevel is the severity of a provisioner log line.
type LogLevel string

const (
	// LogLevelTrace is the most verbose level.
	LogLevelTrace LogLevel = "trace"
	// LogLevelDebug is for diagnostic detail.
	LogLevelDebug LogLevel = "debug"
	// LogLevelInfo is for normal progress messages.
	LogLevelInfo LogLevel = "info"
	// LogLevelWarn is for warnings that did not stop the job.
	LogLevelWarn LogLevel = "warn"
	// LogLevelError is for errors.
	LogLevelError LogLevel = "error"
)

// ProvisionerJobStatus is the state of a provisioner job.
type ProvisionerJobStatus string

// Provisioner job states.
const (
	ProvisionerJobPending   ProvisionerJobStatus = "pending"
	ProvisionerJobRunning   ProvisionerJobStatus = "running"
	ProvisionerJobSucceeded ProvisionerJobStatus = "succeeded"
	ProvisionerJobCanceling ProvisionerJobStatus = "canceling"
	ProvisionerJobCanceled  ProvisionerJobStatus = "canceled"
	ProvisionerJobFailed    ProvisionerJobStatus = "failed"
)

// Active reports whether a job in this state has not finished yet.
func (s ProvisionerJobStatus) Active() bool {
	return s == ProvisionerJobPending || s == ProvisionerJobRunning || s == ProvisionerJobCanceling
}

// ProvisionerJob is a unit of work run by a provisioner daemon.
type ProvisionerJob struct {
	ID          uuid.UUID            `json:"id"`
	CreatedAt   time.Time            `json:"created_at"`
	StartedAt   *time.Time           `json:"started_at,omitempty"`
	CompletedAt *time.Time           `json:"completed_at,omitempty"`
	CanceledAt  *time.Time           `json:"canceled_at,omitempty"`
	Error       string               `json:"error,omitempty"`
	ErrorCode   string               `json:"error_code,omitempty"`
	Status      ProvisionerJobStatus `json:"status"`
	WorkerID    *uuid.UUID           `json:"worker_id,omitempty"`
	FileID      uuid.UUID            `json:"file_id"`
	Tags        map[string]string    `json:"tags"`
	Type        ProvisionerJobType   `json:"type"`
	// QueuePosition is the 1-based position of a pending job in the queue (0 otherwise).
	QueuePosition int `json:"queue_position"`
	// QueueSize is the number of pending jobs.
	QueueSize int `json:"queue_size"`
	// Detail explains why a pending job is waiting, e.g. that no live provisioner
	// daemon has the job's tags.
	Detail string `json:"detail,omitempty"`
}

// ProvisionerJobLog is a stored log line of a provisioner job.
type ProvisionerJobLog struct {
	ID        int64     `json:"id"`
	CreatedAt time.Time `json:"created_at"`
	Source    string    `json:"log_source"`
	Level     LogLevel  `json:"log_level"`
	Stage     string    `json:"stage"`
	Output    string    `json:"output"`
}

// Template is a workspace template.
type Template struct {
	ID                           uuid.UUID `json:"id"`
	CreatedAt                    time.Time `json:"created_at"`
	UpdatedAt                    time.Time `json:"updated_at"`
	Name                         string    `json:"name"`
	DisplayName                  string    `json:"display_name"`
	Description                  string    `json:"description"`
	Icon                         string    `json:"icon"`
	Provisioner                  string    `json:"provisioner"`
	ActiveVersionID              uuid.UUID `json:"active_version_id"`
	ActiveUserCount              int       `json:"active_user_count"`
	CreatedByID                  uuid.UUID `json:"created_by_id"`
	CreatedByName                string    `json:"created_by_name"`
	DefaultTTLMillis             int64     `json:"default_ttl_ms"`
	AllowUserCancelWorkspaceJobs bool      `json:"allow_user_cancel_workspace_jobs"`
	// RequireActiveVersion makes every start of its workspaces build the
	// active version.
	RequireActiveVersion bool `json:"require_active_version"`
	// TemplateSchedule are the autostop, autostart and dormancy settings.
	TemplateSchedule
}

// CreateTemplateRequest creates a template from an imported template version.
type CreateTemplateRequest struct {
	Name        string    `json:"name"`
	DisplayName string    `json:"display_name,omitempty"`
	Description string    `json:"description,omitempty"`
	Icon        string    `json:"icon,omitempty"`
	VersionID   uuid.UUID `json:"template_version_id"`
	// AllowUserCancelWorkspaceJobs lets workspace owners cancel their
	// running builds (nil: true, as Coder).
	AllowUserCancelWorkspaceJobs *bool `json:"allow_user_cancel_workspace_jobs,omitempty"`
}

// UpdateTemplateMeta changes a template's settings; nil fields are kept.
type UpdateTemplateMeta struct {
	DisplayName                  *string `json:"display_name,omitempty"`
	Description                  *string `json:"description,omitempty"`
	Icon                         *string `json:"icon,omitempty"`
	AllowUserCancelWorkspaceJobs *bool   `json:"allow_user_cancel_workspace_jobs,omitempty"`
	// RequireActiveVersion makes every start build the active version.
	RequireActiveVersion *bool `json:"require_active_version,omitempty"`
	// TemplateScheduleFields are the schedule settings (nil fields kept).
	TemplateScheduleFields
}

// UpdateActiveTemplateVersion promotes a version of a template.
type UpdateActiveTemplateVersion struct {
	ID uuid.UUID `json:"id"`
}

// TemplateVersion is one version of a template's source.
type TemplateVersion struct {
	ID         uuid.UUID      `json:"id"`
	TemplateID *uuid.UUID     `json:"template_id,omitempty"`
	CreatedAt  time.Time      `json:"created_at"`
	UpdatedAt  time.Time      `json:"updated_at"`
	Name       string         `json:"name"`
	Message    string         `json:"message"`
	Job        ProvisionerJob `json:"job"`
	Readme     string         `json:"readme"`
	CreatedBy  MinimalUser    `json:"created_by"`
	// Archived versions are hidden from lists and not used by new builds.
	Archived bool `json:"archived"`
}

// MinimalUser names a user.
type MinimalUser struct {
	ID       uuid.UUID `json:"id"`
	Username string    `json:"username"`
}

// CreateTemplateVersionRequest uploads a new template version (an import job
// is queued). TemplateID may be empty for a version whose template is created
// afterwards.
type CreateTemplateVersionRequest struct {
	TemplateID      uuid.UUID         `json:"template_id,omitempty"`
	Name            string            `json:"name,omitempty"`
	Message         string            `json:"message,omitempty"`
	StorageMethod   string            `json:"storage_method"`
	FileID          uuid.UUID         `json:"file_id"`
	Provisioner     string            `json:"provisioner"`
	ProvisionerTags map[string]string `json:"tags,omitempty"`
	// UserVariableValues are values of the template's Terraform variables.
	UserVariableValues []VariableValue `json:"user_variable_values,omitempty"`
}

// TemplateVersionParameterOption is one option of a list parameter.
type TemplateVersionParameterOption struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Value       string `json:"value"`
	Icon        string `json:"icon"`
}

// TemplateVersionParameter is a rich parameter of a template version.
type TemplateVersionParameter struct {
	Name                string                           `json:"name"`
	DisplayName         string                           `json:"display_name,omitempty"`
	Description         string                           `json:"description"`
	Type                string                           `json:"type"`
	FormType            string                           `json:"form_type,omitempty"`
	Mutable             bool                             `json:"mutable"`
	DefaultValue        string                           `json:"default_value"`
	Icon                string                           `json:"icon"`
	Options             []TemplateVersionParameterOption `json:"options"`
	ValidationError     string                           `json:"validation_error,omitempty"`
	ValidationRegex     string                           `json:"validation_regex,omitempty"`
	ValidationMin       *int32                           `json:"validation_min,omitempty"`
	ValidationMax       *int32                           `json:"validation_max,omitempty"`
	ValidationMonotonic string                           `json:"validation_monotonic,omitempty"`
	Required            bool                             `json:"required"`
	Ephemeral           bool                             `json:"ephemeral"`
}

// WorkspaceBuildParameter is a rich parameter value of a build.
type WorkspaceBuildParameter struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// WorkspaceStatus is a workspace's state, derived from its latest build.
type WorkspaceStatus string

// Workspace states.
const (
	WorkspaceStatusPending   WorkspaceStatus = "pending"
	WorkspaceStatusStarting  WorkspaceStatus = "starting"
	WorkspaceStatusRunning   WorkspaceStatus = "running"
	WorkspaceStatusStopping  WorkspaceStatus = "stopping"
	WorkspaceStatusStopped   WorkspaceStatus = "stopped"
	WorkspaceStatusFailed    WorkspaceStatus = "failed"
	WorkspaceStatusCanceling WorkspaceStatus = "canceling"
	WorkspaceStatusCanceled  WorkspaceStatus = "canceled"
	WorkspaceStatusDeleting  WorkspaceStatus = "deleting"
	WorkspaceStatusDeleted   WorkspaceStatus = "deleted"
)

// WorkspaceResourceMetadata is a metadata item of a resource.
type WorkspaceResourceMetadata struct {
	Key       string `json:"key"`
	Value     string `json:"value"`
	Sensitive bool   `json:"sensitive"`
}

// WorkspaceResource is an infrastructure resource created by a build (or, for
// a template version, one an import found).
type WorkspaceResource struct {
	ID         uuid.UUID                   `json:"id"`
	CreatedAt  time.Time                   `json:"created_at"`
	JobID      uuid.UUID                   `json:"job_id"`
	Transition WorkspaceTransition         `json:"workspace_transition"`
	Type       string                      `json:"type"`
	Name       string                      `json:"name"`
	Hide       bool                        `json:"hide"`
	Icon       string                      `json:"icon"`
	Agents     []WorkspaceAgent            `json:"agents,omitempty"`
	Metadata   []WorkspaceResourceMetadata `json:"metadata,omitempty"`
	DailyCost  int32                       `json:"daily_cost"`
	// Kind says whether an agent runs in the resource (computational) or
	// not (peripheral).
	Kind ResourceKind `json:"kind"`
	// Lifetime says whether the resource survives a stop (persistent) or
	// is destroyed by it (ephemeral), as the parsed Terraform states of the
	// template's stop plan and the workspace's stop builds record it.
	Lifetime ResourceLifetime `json:"lifetime"`
}

// ResourceKind classifies a resource by what runs in it.
type ResourceKind string

// Resource kinds.
const (
	// ResourceKindComputational is a resource an agent runs in (a VM, a container).
	ResourceKindComputational ResourceKind = "computational"
	// ResourceKindPeripheral is any other resource (a volume, a network, a key).
	ResourceKindPeripheral ResourceKind = "peripheral"
)

// ResourceLifetime classifies a resource by whether it survives a stop.
type ResourceLifetime string

// Resource lifetimes.
const (
	// ResourceLifetimePersistent survives a stop (a home volume).
	ResourceLifetimePersistent ResourceLifetime = "persistent"
	// ResourceLifetimeEphemeral is destroyed by a stop and recreated by a start.
	ResourceLifetimeEphemeral ResourceLifetime = "ephemeral"
)

// WorkspaceBuild is one transition of a workspace.
type WorkspaceBuild struct {
	ID                  uuid.UUID           `json:"id"`
	CreatedAt           time.Time           `json:"created_at"`
	UpdatedAt           time.Time           `json:"updated_at"`
	WorkspaceID         uuid.UUID           `json:"workspace_id"`
	WorkspaceName       string              `json:"workspace_name"`
	WorkspaceOwnerID    uuid.UUID           `json:"workspace_owner_id"`
	WorkspaceOwnerName  string              `json:"workspace_owner_name"`
	TemplateVersionID   uuid.UUID           `json:"template_version_id"`
	TemplateVersionName string              `json:"template_version_name"`
	BuildNumber         int32               `json:"build_number"`
	Transition          WorkspaceTransition `json:"transition"`
	InitiatorID         uuid.UUID           `json:"initiator_id"`
	InitiatorUsername   string              `json:"initiator_name"`
	Job                 ProvisionerJob      `json:"job"`
	Reason              string              `json:"reason"`
	Resources           []WorkspaceResource `json:"resources"`
	Deadline            *time.Time          `json:"deadline,omitempty"`
	MaxDeadline         *time.Time          `json:"max_deadline,omitempty"`
	Status              WorkspaceStatus     `json:"status"`
	DailyCost           int32               `json:"daily_cost"`
}

// Workspace is a user's workspace.
type Workspace struct {
	ID                                   uuid.UUID      `json:"id"`
	CreatedAt                            time.Time      `json:"created_at"`
	UpdatedAt                            time.Time      `json:"updated_at"`
	OwnerID                              uuid.UUID      `json:"owner_id"`
	OwnerName                            string         `json:"owner_name"`
	TemplateID                           uuid.UUID      `json:"template_id"`
	TemplateName                         string         `json:"template_name"`
	TemplateDisplayName                  string         `json:"template_display_name"`
	TemplateIcon                         string         `json:"template_icon"`
	TemplateActiveVersionID              uuid.UUID      `json:"template_active_version_id"`
	TemplateAllowUserCancelWorkspaceJobs bool           `json:"template_allow_user_cancel_workspace_jobs"`
	LatestBuild                          WorkspaceBuild `json:"latest_build"`
	Outdated                             bool           `json:"outdated"`
	Name                                 string         `json:"name"`
	AutostartSchedule                    *string        `json:"autostart_schedule,omitempty"`
	TTLMillis                            *int64         `json:"ttl_ms,omitempty"`
	LastUsedAt                           time.Time      `json:"last_used_at"`
	// DormantAt is when the workspace became dormant (nil when it is not).
	DormantAt *time.Time `json:"dormant_at,omitempty"`
	// DeletingAt is when a dormant workspace will be deleted (nil: never).
	DeletingAt *time.Time `json:"deleting_at,omitempty"`
	// Favorite is whether the owner marked the workspace as a favorite.
	Favorite bool `json:"favorite"`
}

// WorkspacesResponse is a list of workspaces.
type WorkspacesResponse struct {
	Workspaces []Workspace `json:"workspaces"`
	Count      int         `json:"count"`
}

// CreateWorkspaceRequest creates a workspace from a template (its active
// version) or a specific template version.
type CreateWorkspaceRequest struct {
	TemplateID          uuid.UUID                 `json:"template_id,omitempty"`
	TemplateVersionID   uuid.UUID                 `json:"template_version_id,omitempty"`
	Name                string                    `json:"name"`
	AutostartSchedule   *string                   `json:"autostart_schedule,omitempty"`
	TTLMillis           *int64                    `json:"ttl_ms,omitempty"`
	RichParameterValues []WorkspaceBuildParameter `json:"rich_parameter_values,omitempty"`
}

// CreateWorkspaceBuildRequest starts, stops or deletes a workspace.
type CreateWorkspaceBuildRequest struct {
	TemplateVersionID   uuid.UUID                 `json:"template_version_id,omitempty"`
	Transition          WorkspaceTransition       `json:"transition"`
	RichParameterValues []WorkspaceBuildParameter `json:"rich_parameter_values,omitempty"`
	// Orphan deletes the workspace without running terraform destroy (for a
	// broken template); its resources are left behind.
	Orphan bool `json:"orphan,omitempty"`
}

// ProvisionerDaemon is a registered provisioner daemon.
type ProvisionerDaemon struct {
	ID               uuid.UUID         `json:"id"`
	CreatedAt        time.Time         `json:"created_at"`
	LastSeenAt       *time.Time        `json:"last_seen_at,omitempty"`
	Name             string            `json:"name"`
	Version          string            `json:"version"`
	TerraformVersion string            `json:"terraform_version"`
	Provisioners     []string          `json:"provisioners"`
	Tags             map[string]string `json:"tags"`
	Status           string            `json:"status"`
}

// Upload stores a tar archive and returns its ID.
func (c *Client) Upload(ctx context.Context, contentType string, content io.Reader) (UploadResponse, error) {
	ref, err := url.Parse("/api/v2/files")
	if err != nil {
		return UploadResponse{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL.ResolveReference(ref).String(), content)
	if err != nil {
		return UploadResponse{}, fmt.Errorf("create upload request: %w", err)
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set(SessionTokenHeader, c.SessionToken())
	res, err := c.httpClient().Do(req)
	if err != nil {
		return UploadResponse{}, fmt.Errorf("upload: %w", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusCreated && res.StatusCode != http.StatusOK {
		return UploadResponse{}, ReadBodyAsError(res)
	}
	var out UploadResponse
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		return UploadResponse{}, fmt.Errorf("decode upload response: %w", err)
	}
	return out, nil
}

// Download returns a stored file's content and content type.
func (c *Client) Download(ctx context.Context, id uuid.UUID) ([]byte, string, error) {
	res, err := c.Request(ctx, http.MethodGet, "/api/v2/files/"+id.String(), nil)
	if err != nil {
		return nil, "", err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, "", ReadBodyAsError(res)
	}
	data, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, "", fmt.Errorf("read file: %w", err)
	}
	return data, res.Header.Get("Content-Type"), nil
}

func (c *Client) httpClient() *http.Client {
	if c.HTTPClient != nil {
		return c.HTTPClient
	}
	return http.DefaultClient
}

// CreateTemplateVersion uploads a template version and queues its import.
func (c *Client) CreateTemplateVersion(ctx context.Context, req CreateTemplateVersionRequest) (TemplateVersion, error) {
	var v TemplateVersion
	err := c.do(ctx, http.MethodPost, "/api/v2/templateversions", req, http.StatusCreated, &v)
	return v, err
}

// TemplateVersion returns a template version.
func (c *Client) TemplateVersion(ctx context.Context, id uuid.UUID) (TemplateVersion, error) {
	var v TemplateVersion
	err := c.do(ctx, http.MethodGet, "/api/v2/templateversions/"+id.String(), nil, http.StatusOK, &v)
	return v, err
}

// TemplateVersionRichParameters returns the rich parameters an import found.
func (c *Client) TemplateVersionRichParameters(ctx context.Context, id uuid.UUID) ([]TemplateVersionParameter, error) {
	var out []TemplateVersionParameter
	err := c.do(ctx, http.MethodGet, "/api/v2/templateversions/"+id.String()+"/rich-parameters", nil, http.StatusOK, &out)
	return out, err
}

// TemplateVersionResources returns the resources an import found.
func (c *Client) TemplateVersionResources(ctx context.Context, id uuid.UUID) ([]WorkspaceResource, error) {
	var out []WorkspaceResource
	err := c.do(ctx, http.MethodGet, "/api/v2/templateversions/"+id.String()+"/resources", nil, http.StatusOK, &out)
	return out, err
}

// CancelTemplateVersion cancels a template version's import job.
func (c *Client) CancelTemplateVersion(ctx context.Context, id uuid.UUID) error {
	return c.do(ctx, http.MethodPatch, "/api/v2/templateversions/"+id.String()+"/cancel", nil, http.StatusOK, nil)
}

// TemplateVersionLogsAfter returns the import job's logs after the given log ID.
// With follow, logs are streamed until the job completes and delivered on the
// returned channel, which is closed at the end (or when ctx is done).
func (c *Client) TemplateVersionLogsAfter(ctx context.Context, id uuid.UUID, after int64, follow bool) (<-chan ProvisionerJobLog, io.Closer, error) {
	return c.jobLogs(ctx, "/api/v2/templateversions/"+id.String()+"/logs", after, follow)
}

// WorkspaceBuildLogsAfter returns a build's logs after the given log ID (see
// TemplateVersionLogsAfter).
func (c *Client) WorkspaceBuildLogsAfter(ctx context.Context, id uuid.UUID, after int64, follow bool) (<-chan ProvisionerJobLog, io.Closer, error) {
	return c.jobLogs(ctx, "/api/v2/workspacebuilds/"+id.String()+"/logs", after, follow)
}

// jobLogs reads a logs endpoint. Without follow the answer is a JSON array;
// with follow it is a server-sent event stream: "event: log" with a
// ProvisionerJobLog as data, then "event: end" when the job completed.
func (c *Client) jobLogs(ctx context.Context, path string, after int64, follow bool) (<-chan ProvisionerJobLog, io.Closer, error) {
	q := url.Values{}
	if after > 0 {
		q.Set("after", strconv.FormatInt(after, 10))
	}
	if follow {
		q.Set("follow", "true")
	}
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	ctx, cancel := context.WithCancel(ctx)
	res, err := c.Request(ctx, http.MethodGet, path, nil)
	if err != nil {
		cancel()
		return nil, nil, err
	}
	if res.StatusCode != http.StatusOK {
		defer cancel()
		defer res.Body.Close()
		return nil, nil, ReadBodyAsError(res)
	}
	ch := make(chan ProvisionerJobLog, 64)
	closer := closeFunc(func() error { cancel(); return nil })
	if !follow {
		defer res.Body.Close()
		defer cancel()
		var logs []ProvisionerJobLog
		if err := json.NewDecoder(res.Body).Decode(&logs); err != nil {
			return nil, nil, fmt.Errorf("decode logs: %w", err)
		}
		for _, l := range logs {
			// A non-follow answer is small enough to buffer fully.
			if len(ch) == cap(ch) {
				grown := make(chan ProvisionerJobLog, 2*cap(ch)+len(logs))
				close(ch)
				for x := range ch {
					grown <- x
				}
				ch = grown
			}
			ch <- l
		}
		close(ch)
		return ch, closer, nil
	}
	go func() {
		defer close(ch)
		defer res.Body.Close()
		defer cancel()
		sc := bufio.NewScanner(res.Body)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		event := ""
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				event = strings.TrimPrefix(line, "event: ")
				if event == "end" {
					return
				}
			case strings.HasPrefix(line, "data: ") && event == "log":
				var l ProvisionerJobLog
				if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &l); err != nil {
					return
				}
				select {
				case ch <- l:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return ch, closer, nil
}

type closeFunc func() error

func (f closeFunc) Close() error { return f() }

// CreateTemplate creates a template from an imported version.
func (c *Client) CreateTemplate(ctx context.Context, req CreateTemplateRequest) (Template, error) {
	var t Template
	err := c.do(ctx, http.MethodPost, "/api/v2/templates", req, http.StatusCreated, &t)
	return t, err
}

// Templates lists templates.
func (c *Client) Templates(ctx context.Context) ([]Template, error) {
	var out []Template
	err := c.do(ctx, http.MethodGet, "/api/v2/templates", nil, http.StatusOK, &out)
	return out, err
}

// TemplateByName returns a template by name (or ID).
func (c *Client) TemplateByName(ctx context.Context, name string) (Template, error) {
	var t Template
	err := c.do(ctx, http.MethodGet, "/api/v2/templates/"+url.PathEscape(name), nil, http.StatusOK, &t)
	return t, err
}

// TemplateVersionsByTemplate lists a template's versions.
func (c *Client) TemplateVersionsByTemplate(ctx context.Context, template string) ([]TemplateVersion, error) {
	var out []TemplateVersion
	err := c.do(ctx, http.MethodGet, "/api/v2/templates/"+url.PathEscape(template)+"/versions", nil, http.StatusOK, &out)
	return out, err
}

// UpdateActiveTemplateVersion promotes a version to be the template's active one.
func (c *Client) UpdateTemplateMeta(ctx context.Context, template string, req UpdateTemplateMeta) (Template, error) {
	var t Template
	err := c.do(ctx, http.MethodPatch, "/api/v2/templates/"+url.PathEscape(template), req, http.StatusOK, &t)
	return t, err
}

// UpdateActiveTemplateVersion promotes a version of a template.
func (c *Client) UpdateActiveTemplateVersion(ctx context.Context, template string, req UpdateActiveTemplateVersion) error {
	return c.do(ctx, http.MethodPatch, "/api/v2/templates/"+url.PathEscape(template)+"/versions", req, http.StatusOK, nil)
}

// CreateWorkspace creates a workspace for a user ("me", name or ID) and queues its first build.
func (c *Client) CreateWorkspace(ctx context.Context, user string, req CreateWorkspaceRequest) (Workspace, error) {
	var w Workspace
	err := c.do(ctx, http.MethodPost, "/api/v2/users/"+url.PathEscape(user)+"/workspaces", req, http.StatusCreated, &w)
	return w, err
}

// Workspaces lists workspaces, optionally of one owner (username, "me" or "" for all visible).
func (c *Client) Workspaces(ctx context.Context, owner string) (WorkspacesResponse, error) {
	path := "/api/v2/workspaces"
	if owner != "" {
		path += "?owner=" + url.QueryEscape(owner)
	}
	var out WorkspacesResponse
	err := c.do(ctx, http.MethodGet, path, nil, http.StatusOK, &out)
	return out, err
}

// Workspace returns a workspace by ID.
func (c *Client) Workspace(ctx context.Context, id uuid.UUID) (Workspace, error) {
	var w Workspace
	err := c.do(ctx, http.MethodGet, "/api/v2/workspaces/"+id.String(), nil, http.StatusOK, &w)
	return w, err
}

// WorkspaceByOwnerAndName returns a workspace by owner and name.
func (c *Client) WorkspaceByOwnerAndName(ctx context.Context, owner, name string) (Workspace, error) {
	var w Workspace
	err := c.do(ctx, http.MethodGet, "/api/v2/users/"+url.PathEscape(owner)+"/workspace/"+url.PathEscape(name), nil, http.StatusOK, &w)
	return w, err
}

// CreateWorkspaceBuild queues a transition of a workspace.
func (c *Client) CreateWorkspaceBuild(ctx context.Context, workspace uuid.UUID, req CreateWorkspaceBuildRequest) (WorkspaceBuild, error) {
	var b WorkspaceBuild
	err := c.do(ctx, http.MethodPost, "/api/v2/workspaces/"+workspace.String()+"/builds", req, http.StatusCreated, &b)
	return b, err
}

// WorkspaceBuild returns a build.
func (c *Client) WorkspaceBuild(ctx context.Context, id uuid.UUID) (WorkspaceBuild, error) {
	var b WorkspaceBuild
	err := c.do(ctx, http.MethodGet, "/api/v2/workspacebuilds/"+id.String(), nil, http.StatusOK, &b)
	return b, err
}

// CancelWorkspaceBuild cancels a build's job.
func (c *Client) CancelWorkspaceBuild(ctx context.Context, id uuid.UUID) error {
	return c.do(ctx, http.MethodPatch, "/api/v2/workspacebuilds/"+id.String()+"/cancel", nil, http.StatusOK, nil)
}

// WorkspaceBuildResources returns the resources of a build.
func (c *Client) WorkspaceBuildResources(ctx context.Context, id uuid.UUID) ([]WorkspaceResource, error) {
	var out []WorkspaceResource
	err := c.do(ctx, http.MethodGet, "/api/v2/workspacebuilds/"+id.String()+"/resources", nil, http.StatusOK, &out)
	return out, err
}

// ProvisionerDaemons lists registered provisioner daemons.
func (c *Client) ProvisionerDaemons(ctx context.Context) ([]ProvisionerDaemon, error) {
	var out []ProvisionerDaemon
	err := c.do(ctx, http.MethodGet, "/api/v2/provisionerdaemons", nil, http.StatusOK, &out)
	return out, err
}
