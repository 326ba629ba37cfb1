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

-- name: GetWorkspaceBuildsWithDetails :many
-- The builds named by build_ids plus the latest build of each workspace in
-- latest_of, each with what its API shape needs besides resources: its job
-- with the queue figures of GetProvisionerJobsWithQueueByIDs, its template
-- version's name, its initiator's and its workspace owner's usernames, and
-- its workspace's template. Names of rows since deleted are empty.
SELECT
    sqlc.embed(b),
    sqlc.embed(j),
    CASE WHEN j.started_at IS NULL AND j.canceled_at IS NULL AND j.completed_at IS NULL THEN
        (SELECT count(*) FROM provisioner_jobs p WHERE p.started_at IS NULL AND p.canceled_at IS NULL
            AND (p.created_at, p.id) <= (j.created_at, j.id))
    ELSE 0 END::bigint AS queue_position,
    CASE WHEN j.started_at IS NULL AND j.canceled_at IS NULL AND j.completed_at IS NULL THEN
        (SELECT count(*) FROM provisioner_jobs p WHERE p.started_at IS NULL AND p.canceled_at IS NULL)
    ELSE 0 END::bigint AS queue_size,
    CASE WHEN j.started_at IS NULL AND j.canceled_at IS NULL AND j.completed_at IS NULL THEN
        (SELECT count(*) FROM provisioner_daemons d WHERE d.last_seen_at >= @live_since::timestamptz AND j.tags <@ d.tags)
    ELSE 0 END::bigint AS live_daemons,
    COALESCE(tv.name, '')::text AS template_version_name,
    COALESCE(initiator.username, '')::text AS initiator_username,
    COALESCE(owner.username, '')::text AS owner_username,
    sqlc.embed(t)
FROM workspace_builds b
JOIN provisioner_jobs j ON j.id = b.job_id
JOIN workspaces w ON w.id = b.workspace_id
JOIN templates t ON t.id = w.template_id
LEFT JOIN template_versions tv ON tv.id = b.template_version_id
LEFT JOIN users initiator ON initiator.id = b.initiator_id
LEFT JOIN users owner ON owner.id = w.owner_id
WHERE b.id = ANY(@build_ids::uuid[])
   OR b.id IN (
       SELECT DISTINCT ON (l.workspace_id) l.id FROM workspace_builds l
       WHERE l.workspace_id = ANY(@latest_of::uuid[])
       ORDER BY l.workspace_id, l.build_number DESC
   )
ORDER BY b.workspace_id, b.build_number DESC;

-- name: GetWorkspaceBuildsByWorkspaceID :many
SELECT * FROM workspace_builds WHERE workspace_id = @workspace_id ORDER BY build_number DESC;

-- name: UpdateWorkspaceBuildProvisionerStateByID :exec
UPDATE workspace_builds SET provisioner_state = @provisioner_state, updated_at = @updated_at WHERE id = @id;

-- name: InsertWorkspaceBuildParameter :exec
INSERT INTO workspace_build_parameters (workspace_build_id, name, value) VALUES (@workspace_build_id, @name, @value);

-- name: GetWorkspaceBuildParameters :many
SELECT * FROM workspace_build_parameters WHERE workspace_build_id = @workspace_build_id ORDER BY name ASC;
