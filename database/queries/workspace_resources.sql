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
