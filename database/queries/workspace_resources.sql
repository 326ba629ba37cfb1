-- name: InsertWorkspaceResource :one
INSERT INTO workspace_resources (id, created_at, job_id, transition, type, name, hide, icon, instance_type, daily_cost)
VALUES (@id, @created_at, @job_id, @transition, @type, @name, @hide, @icon, @instance_type, @daily_cost)
RETURNING *;

-- name: GetWorkspaceResourcesByJobID :many
SELECT * FROM workspace_resources WHERE job_id = @job_id ORDER BY type ASC, name ASC;

-- name: GetWorkspaceResourceByID :one
SELECT * FROM workspace_resources WHERE id = @id LIMIT 1;

-- name: InsertWorkspaceResourceMetadata :one
INSERT INTO workspace_resource_metadata (workspace_resource_id, key, value, sensitive)
VALUES (@workspace_resource_id, @key, @value, @sensitive)
RETURNING *;

-- name: GetWorkspaceResourceMetadataByResourceIDs :many
SELECT * FROM workspace_resource_metadata WHERE workspace_resource_id = ANY(@ids::uuid[]) ORDER BY id ASC;

-- name: GetWorkspaceResourcesWithMetadataByJobIDs :many
-- The resources of the given jobs, one row per metadata item (metadata
-- columns NULL for a resource without any), ordered by type, name and
-- metadata ID.
SELECT
    sqlc.embed(r),
    m.id AS metadata_id,
    m.key AS metadata_key,
    m.value AS metadata_value,
    m.sensitive AS metadata_sensitive
FROM workspace_resources r
LEFT JOIN workspace_resource_metadata m ON m.workspace_resource_id = r.id
WHERE r.job_id = ANY(@job_ids::uuid[])
ORDER BY r.type ASC, r.name ASC, r.id ASC, m.id ASC;

-- name: GetPersistentResourceKeysByJobIDs :many
-- For each given job, the type and name of every resource known to survive
-- a stop, as the parsed states record it: resources of the job's own stop
-- transition (template imports plan both), those the stop plan of a
-- build's template version keeps, and those still in the state of any
-- successful stop build of the build's workspace.
SELECT r.job_id AS job_id, r.type, r.name
FROM workspace_resources r
WHERE r.job_id = ANY(@job_ids::uuid[]) AND r.transition = 'stop'
UNION
SELECT b.job_id AS job_id, r.type, r.name
FROM workspace_builds b
JOIN template_versions tv ON tv.id = b.template_version_id
JOIN workspace_resources r ON r.job_id = tv.job_id AND r.transition = 'stop'
WHERE b.job_id = ANY(@job_ids::uuid[])
UNION
SELECT b.job_id AS job_id, r.type, r.name
FROM workspace_builds b
JOIN workspace_builds sb ON sb.workspace_id = b.workspace_id AND sb.transition = 'stop'
JOIN provisioner_jobs j ON j.id = sb.job_id AND j.completed_at IS NOT NULL AND COALESCE(j.error, '') = '' AND j.canceled_at IS NULL
JOIN workspace_resources r ON r.job_id = sb.job_id
WHERE b.job_id = ANY(@job_ids::uuid[]);
