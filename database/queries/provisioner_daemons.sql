-- name: UpsertProvisionerDaemon :one
INSERT INTO provisioner_daemons (id, created_at, name, provisioners, tags, version, terraform_version, last_seen_at, key_id)
VALUES (@id, @created_at, @name, @provisioners, @tags, @version, @terraform_version, @last_seen_at, @key_id)
ON CONFLICT (lower(name)) DO UPDATE SET
    provisioners = EXCLUDED.provisioners,
    tags = EXCLUDED.tags,
    version = EXCLUDED.version,
    terraform_version = EXCLUDED.terraform_version,
    last_seen_at = EXCLUDED.last_seen_at
RETURNING *;

-- name: GetProvisionerDaemons :many
SELECT * FROM provisioner_daemons ORDER BY lower(name) ASC;

-- name: GetProvisionerDaemonByID :one
SELECT * FROM provisioner_daemons WHERE id = @id LIMIT 1;

-- name: UpdateProvisionerDaemonLastSeenAt :exec
UPDATE provisioner_daemons SET last_seen_at = @last_seen_at WHERE id = @id;
