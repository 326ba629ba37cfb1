// Package provisionersdk is the provisioner daemon's side of the daemon
// protocol: the jobs a daemon acquires, the logs it streams, the results it
// reports, and the HTTP client that carries them (Client). External daemons
// (`coder provisioner start`) and the server's built-in ones speak exactly
// this protocol; coderd serves it in coderd/provisionerdserver.
//
// The protocol is plain HTTP + JSON under /api/v2/provisionerdaemons,
// authenticated by the pre-shared key header (PSKHeader):
//
//	POST /register                      RegisterRequest -> RegisterResponse
//	POST /{daemon}/acquire              long poll: 200 AcquiredJob, or 204 when no job came in time
//	POST /{daemon}/jobs/{job}/logs      LogsRequest
//	POST /{daemon}/jobs/{job}/heartbeat -> HeartbeatResponse (409 once the job is over)
//	POST /{daemon}/jobs/{job}/complete  CompletedJob
//	POST /{daemon}/jobs/{job}/fail      FailedJob
//
// Types the user API already has are reused where one type serves both
// (codersdk.WorkspaceBuildParameter, codersdk.TemplateVersionParameterOption,
// codersdk.Healthcheck, ...). The daemon keeps its own type where it carries
// something the user API must not expose (agent tokens, script bodies) or
// lacks what coderd assigns (IDs, health); each such type says why.
package provisionersdk

import (
	"time"

	"github.com/google/uuid"

	"github.com/wgmesh/coder/codersdk"
)

// PSKHeader carries the provisioner daemon pre-shared key on every request.
const PSKHeader = "Coder-Provisioner-Daemon-PSK"

// DefaultHeartbeatInterval is how often a daemon heartbeats a running job when
// the server names no interval.
const DefaultHeartbeatInterval = 5 * time.Second

// RegisterRequest announces a daemon.
type RegisterRequest struct {
	Name             string            `json:"name"`
	Tags             map[string]string `json:"tags"`
	Provisioners     []string          `json:"provisioners"`
	Version          string            `json:"version"`
	TerraformFlavor  string            `json:"terraform_flavor"`
	TerraformVersion string            `json:"terraform_version"`
}

// RegisterResponse identifies a registered daemon.
type RegisterResponse struct {
	ID uuid.UUID `json:"id"`
	// Tags are the daemon's effective tags (scope=organization added when unset).
	Tags map[string]string `json:"tags"`
	// HeartbeatIntervalMillis is how often the daemon must heartbeat a running job.
	HeartbeatIntervalMillis int64 `json:"heartbeat_interval_ms"`
}

// HeartbeatResponse answers a heartbeat.
type HeartbeatResponse struct {
	// Canceled is true once a user canceled the job: the daemon interrupts
	// terraform and reports the job failed.
	Canceled bool `json:"canceled"`
}

// Log is one log line produced while running a job. It is not
// codersdk.ProvisionerJobLog: coderd assigns the stored line's ID and source.
type Log struct {
	CreatedAt time.Time         `json:"created_at"`
	Level     codersdk.LogLevel `json:"log_level"`
	// Stage groups lines in the UI, e.g. "Setting up", "Planning infrastructure",
	// "Starting workspace".
	Stage  string `json:"stage"`
	Output string `json:"output"`
}

// LogsRequest carries a batch of logs from a daemon for one job.
type LogsRequest struct {
	JobID uuid.UUID `json:"job_id"`
	Logs  []Log     `json:"logs"`
}

