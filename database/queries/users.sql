-- name: InsertUser :one
INSERT INTO users (
    id,
    email,
    username,
    name,
    hashed_password,
    created_at,
    updated_at,
    status,
    rbac_roles,
    login_type,
    last_seen_at,
    deleted
) VALUES (
    @id, @email, @username, @name, @hashed_password, @created_at, @updated_at,
    @status, @rbac_roles, @login_type, @last_seen_at, @deleted
) RETURNING *;

-- name: GetUserByID :one
SELECT * FROM users WHERE id = @id LIMIT 1;

-- name: GetUsersByIDs :many
SELECT * FROM users WHERE id = ANY(@ids::uuid[]);

-- name: GetUserByUsername :one
SELECT * FROM users
WHERE lower(username) = lower(@username::text) AND deleted = false
LIMIT 1;

-- name: GetUserByEmail :one
SELECT * FROM users
WHERE lower(email) = lower(@email::text) AND deleted = false
LIMIT 1;

-- name: GetUsers :many
SELECT * FROM users
WHERE deleted = false
ORDER BY lower(username) ASC, id ASC
LIMIT $1 OFFSET $2;

-- name: GetUserCount :one
SELECT count(*) FROM users WHERE deleted = false;

-- name: UpdateUserStatus :one
UPDATE users SET status = @status, updated_at = @updated_at
WHERE id = @id
RETURNING *;

-- name: UpdateUserRoles :one
-- Replaces the user's roles with the given set (duplicates removed, sorted).
UPDATE users SET rbac_roles = ARRAY(SELECT DISTINCT unnest(@rbac_roles::text[]) ORDER BY 1)
WHERE id = @id
RETURNING *;

-- name: UpdateUserLastSeenAt :one
UPDATE users SET last_seen_at = @last_seen_at, updated_at = @updated_at
WHERE id = @id
RETURNING *;

-- name: UpdateUserHashedPassword :exec
UPDATE users SET hashed_password = @hashed_password, updated_at = @updated_at
WHERE id = @id;

-- name: UpdateUserProfile :one
UPDATE users SET email = @email, username = @username, name = @name, updated_at = @updated_at
WHERE id = @id
RETURNING *;

-- name: UpdateUserDeletedByID :exec
-- Soft-deletes a user; username and email become reusable.
UPDATE users SET deleted = true, updated_at = @updated_at WHERE id = @id;
