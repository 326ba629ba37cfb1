-- name: InsertTemplate :one
INSERT INTO templates (
    id, created_at, updated_at, name, display_name, description, icon,
    provisioner, active_version_id, created_by, default_ttl, allow_user_cancel_workspace_jobs
) VALUES (
    @id, @created_at, @updated_at, @name, @display_name, @description, @icon,
    @provisioner, @active_version_id, @created_by, @default_ttl, @allow_user_cancel_workspace_jobs
) RETURNING *;

-- name: GetTemplateByID :one
SELECT * FROM templates WHERE id = @id LIMIT 1;

-- name: GetTemplateByName :one
SELECT * FROM templates WHERE lower(name) = lower(@name::text) AND deleted = false LIMIT 1;

-- name: GetTemplates :many
SELECT * FROM templates WHERE deleted = false ORDER BY lower(name) ASC, id ASC;

-- name: UpdateTemplateActiveVersionByID :exec
UPDATE templates SET active_version_id = @active_version_id, updated_at = @updated_at WHERE id = @id;

-- name: UpdateTemplateMetaByID :one
UPDATE templates SET display_name = @display_name, description = @description, icon = @icon,
    default_ttl = @default_ttl, allow_user_cancel_workspace_jobs = @allow_user_cancel_workspace_jobs,
    updated_at = @updated_at
WHERE id = @id
RETURNING *;

-- name: UpdateTemplateDeletedByID :exec
UPDATE templates SET deleted = @deleted, updated_at = @updated_at WHERE id = @id;

-- name: InsertTemplateVersion :one
INSERT INTO template_versions (id, template_id, created_at, updated_at, name, message, readme, job_id, created_by)
VALUES (@id, @template_id, @created_at, @updated_at, @name, @message, @readme, @job_id, @created_by)
RETURNING *;

-- name: GetTemplateVersionByID :one
SELECT * FROM template_versions WHERE id = @id LIMIT 1;

-- name: GetTemplateVersionByJobID :one
SELECT * FROM template_versions WHERE job_id = @job_id LIMIT 1;

-- name: GetTemplateVersionByTemplateIDAndName :one
SELECT * FROM template_versions WHERE template_id = @template_id AND lower(name) = lower(@name::text) LIMIT 1;

-- name: GetTemplateVersionsByTemplateID :many
SELECT * FROM template_versions WHERE template_id = @template_id ORDER BY created_at ASC, id ASC;

-- name: UpdateTemplateVersionTemplateID :exec
-- Attaches a template version created before its template to that template.
UPDATE template_versions SET template_id = @template_id, updated_at = @updated_at WHERE id = @id;

-- name: InsertTemplateVersionParameter :one
INSERT INTO template_version_parameters (
    template_version_id, name, description, type, mutable, default_value, icon, options,
    validation_regex, validation_min, validation_max, validation_error, validation_monotonic,
    required, display_name, display_order, ephemeral, form_type
) VALUES (
    @template_version_id, @name, @description, @type, @mutable, @default_value, @icon, @options,
    @validation_regex, @validation_min, @validation_max, @validation_error, @validation_monotonic,
    @required, @display_name, @display_order, @ephemeral, @form_type
) RETURNING *;

-- name: GetTemplateVersionParameters :many
SELECT * FROM template_version_parameters WHERE template_version_id = @template_version_id
ORDER BY display_order ASC, lower(name) ASC;
