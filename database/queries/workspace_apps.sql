-- name: InsertWorkspaceApp :one
INSERT INTO workspace_apps (
    id, created_at, agent_id, slug, display_name, icon, command, url, subdomain, sharing_level,
    healthcheck_url, healthcheck_interval, healthcheck_threshold, health, external, hidden, display_order, open_in
) VALUES (
    @id, @created_at, @agent_id, @slug, @display_name, @icon, @command, @url, @subdomain, @sharing_level,
    @healthcheck_url, @healthcheck_interval, @healthcheck_threshold, @health, @external, @hidden, @display_order, @open_in
) RETURNING *;

-- name: GetWorkspaceAppsByAgentID :many
SELECT * FROM workspace_apps WHERE agent_id = @agent_id ORDER BY display_order ASC, slug ASC;

-- name: GetWorkspaceAppsByAgentIDs :many
SELECT * FROM workspace_apps WHERE agent_id = ANY(@ids::uuid[]) ORDER BY display_order ASC, slug ASC;

-- name: GetWorkspaceAppByAgentIDAndSlug :one
SELECT * FROM workspace_apps WHERE agent_id = @agent_id AND slug = @slug LIMIT 1;

-- name: UpdateWorkspaceAppHealthByID :exec
UPDATE workspace_apps SET health = @health WHERE id = @id;
