-- name: InsertWorkspaceAgent :one
INSERT INTO workspace_agents (
    id, created_at, updated_at, name, resource_id, auth_token_hash, auth_instance_id,
    architecture, operating_system, directory, environment_variables, resource_metadata,
    connection_timeout_seconds, troubleshooting_url, motd_file, display_apps, display_order
) VALUES (
    @id, @created_at, @updated_at, @name, @resource_id, @auth_token_hash, @auth_instance_id,
    @architecture, @operating_system, @directory, @environment_variables, @resource_metadata,
    @connection_timeout_seconds, @troubleshooting_url, @motd_file, @display_apps, @display_order
) RETURNING *;

-- name: GetWorkspaceAgentByID :one
SELECT * FROM workspace_agents WHERE id = @id LIMIT 1;

-- name: GetWorkspaceAgentByAuthTokenHash :one
-- The newest agent with this token (a token can outlive a build).
SELECT * FROM workspace_agents WHERE auth_token_hash = @auth_token_hash ORDER BY created_at DESC LIMIT 1;

-- name: GetWorkspaceAgentAuthByTokenHash :one
-- The newest agent with this token and where it stands: its workspace
-- (deleted or not), the number of the build it belongs to, and the
-- workspace's latest build (number, and whether its job has completed).
-- No row: the token is unknown or its agent belongs to no workspace build.
SELECT
    sqlc.embed(a),
    w.id AS workspace_id,
    w.deleted AS workspace_deleted,
    b.build_number AS agent_build_number,
    lb.build_number AS latest_build_number,
    (lj.completed_at IS NOT NULL)::boolean AS latest_build_completed
FROM workspace_agents a
JOIN workspace_resources r ON r.id = a.resource_id
JOIN workspace_builds b ON b.job_id = r.job_id
JOIN workspaces w ON w.id = b.workspace_id
JOIN LATERAL (
    SELECT lb.build_number, lb.job_id FROM workspace_builds lb
    WHERE lb.workspace_id = w.id ORDER BY lb.build_number DESC LIMIT 1
) lb ON true
JOIN provisioner_jobs lj ON lj.id = lb.job_id
WHERE a.auth_token_hash = @auth_token_hash
ORDER BY a.created_at DESC
LIMIT 1;

-- name: GetWorkspaceAgentsByResourceIDs :many
SELECT * FROM workspace_agents WHERE resource_id = ANY(@ids::uuid[]) ORDER BY display_order ASC, name ASC;

-- name: GetWorkspaceAgentsWithScriptsByResourceIDs :many
-- The agents of the given resources, one row per script (script columns
-- NULL for an agent without any), ordered like GetWorkspaceAgentsByResourceIDs
-- and GetWorkspaceAgentScriptsByAgentIDs.
SELECT
    sqlc.embed(a),
    s.id AS script_id,
    s.log_source_id AS script_log_source_id,
    s.log_path AS script_log_path,
    s.created_at AS script_created_at,
    s.script AS script_script,
    s.cron AS script_cron,
    s.start_blocks_login AS script_start_blocks_login,
    s.run_on_start AS script_run_on_start,
    s.run_on_stop AS script_run_on_stop,
    s.timeout_seconds AS script_timeout_seconds,
    s.display_name AS script_display_name
FROM workspace_agents a
LEFT JOIN workspace_agent_scripts s ON s.workspace_agent_id = a.id
WHERE a.resource_id = ANY(@resource_ids::uuid[])
ORDER BY a.display_order ASC, a.name ASC, a.id ASC, s.created_at ASC, s.id ASC;

-- name: GetWorkspaceAgentsInLatestBuildByWorkspaceID :many
SELECT a.* FROM workspace_agents a
JOIN workspace_resources r ON r.id = a.resource_id
JOIN workspace_builds b ON b.job_id = r.job_id
WHERE b.workspace_id = @workspace_id
  AND b.build_number = (SELECT max(build_number) FROM workspace_builds WHERE workspace_id = @workspace_id)
ORDER BY a.display_order ASC, a.name ASC;

-- name: UpdateWorkspaceAgentConnectionByID :exec
UPDATE workspace_agents SET
    first_connected_at = @first_connected_at,
    last_connected_at = @last_connected_at,
    last_connected_replica_id = @last_connected_replica_id,
    disconnected_at = @disconnected_at,
    updated_at = @updated_at