// Metadata is the template contract: values passed to Terraform through the
// environment (CODER_WORKSPACE_*, CODER_AGENT_URL, ...) and read by the Coder
// provider.
type Metadata struct {
	CoderURL                      string                       `json:"coder_url"`
	WorkspaceTransition           codersdk.WorkspaceTransition `json:"workspace_transition"`
	WorkspaceName                 string                       `json:"workspace_name"`
	WorkspaceOwner                string                       `json:"workspace_owner"`
	WorkspaceOwnerEmail           string                       `json:"workspace_owner_email"`
	WorkspaceOwnerName            string                       `json:"workspace_owner_name"`
	WorkspaceOwnerID              string                       `json:"workspace_owner_id"`
	WorkspaceOwnerGroups          []string                     `json:"workspace_owner_groups,omitempty"`
	WorkspaceOwnerSessionToken    string                       `json:"workspace_owner_session_token,omitempty"`
	WorkspaceOwnerOIDCAccessToken string                       `json:"workspace_owner_oidc_access_token,omitempty"`
	WorkspaceOwnerSSHPublicKey    string                       `json:"workspace_owner_ssh_public_key,omitempty"`
	WorkspaceOwnerSSHPrivateKey   string                       `json:"workspace_owner_ssh_private_key,omitempty"`
	WorkspaceOwnerLoginType       string                       `json:"workspace_owner_login_type,omitempty"`
	WorkspaceID                   string                       `json:"workspace_id"`
	WorkspaceBuildID              string                       `json:"workspace_build_id"`
	TemplateID                    string                       `json:"template_id"`
	TemplateName                  string                       `json:"template_name"`
	TemplateVersion               string                       `json:"template_version"`
}

// AcquiredJobWorkspaceBuild is the payload of a workspace_build job.
type AcquiredJobWorkspaceBuild struct {
	WorkspaceBuildID uuid.UUID                    `json:"workspace_build_id"`
	Transition       codersdk.WorkspaceTransition `json:"transition"`
	// State is the Terraform state left by the previous build (empty for the first one).
	State    []byte   `json:"state"`
	Metadata Metadata `json:"metadata"`
}

// AcquiredJobTemplateImport is the payload of a template_version_import job.
type AcquiredJobTemplateImport struct {
	TemplateVersionID uuid.UUID `json:"template_version_id"`
	Metadata          Metadata  `json:"metadata"`
}

// AcquiredJobTemplateDryRun is the payload of a template_version_dry_run job.
type AcquiredJobTemplateDryRun struct {
	TemplateVersionID uuid.UUID `json:"template_version_id"`
	Metadata          Metadata  `json:"metadata"`
}

// AcquiredJob is a job handed to a provisioner daemon. Exactly one of
// WorkspaceBuild, TemplateImport and TemplateDryRun is set, matching Type.
type AcquiredJob struct {
	JobID uuid.UUID                   `json:"job_id"`
	Type  codersdk.ProvisionerJobType `json:"type"`
	// TemplateSourceArchive is the template version's source
	// (provisioner/templatearchive format).
	TemplateSourceArchive []byte            `json:"template_source_archive"`
	Tags                  map[string]string `json:"tags,omitempty"`
	// ParameterValues are the rich parameter values of the build.
	ParameterValues []codersdk.WorkspaceBuildParameter `json:"parameter_values,omitempty"`
	// VariableValues are the values of the template version's Terraform
	// variables given at push (the daemon writes them to a var file in the
	// job directory; they are never logged).
	VariableValues []codersdk.VariableValue `json:"variable_values,omitempty"`
	// InheritedVariableValues (imports only) are values the new version kept
	// from the template's active version; unlike VariableValues, one the
	// template no longer declares is not an error.
	InheritedVariableValues []codersdk.VariableValue   `json:"inherited_variable_values,omitempty"`
	WorkspaceBuild          *AcquiredJobWorkspaceBuild `json:"workspace_build,omitempty"`
	TemplateImport          *AcquiredJobTemplateImport `json:"template_import,omitempty"`
	TemplateDryRun          *AcquiredJobTemplateDryRun `json:"template_dry_run,omitempty"`
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
	// Variables are the template's Terraform variable blocks (import only).
	Variables []TemplateVariable `json:"variables,omitempty"`
}

// TemplateVariable is a Terraform variable block as an import finds it.
// Its value is not here: coderd has it from the push.
type TemplateVariable struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	// Type is guessed from the default (terraform show does not report
	// variable types): string, number, bool, list, map, or "".
	Type         string `json:"type"`
	DefaultValue string `json:"default_value"`
	Required     bool   `json:"required"`
	Sensitive    bool   `json:"sensitive"`
}

