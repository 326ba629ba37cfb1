package codersdk

import (
	"time"

	"github.com/google/uuid"
)

// This file holds the contract between a provisioner daemon and coderd: the jobs a
// daemon acquires, the logs it streams and the results it reports. Everything is
// plain JSON so external daemons speak exactly the same protocol as built-in ones.

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

// ProvisionerLog is one log line produced while running a provisioner job.
type ProvisionerLog struct {
	CreatedAt time.Time `json:"created_at"`
	Level     LogLevel  `json:"log_level"`
	// Stage groups lines in the UI, e.g. "Setting up", "Planning infrastructure",
	// "Starting workspace".
	Stage  string `json:"stage"`
	Output string `json:"output"`
}

// ProvisionerMetadata is the template contract: values passed to Terraform through the
// environment (CODER_WORKSPACE_*, CODER_AGENT_URL, ...) and read by the Coder provider.
type ProvisionerMetadata struct {
	CoderURL                      string              `json:"coder_url"`
	WorkspaceTransition           WorkspaceTransition `json:"workspace_transition"`
	WorkspaceName                 string              `json:"workspace_name"`
	WorkspaceOwner                string              `json:"workspace_owner"`
	WorkspaceOwnerEmail           string              `json:"workspace_owner_email"`
	WorkspaceOwnerName            string              `json:"workspace_owner_name"`
	WorkspaceOwnerID              string              `json:"workspace_owner_id"`
	WorkspaceOwnerGroups          []string            `json:"workspace_owner_groups,omitempty"`
	WorkspaceOwnerSessionToken    string              `json:"workspace_owner_session_token,omitempty"`
	WorkspaceOwnerOIDCAccessToken string              `json:"workspace_owner_oidc_access_token,omitempty"`
	WorkspaceOwnerSSHPublicKey    string              `json:"workspace_owner_ssh_public_key,omitempty"`
	WorkspaceOwnerSSHPrivateKey   string              `json:"workspace_owner_ssh_private_key,omitempty"`
	WorkspaceOwnerLoginType       string              `json:"workspace_owner_login_type,omitempty"`
	WorkspaceID                   string              `json:"workspace_id"`
	WorkspaceBuildID              string              `json:"workspace_build_id"`
	TemplateID                    string              `json:"template_id"`
	TemplateName                  string              `json:"template_name"`
	TemplateVersion               string              `json:"template_version"`
}

// ParameterValue is the value chosen for a rich parameter.
type ParameterValue struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// AcquiredJobWorkspaceBuild is the payload of a workspace_build job.
type AcquiredJobWorkspaceBuild struct {
	WorkspaceBuildID uuid.UUID           `json:"workspace_build_id"`
	Transition       WorkspaceTransition `json:"transition"`
	// State is the Terraform state left by the previous build (empty for the first one).
	State    []byte              `json:"state"`
	Metadata ProvisionerMetadata `json:"metadata"`
}

// AcquiredJobTemplateImport is the payload of a template_version_import job.
type AcquiredJobTemplateImport struct {
	TemplateVersionID uuid.UUID           `json:"template_version_id"`
	Metadata          ProvisionerMetadata `json:"metadata"`
}

// AcquiredJobTemplateDryRun is the payload of a template_version_dry_run job.
type AcquiredJobTemplateDryRun struct {
	TemplateVersionID uuid.UUID           `json:"template_version_id"`
	Metadata          ProvisionerMetadata `json:"metadata"`
}

// AcquiredJob is a job handed to a provisioner daemon. Exactly one of WorkspaceBuild,
// TemplateImport and TemplateDryRun is set, matching Type.
type AcquiredJob struct {
	JobID uuid.UUID          `json:"job_id"`
	Type  ProvisionerJobType `json:"type"`
	// TemplateSourceArchive is the template version's source as a tar archive.
	TemplateSourceArchive []byte                     `json:"template_source_archive"`
	Tags                  map[string]string          `json:"tags,omitempty"`
	ParameterValues       []ParameterValue           `json:"parameter_values,omitempty"`
	WorkspaceBuild        *AcquiredJobWorkspaceBuild `json:"workspace_build,omitempty"`
	TemplateImport        *AcquiredJobTemplateImport `json:"template_import,omitempty"`
	TemplateDryRun        *AcquiredJobTemplateDryRun `json:"template_dry_run,omitempty"`
}

// ProvisionerLogsRequest carries a batch of logs from a daemon for one job.
type ProvisionerLogsRequest struct {
	JobID uuid.UUID        `json:"job_id"`
	Logs  []ProvisionerLog `json:"logs"`
}

// CompletedJob reports a job that succeeded.
type CompletedJob struct {
	JobID uuid.UUID `json:"job_id"`
	// State is the Terraform state after a workspace build (empty after a delete).
	State []byte `json:"state,omitempty"`
	// Resources are those the job created (build) or would create on start (import, dry run).
	Resources []Resource `json:"resources"`
	// StopResources are those that exist while the workspace is stopped (import only).
	StopResources []Resource `json:"stop_resources,omitempty"`
	// Parameters are the template's rich parameters (import only).
	Parameters []RichParameter `json:"parameters,omitempty"`
}

// FailedJob reports a job that failed.
type FailedJob struct {
	JobID     uuid.UUID `json:"job_id"`
	Error     string    `json:"error"`
	ErrorCode string    `json:"error_code,omitempty"`
	// State is the Terraform state after a failed apply, if any resources changed.
	State []byte `json:"state,omitempty"`
}

// ResourceMetadata is one item of a coder_metadata resource attached to a resource.
type ResourceMetadata struct {
	Key       string `json:"key"`
	Value     string `json:"value"`
	Sensitive bool   `json:"sensitive"`
	IsNull    bool   `json:"is_null,omitempty"`
}