WHERE id = @id;

-- name: UpdateWorkspaceAgentLifecycleStateByID :exec
UPDATE workspace_agents SET lifecycle_state = @lifecycle_state, started_at = @started_at, ready_at = @ready_at
WHERE id = @id;

-- name: UpdateWorkspaceAgentStartupByID :exec
UPDATE workspace_agents SET version = @version, expanded_directory = @expanded_directory,
    subsystems = @subsystems, api_version = @api_version
WHERE id = @id;

-- name: UpdateWorkspaceAgentLogOverflowByID :exec
UPDATE workspace_agents SET logs_overflowed = @logs_overflowed WHERE id = @id;

-- name: InsertWorkspaceAgentLogSources :many
INSERT INTO workspace_agent_log_sources (workspace_agent_id, created_at, id, display_name, icon)
SELECT @workspace_agent_id::uuid, @created_at::timestamptz,
    unnest(@id::uuid[]), unnest(@display_name::varchar(127)[]), unnest(@icon::text[])
RETURNING *;

-- name: GetWorkspaceAgentLogSourcesByAgentIDs :many
SELECT * FROM workspace_agent_log_sources WHERE workspace_agent_id = ANY(@ids::uuid[]) ORDER BY created_at ASC, id ASC;

-- name: InsertWorkspaceAgentScripts :many
INSERT INTO workspace_agent_scripts (
    workspace_agent_id, created_at, id, log_source_id, log_path, script, cron,
    start_blocks_login, run_on_start, run_on_stop, timeout_seconds, display_name
)
SELECT @workspace_agent_id::uuid, @created_at::timestamptz,
    unnest(@id::uuid[]), unnest(@log_source_id::uuid[]), unnest(@log_path::text[]),
    unnest(@script::text[]), unnest(@cron::text[]), unnest(@start_blocks_login::boolean[]),
    unnest(@run_on_start::boolean[]), unnest(@run_on_stop::boolean[]),
    unnest(@timeout_seconds::integer[]), unnest(@display_name::text[])
RETURNING *;

-- name: GetWorkspaceAgentScriptsByAgentIDs :many
SELECT * FROM workspace_agent_scripts WHERE workspace_agent_id = ANY(@ids::uuid[]) ORDER BY created_at ASC, id ASC;

-- name: InsertWorkspaceAgentMetadata :exec
INSERT INTO workspace_agent_metadata (workspace_agent_id, display_name, key, script, timeout, interval, display_order)
VALUES (@workspace_agent_id, @display_name, @key, @script, @timeout, @interval, @display_order);

-- name: GetWorkspaceAgentMetadata :many
SELECT * FROM workspace_agent_metadata WHERE workspace_agent_id = @workspace_agent_id
ORDER BY display_order ASC, key ASC;

-- name: UpdateWorkspaceAgentMetadata :exec
-- Stores the latest collected value of each given key.
UPDATE workspace_agent_metadata AS m SET
    value = u.value, error = u.error, collected_at = u.collected_at
FROM (
    SELECT unnest(@key::varchar(127)[]) AS key,
        unnest(@value::varchar(65535)[]) AS value,
        unnest(@error::varchar(65535)[]) AS error,
        unnest(@collected_at::timestamptz[]) AS collected_at
) AS u
WHERE m.workspace_agent_id = @workspace_agent_id AND m.key = u.key;

-- name: InsertWorkspaceAgentLogs :many
INSERT INTO workspace_agent_logs (agent_id, created_at, output, level, log_source_id)
SELECT @agent_id::uuid, unnest(@created_at::timestamptz[]), unnest(@output::varchar(1024)[]),
    unnest(@level::text[])::workspace_agent_log_level, @log_source_id::uuid
RETURNING *;

-- name: GetWorkspaceAgentLogsAfter :many
SELECT * FROM workspace_agent_logs WHERE agent_id = @agent_id AND id > @created_after ORDER BY id ASC;

-- name: UpdateWorkspaceAgentLogsLength :exec
UPDATE workspace_agents SET logs_length = logs_length + @output_length WHERE id = @id;

-- name: UpdateWorkspaceAgentSSHHostKeyByID :exec
UPDATE workspace_agents SET ssh_host_key = @ssh_host_key WHERE id = @id;