// FailedJob reports a job that failed.
type FailedJob struct {
	JobID     uuid.UUID `json:"job_id"`
	Error     string    `json:"error"`
	ErrorCode string    `json:"error_code,omitempty"`
	// State is the Terraform state after a failed apply, if any resources changed.
	State []byte `json:"state,omitempty"`
}

// StateRequest carries the Terraform state a workspace build has produced so
// far. A daemon sends it while terraform applies, so that the resources a
// build created are known to coderd (and destroyed by the next delete) even
// if the daemon dies before the build ends.
type StateRequest struct {
	JobID uuid.UUID `json:"job_id"`
	State []byte    `json:"state"`
}

// RichParameter is a template parameter (data.coder_parameter) as an import
// finds it: the user API's codersdk.TemplateVersionParameter plus its display
// order, which coderd stores and sorts by but does not expose.
type RichParameter struct {
	codersdk.TemplateVersionParameter
	// Order is the parameter's display order (0: keep the template's order).
	Order int32 `json:"order"`
}

// ResourceMetadata is one item of a coder_metadata resource: the user API's
// codersdk.WorkspaceResourceMetadata plus IsNull, which tells a null value
// from an empty one for storage.
type ResourceMetadata struct {
	codersdk.WorkspaceResourceMetadata
	IsNull bool `json:"is_null,omitempty"`
}

// Resource is an infrastructure resource found in a plan or state. It is
// computational when agents run in it, peripheral otherwise. It is not
// codersdk.WorkspaceResource: coderd assigns IDs, job and transition, and the
// agents here carry their tokens.
type Resource struct {
	Name      string             `json:"name"`
	Type      string             `json:"type"`
	Agents    []Agent            `json:"agents,omitempty"`
	Metadata  []ResourceMetadata `json:"metadata,omitempty"`
	Hide      bool               `json:"hide"`
	Icon      string             `json:"icon,omitempty"`
	DailyCost int32              `json:"daily_cost"`
}

// Agent is a workspace agent (coder_agent) found in a plan or state. It is not
// codersdk.WorkspaceAgent: it carries the agent's auth token (which coderd
// stores hashed and never returns) and the script bodies, and has none of the
// connection state coderd tracks.
type Agent struct {
	// ID is the provider's resource id; coderd assigns its own.
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

// AgentScript is a script the agent runs (startup, shutdown, or cron). It is
// not agentsdk.Script: coderd assigns the script and log source IDs the
// agent's manifest carries, and the icon belongs to the log source.
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

// AgentMetadata is a metadata item the agent collects by running a script
// periodically: the user API's codersdk.WorkspaceAgentMetadataDescription plus
// its display order, which coderd stores and sorts by.
type AgentMetadata struct {
	codersdk.WorkspaceAgentMetadataDescription
	// Order is the item's display order (0: keep the template's order).
	Order int64 `json:"order"`
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

// App is a workspace app (coder_app) served by an agent. It is not
// codersdk.WorkspaceApp: coderd assigns the ID and tracks health, and the
// display order and open_in hint are stored, not returned.
type App struct {
	Slug         string                `json:"slug"`
	DisplayName  string                `json:"display_name"`
	URL          string                `json:"url,omitempty"`
	Command      string                `json:"command,omitempty"`
	Icon         string                `json:"icon,omitempty"`
	Subdomain    bool                  `json:"subdomain"`
	SharingLevel AppSharingLevel       `json:"sharing_level"`
	Healthcheck  *codersdk.Healthcheck `json:"healthcheck,omitempty"`
	External     bool                  `json:"external"`
	Hidden       bool                  `json:"hidden"`
	Order        int64                 `json:"order"`
	OpenIn       string                `json:"open_in,omitempty"`
}

// DisplayApps are the built-in apps (coder_agent display_apps) shown for an
// agent; coderd stores them with the agent.
type DisplayApps struct {
	VSCode               bool `json:"vscode"`
	VSCodeInsiders       bool `json:"vscode_insiders"`
	WebTerminal          bool `json:"web_terminal"`
	SSHHelper            bool `json:"ssh_helper"`
	PortForwardingHelper bool `json:"port_forwarding_helper"`
}
