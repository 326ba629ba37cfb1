-- name: InsertWorkspaceBuild :one
INSERT INTO workspace_builds (
    id, created_at, updated_at, workspace_id, template_version_id, build_number, transition,
    initiator_id, provisioner_state, job_id, deadline, max_deadline, reason, daily_cost
) VALUES (
    @id, @created_at, @updated_at, @workspace_id, @template_version_id, @build_number, @transition,
    @initiator_id, @provisioner_state, @job_id, @deadline, @max_deadline, @reason, @daily_cost
) RETURNING *;

-- name: GetWorkspaceBuildByID :one
SELECT * FROM workspace_builds WHERE id = @id LIMIT 1;

-- name: GetWorkspaceBuildByJobID :one
SELECT * FROM workspace_builds WHERE job_id = @job_id LIMIT 1;

-- name: GetLatestWorkspaceBuildByWorkspaceID :one
SELECT * FROM workspace_builds WHERE workspace_id = @workspace_id ORDER BY build_number DESC LIMIT 1;

-- name: GetLatestWorkspaceBuildsByWorkspaceIDs :many
SELECT DISTINCT ON (workspace_id) * FROM workspace_builds
WHERE workspace_id = ANY(@ids::uuid[])
ORDER BY workspace_id, build_number DESC;

-- name: GetWorkspaceBuildsByWorkspaceID :many
SELECT * FROM workspace_builds WHERE workspace_id = @workspace_id ORDER BY build_number DESC;

-- name: UpdateWorkspaceBuildProvisionerStateByID :exec
UPDATE workspace_builds SET provisioner_state = @provisioner_state, updated_at = @updated_at WHERE id = @id;

-- name: InsertWorkspaceBuildParameter :exec
INSERT INTO workspace_build_parameters (workspace_build_id, name, value) VALUES (@workspace_build_id, @name, @value);

-- name: GetWorkspaceBuildParameters :many
SELECT * FROM workspace_build_parameters WHERE workspace_build_id = @workspace_build_id ORDER BY name ASC;
