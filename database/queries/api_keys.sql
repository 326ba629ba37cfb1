-- name: InsertAPIKey :one
INSERT INTO api_keys (
    id,
    hashed_secret,
    user_id,
    last_used,
    expires_at,
    created_at,
    updated_at,
    login_type,
    lifetime_seconds,
    token_name,
    scope
) VALUES (
    @id, @hashed_secret, @user_id, @last_used, @expires_at, @created_at, @updated_at,
    @login_type, @lifetime_seconds, @token_name, @scope
) RETURNING *;

-- name: GetAPIKeyByID :one
SELECT * FROM api_keys WHERE id = @id LIMIT 1;

-- name: GetAPIKeysByUserID :many
SELECT * FROM api_keys
WHERE user_id = @user_id AND login_type = @login_type
ORDER BY created_at ASC, id ASC;

-- name: GetAPIKeyByName :one
SELECT * FROM api_keys
WHERE user_id = @user_id AND token_name = @token_name AND login_type = 'token'
LIMIT 1;

-- name: ConsumeAPIKeyByID :one
-- Deletes a single-use key and returns it; no row when it was already
-- consumed (or never existed), so of concurrent callers exactly one wins.
DELETE FROM api_keys WHERE id = @id RETURNING *;

-- name: DeleteAPIKeyByID :exec
DELETE FROM api_keys WHERE id = @id;

-- name: UpdateAPIKeyByID :exec
UPDATE api_keys SET last_used = @last_used, expires_at = @expires_at, updated_at = now()
WHERE id = @id;

-- name: DeleteAPIKeysByUserID :exec
DELETE FROM api_keys WHERE user_id = @user_id;

-- name: DeleteExpiredAPIKeys :execrows
-- Removes keys that expired before the given time.
DELETE FROM api_keys WHERE expires_at < @before;
