-- name: InsertWorkspace :one
INSERT INTO workspaces (id, created_at, updated_at, owner_id, template_id, name, autostart_schedule, ttl, automatic_updates)
VALUES (@id, @created_at, @updated_at, @owner_id, @template_id, @name, @autostart_schedule, @ttl, @automatic_updates)
RETURNING *;

-- name: GetWorkspaceByID :one
SELECT * FROM workspaces WHERE id = @id LIMIT 1;

-- name: GetWorkspaceByOwnerIDAndName :one
SELECT * FROM workspaces WHERE owner_id = @owner_id AND lower(name) = lower(@name::text) AND deleted = @deleted LIMIT 1;

-- name: GetWorkspaces :many
-- Workspaces not deleted, optionally filtered by owner (uuid.Nil = all) and template (uuid.Nil = all).
SELECT * FROM workspaces
WHERE deleted = false
  AND (@owner_id::uuid = '00000000-0000-0000-0000-000000000000'::uuid OR owner_id = @owner_id)
  AND (@template_id::uuid = '00000000-0000-0000-0000-000000000000'::uuid OR template_id = @template_id)
ORDER BY lower(name) ASC, id ASC;

-- name: GetWorkspaceCountsByTemplateIDs :many
-- The number of workspaces not deleted of each given template that has any.
SELECT template_id, count(*) AS workspace_count FROM workspaces
WHERE template_id = ANY(@template_ids::uuid[]) AND deleted = false
GROUP BY template_id;

-- name: UpdateWorkspaceDeletedByID :exec
UPDATE workspaces SET deleted = @deleted, updated_at = @updated_at WHERE id = @id;

-- name: UpdateWorkspaceLastUsedAt :exec
UPDATE workspaces SET last_used_at = @last_used_at WHERE id = @id;

-- name: GetWorkspaceByAgentID :one
SELECT w.* FROM workspaces w
JOIN workspace_builds b ON b.workspace_id = w.id
JOIN workspace_resources r ON r.job_id = b.job_id
JOIN workspace_agents a ON a.resource_id = r.id
WHERE a.id = @agent_id
LIMIT 1;

-- name: UpdateWorkspaceName :one
-- Renames a workspace (the unique index on owner and lower(name) refuses a taken name).
UPDATE workspaces SET name = @name, updated_at = @updated_at WHERE id = @id AND deleted = false RETURNING *;

-- name: UpdateWorkspaceFavorite :exec
UPDATE workspaces SET favorite = @favorite WHERE id = @id;
