-- Provisioning: files, templates, provisioner jobs and daemons, workspaces,
-- builds, and what builds create (resources, agents, apps, scripts, logs).

CREATE TYPE provisioner_type AS ENUM ('terraform');

CREATE TYPE provisioner_storage_method AS ENUM ('file');

CREATE TYPE provisioner_job_type AS ENUM ('template_version_import', 'workspace_build', 'template_version_dry_run');

CREATE TYPE log_level AS ENUM ('trace', 'debug', 'info', 'warn', 'error');

CREATE TYPE log_source AS ENUM ('provisioner_daemon', 'provisioner');

CREATE TYPE workspace_transition AS ENUM ('start', 'stop', 'delete');

CREATE TYPE build_reason AS ENUM ('initiator', 'autostart', 'autostop');

CREATE TYPE workspace_agent_lifecycle_state AS ENUM (
    'created', 'starting', 'start_timeout', 'start_error', 'ready',
    'shutting_down', 'shutdown_timeout', 'shutdown_error', 'off'
);

CREATE TYPE app_sharing_level AS ENUM ('owner', 'authenticated', 'public');

CREATE TYPE workspace_app_health AS ENUM ('disabled', 'initializing', 'healthy', 'unhealthy');

CREATE TYPE workspace_agent_log_level AS ENUM ('trace', 'debug', 'info', 'warn', 'error');

CREATE TABLE files (
    id uuid PRIMARY KEY,
    hash text NOT NULL,
    created_at timestamptz NOT NULL,
    created_by uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    mimetype varchar(64) NOT NULL,
    data bytea NOT NULL,
    CONSTRAINT files_hash_created_by_key UNIQUE (hash, created_by)
);

COMMENT ON COLUMN files.hash IS 'Hex SHA-256 of data.';

CREATE TABLE provisioner_daemons (
    id uuid PRIMARY KEY,
    created_at timestamptz NOT NULL,
    name varchar(64) NOT NULL,
    provisioners text[] NOT NULL,
    tags jsonb NOT NULL DEFAULT '{}',
    version text NOT NULL DEFAULT '',
    terraform_version text NOT NULL DEFAULT '',
    last_seen_at timestamptz,
    key_id uuid
);

CREATE UNIQUE INDEX provisioner_daemons_name_idx ON provisioner_daemons (lower(name));

CREATE TABLE provisioner_jobs (
    id uuid PRIMARY KEY,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    started_at timestamptz,
    canceled_at timestamptz,
    completed_at timestamptz,
    error text,
    error_code text,
    initiator_id uuid NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
    provisioner provisioner_type NOT NULL,
    storage_method provisioner_storage_method NOT NULL,
    type provisioner_job_type NOT NULL,
    input jsonb NOT NULL,
    file_id uuid NOT NULL REFERENCES files (id) ON DELETE RESTRICT,
    tags jsonb NOT NULL DEFAULT '{}',
    worker_id uuid REFERENCES provisioner_daemons (id) ON DELETE SET NULL,
    heartbeat_at timestamptz,
    trace_metadata jsonb
);

COMMENT ON COLUMN provisioner_jobs.heartbeat_at IS 'Last heartbeat of the daemon running the job; a lapsed heartbeat fails the job.';

CREATE INDEX provisioner_jobs_pending_idx ON provisioner_jobs (created_at) WHERE started_at IS NULL;

