-- name: InsertFile :one
INSERT INTO files (id, hash, created_at, created_by, mimetype, data)
VALUES (@id, @hash, @created_at, @created_by, @mimetype, @data)
RETURNING *;

-- name: GetFileByID :one
SELECT * FROM files WHERE id = @id LIMIT 1;

-- name: GetFileByHashAndCreator :one
SELECT * FROM files WHERE hash = @hash AND created_by = @created_by LIMIT 1;