// Resource is an infrastructure resource of a workspace. It is computational when
// agents run in it, peripheral otherwise.
type Resource struct {
	Name      string             `json:"name"`
	Type      string             `json:"type"`
	Agents    []Agent            `json:"agents,omitempty"`
	Metadata  []ResourceMetadata `json:"metadata,omitempty"`
	Hide      bool               `json:"hide"`
	Icon      string             `json:"icon,omitempty"`
	DailyCost int32              `json:"daily_cost"`
}

// AgentScript is a script the agent runs (startup, shutdown, or cron).
type AgentScript struct {
	DisplayName      string `json:"display_name"`
	Icon             string `json:"icon,omitempty"`
	Script           string `json:"script"`
	Cron             string `json:"cron,omitempty"`
	RunOnStart       bool   `json:"run_on_start"`
	RunOnStop        bool   `json:"run_on_stop"`
	StartBlocksLogin bool   `json:"start_blocks_login"`
	TimeoutSeconds   int32  `json:"timeout_seconds"`
	LogPath          string `json:"log_path,omitempty"`
}

// Healthcheck is how the agent checks an app is up.
type Healthcheck struct {
	URL       string `json:"url"`
	Interval  int32  `json:"interval"`
	Threshold int32  `json:"threshold"`
}

// AppSharingLevel says who may open an app.
type AppSharingLevel string

const (
	// AppSharingLevelOwner restricts an app to the workspace owner.
	AppSharingLevelOwner AppSharingLevel = "owner"
	// AppSharingLevelAuthenticated allows any signed-in user.
	AppSharingLevelAuthenticated AppSharingLevel = "authenticated"
	// AppSharingLevelPublic allows anyone.
	AppSharingLevelPublic AppSharingLevel = "public"
)

// App is a workspace app (coder_app) served by an agent.
type App struct {
	Slug         string          `json:"slug"`
	DisplayName  string          `json:"display_name"`
	URL          string          `json:"url,omitempty"`
	Command      string          `json:"command,omitempty"`
	Icon         string          `json:"icon,omitempty"`
	Subdomain    bool            `json:"subdomain"`
	SharingLevel AppSharingLevel `json:"sharing_level"`
	Healthcheck  *Healthcheck    `json:"healthcheck,omitempty"`
	External     bool            `json:"external"`
	Hidden       bool            `json:"hidden"`
	Order        int64           `json:"order"`
	OpenIn       string          `json:"open_in,omitempty"`
}

// AgentMetadata is a metadata item the agent collects by running a script periodically.
type AgentMetadata struct {
	Key         string `json:"key"`
	DisplayName string `json:"display_name"`
	Script      string `json:"script"`
	Interval    int64  `json:"interval"`
	Timeout     int64  `json:"timeout"`
	Order       int64  `json:"order"`
}

// DisplayApps are the built-in apps shown for an agent.
type DisplayApps struct {
	VSCode               bool `json:"vscode"`
	VSCodeInsiders       bool `json:"vscode_insiders"`
	WebTerminal          bool `json:"web_terminal"`
	SSHHelper            bool `json:"ssh_helper"`
	PortForwardingHelper bool `json:"port_forwarding_helper"`
}

// Agent is a workspace agent (coder_agent) found in a template's state.
type Agent struct {
	// ID is filled by the provisioner from the provider's resource id; coderd may
	// assign its own.
	ID   string `json:"id"`
	Name string `json:"name"`
	// Token is the agent's auth token, generated by the provider and read from state.
	Token                    string            `json:"token,omitempty"`
	Auth                     string            `json:"auth,omitempty"`
	OperatingSystem          string            `json:"operating_system"`
	Architecture             string            `json:"architecture"`
	Directory                string            `json:"directory,omitempty"`
	Env                      map[string]string `json:"env,omitempty"`
	Scripts                  []AgentScript     `json:"scripts,omitempty"`
	Apps                     []App             `json:"apps,omitempty"`
	Metadata                 []AgentMetadata   `json:"metadata,omitempty"`
	ConnectionTimeoutSeconds int32             `json:"connection_timeout_seconds"`
	TroubleshootingURL       string            `json:"troubleshooting_url,omitempty"`
	MOTDFile                 string            `json:"motd_file,omitempty"`
	DisplayApps              *DisplayApps      `json:"display_apps,omitempty"`
	Order                    int64             `json:"order"`
}

// RichParameterOption is one choice of a list-style rich parameter.
type RichParameterOption struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	Value       string `json:"value"`
	Icon        string `json:"icon,omitempty"`
}

// RichParameter is a template parameter (data.coder_parameter).
type RichParameter struct {
	Name        string `json:"name"`
	DisplayName string `json:"display_name,omitempty"`
	Description string `json:"description,omitempty"`
	// Type is one of string, number, bool, list(string).
	Type                string                `json:"type"`
	FormType            string                `json:"form_type,omitempty"`
	Mutable             bool                  `json:"mutable"`
	DefaultValue        string                `json:"default_value"`
	Icon                string                `json:"icon,omitempty"`
	Options             []RichParameterOption `json:"options,omitempty"`
	Required            bool                  `json:"required"`
	ValidationRegex     string                `json:"validation_regex,omitempty"`
	ValidationError     string                `json:"validation_error,omitempty"`
	ValidationMin       *int32                `json:"validation_min,omitempty"`
	ValidationMax       *int32                `json:"validation_max,omitempty"`
	ValidationMonotonic string                `json:"validation_monotonic,omitempty"`
	Ephemeral           bool                  `json:"ephemeral"`
	Order               int32                 `json:"order"`
}