CREATE TABLE provisioner_job_logs (
    id bigserial PRIMARY KEY,
    job_id uuid NOT NULL REFERENCES provisioner_jobs (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL,
    source log_source NOT NULL,
    level log_level NOT NULL,
    stage varchar(128) NOT NULL,
    output varchar(1024) NOT NULL
);

CREATE INDEX provisioner_job_logs_job_id_id_idx ON provisioner_job_logs (job_id, id);

CREATE TABLE templates (
    id uuid PRIMARY KEY,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    deleted boolean NOT NULL DEFAULT false,
    name varchar(64) NOT NULL,
    display_name varchar(64) NOT NULL DEFAULT '',
    description varchar(128) NOT NULL DEFAULT '',
    icon varchar(256) NOT NULL DEFAULT '',
    provisioner provisioner_type NOT NULL,
    active_version_id uuid NOT NULL,
    created_by uuid NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
    default_ttl bigint NOT NULL DEFAULT 0,
    allow_user_cancel_workspace_jobs boolean NOT NULL DEFAULT true
);

CREATE UNIQUE INDEX templates_name_lower_idx ON templates (lower(name)) WHERE deleted = false;

CREATE TABLE template_versions (
    id uuid PRIMARY KEY,
    template_id uuid REFERENCES templates (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    name varchar(64) NOT NULL,
    message varchar(1048576) NOT NULL DEFAULT '',
    readme varchar(1048576) NOT NULL DEFAULT '',
    job_id uuid NOT NULL REFERENCES provisioner_jobs (id) ON DELETE CASCADE,
    created_by uuid NOT NULL REFERENCES users (id) ON DELETE RESTRICT
);

CREATE UNIQUE INDEX template_versions_template_id_name_idx ON template_versions (template_id, lower(name));

ALTER TABLE templates ADD CONSTRAINT templates_active_version_id_fkey
    FOREIGN KEY (active_version_id) REFERENCES template_versions (id) DEFERRABLE INITIALLY DEFERRED;

CREATE TABLE template_version_parameters (
    template_version_id uuid NOT NULL REFERENCES template_versions (id) ON DELETE CASCADE,
    name text NOT NULL,
    description text NOT NULL DEFAULT '',
    type text NOT NULL,
    mutable boolean NOT NULL,
    default_value text NOT NULL,
    icon text NOT NULL DEFAULT '',
    options jsonb NOT NULL DEFAULT '[]',
    validation_regex text NOT NULL DEFAULT '',
    validation_min integer,
    validation_max integer,
    validation_error text NOT NULL DEFAULT '',
    validation_monotonic text NOT NULL DEFAULT '',
    required boolean NOT NULL DEFAULT true,
    display_name text NOT NULL DEFAULT '',
    display_order integer NOT NULL DEFAULT 0,
    ephemeral boolean NOT NULL DEFAULT false,
    form_type text NOT NULL DEFAULT '',
    PRIMARY KEY (template_version_id, name)
);

CREATE TABLE workspaces (
    id uuid PRIMARY KEY,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    owner_id uuid NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
    template_id uuid NOT NULL REFERENCES templates (id) ON DELETE RESTRICT,
    deleted boolean NOT NULL DEFAULT false,
    name varchar(64) NOT NULL,
    autostart_schedule text,
    ttl bigint,
    last_used_at timestamptz NOT NULL DEFAULT '0001-01-01 00:00:00+00',
    dormant_at timestamptz,
    deleting_at timestamptz,
    automatic_updates text NOT NULL DEFAULT 'never'
);

CREATE UNIQUE INDEX workspaces_owner_id_lower_name_idx ON workspaces (owner_id, lower(name)) WHERE deleted = false;

CREATE INDEX workspaces_template_id_idx ON workspaces (template_id);

CREATE TABLE workspace_builds (
    id uuid PRIMARY KEY,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    workspace_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    template_version_id uuid NOT NULL REFERENCES template_versions (id) ON DELETE CASCADE,
    build_number integer NOT NULL,
    transition workspace_transition NOT NULL,
    initiator_id uuid NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
    provisioner_state bytea,
    job_id uuid NOT NULL UNIQUE REFERENCES provisioner_jobs (id) ON DELETE CASCADE,
    deadline timestamptz NOT NULL DEFAULT '0001-01-01 00:00:00+00',
    max_deadline timestamptz NOT NULL DEFAULT '0001-01-01 00:00:00+00',
    reason build_reason NOT NULL DEFAULT 'initiator',
    daily_cost integer NOT NULL DEFAULT 0,
    CONSTRAINT workspace_builds_workspace_id_build_number_key UNIQUE (workspace_id, build_number)
);

COMMENT ON COLUMN workspace_builds.provisioner_state IS 'Terraform state after this build; handed to the next build of the workspace.';

CREATE TABLE workspace_build_parameters (
    workspace_build_id uuid NOT NULL REFERENCES workspace_builds (id) ON DELETE CASCADE,
    name text NOT NULL,
    value text NOT NULL,
    PRIMARY KEY (workspace_build_id, name)
);

CREATE TABLE workspace_resources (
    id uuid PRIMARY KEY,
    created_at timestamptz NOT NULL,
    job_id uuid NOT NULL REFERENCES provisioner_jobs (id) ON DELETE CASCADE,
    transition workspace_transition NOT NULL,
    type varchar(192) NOT NULL,
    name varchar(64) NOT NULL,
    hide boolean NOT NULL DEFAULT false,
    icon varchar(256) NOT NULL DEFAULT '',
    instance_type varchar(256),
    daily_cost integer NOT NULL DEFAULT 0
);

CREATE INDEX workspace_resources_job_id_idx ON workspace_resources (job_id);

CREATE TABLE workspace_resource_metadata (
    id bigserial PRIMARY KEY,
    workspace_resource_id uuid NOT NULL REFERENCES workspace_resources (id) ON DELETE CASCADE,
    key varchar(1024) NOT NULL,
    value varchar(65536),
    sensitive boolean NOT NULL DEFAULT false,
    CONSTRAINT workspace_resource_metadata_key_idx UNIQUE (workspace_resource_id, key)
);

CREATE TABLE workspace_agents (
    id uuid PRIMARY KEY,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    name varchar(64) NOT NULL,
    resource_id uuid NOT NULL REFERENCES workspace_resources (id) ON DELETE CASCADE,
    auth_token_hash bytea NOT NULL,
    auth_instance_id varchar,
    architecture varchar(64) NOT NULL,
    operating_system varchar(64) NOT NULL,
    directory varchar(4096) NOT NULL DEFAULT '',
    expanded_directory varchar(4096) NOT NULL DEFAULT '',
    environment_variables jsonb,
    instance_metadata jsonb,
    resource_metadata jsonb,
    version text NOT NULL DEFAULT '',
    api_version text NOT NULL DEFAULT '',
    connection_timeout_seconds integer NOT NULL DEFAULT 0,
    troubleshooting_url text NOT NULL DEFAULT '',
    motd_file text NOT NULL DEFAULT '',
    first_connected_at timestamptz,
    last_connected_at timestamptz,
    disconnected_at timestamptz,
    last_connected_replica_id uuid,
    lifecycle_state workspace_agent_lifecycle_state NOT NULL DEFAULT 'created',
    started_at timestamptz,
    ready_at timestamptz,
    subsystems text[] NOT NULL DEFAULT '{}',
    display_apps jsonb NOT NULL DEFAULT '{}',
    display_order integer NOT NULL DEFAULT 0,
    logs_length integer NOT NULL DEFAULT 0,
    logs_overflowed boolean NOT NULL DEFAULT false
);

COMMENT ON COLUMN workspace_agents.auth_token_hash IS 'SHA-256 of the agent token (the UUID string the provider generated); the token itself is never stored. Not unique: consecutive builds may keep an agent resource and its token.';

CREATE INDEX workspace_agents_auth_token_hash_idx ON workspace_agents (auth_token_hash);

CREATE INDEX workspace_agents_resource_id_idx ON workspace_agents (resource_id);

CREATE TABLE workspace_agent_log_sources (
    id uuid NOT NULL,
    workspace_agent_id uuid NOT NULL REFERENCES workspace_agents (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL,
    display_name varchar(127) NOT NULL,
    icon text NOT NULL DEFAULT '',
    PRIMARY KEY (workspace_agent_id, id)
);

CREATE TABLE workspace_agent_scripts (
    id uuid PRIMARY KEY,
    workspace_agent_id uuid NOT NULL REFERENCES workspace_agents (id) ON DELETE CASCADE,
    log_source_id uuid NOT NULL,
    log_path text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL,
    script text NOT NULL,
    cron text NOT NULL DEFAULT '',
    start_blocks_login boolean NOT NULL DEFAULT false,
    run_on_start boolean NOT NULL DEFAULT false,
    run_on_stop boolean NOT NULL DEFAULT false,
    timeout_seconds integer NOT NULL DEFAULT 0,
    display_name text NOT NULL DEFAULT '',
    FOREIGN KEY (workspace_agent_id, log_source_id) REFERENCES workspace_agent_log_sources (workspace_agent_id, id) ON DELETE CASCADE
);

CREATE INDEX workspace_agent_scripts_agent_idx ON workspace_agent_scripts (workspace_agent_id);

CREATE TABLE workspace_agent_metadata (
    workspace_agent_id uuid NOT NULL REFERENCES workspace_agents (id) ON DELETE CASCADE,
    display_name varchar(127) NOT NULL,
    key varchar(127) NOT NULL,
    script varchar(65535) NOT NULL,
    value varchar(65535) NOT NULL DEFAULT '',
    error varchar(65535) NOT NULL DEFAULT '',
    timeout bigint NOT NULL,
    interval bigint NOT NULL,
    collected_at timestamptz NOT NULL DEFAULT '0001-01-01 00:00:00+00',
    display_order integer NOT NULL DEFAULT 0,
    PRIMARY KEY (workspace_agent_id, key)
);

CREATE TABLE workspace_agent_logs (
    id bigserial PRIMARY KEY,
    agent_id uuid NOT NULL REFERENCES workspace_agents (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL,
    output varchar(1024) NOT NULL,
    level workspace_agent_log_level NOT NULL DEFAULT 'info',
    log_source_id uuid NOT NULL
);

CREATE INDEX workspace_agent_logs_agent_id_id_idx ON workspace_agent_logs (agent_id, id);

CREATE TABLE workspace_apps (
    id uuid PRIMARY KEY,
    created_at timestamptz NOT NULL,
    agent_id uuid NOT NULL REFERENCES workspace_agents (id) ON DELETE CASCADE,
    slug text NOT NULL,
    display_name varchar(64) NOT NULL,
    icon varchar(256) NOT NULL DEFAULT '',
    command varchar(65534),
    url varchar(65534),
    subdomain boolean NOT NULL DEFAULT false,
    sharing_level app_sharing_level NOT NULL DEFAULT 'owner',
    healthcheck_url text NOT NULL DEFAULT '',
    healthcheck_interval integer NOT NULL DEFAULT 0,
    healthcheck_threshold integer NOT NULL DEFAULT 0,
    health workspace_app_health NOT NULL DEFAULT 'disabled',
    external boolean NOT NULL DEFAULT false,
    hidden boolean NOT NULL DEFAULT false,
    display_order integer NOT NULL DEFAULT 0,
    open_in text NOT NULL DEFAULT 'slim-window',
    CONSTRAINT workspace_apps_agent_id_slug_idx UNIQUE (agent_id, slug)
);
