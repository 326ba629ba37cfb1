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
