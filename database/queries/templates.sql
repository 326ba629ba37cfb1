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

-- name: UpdateTemplateRequireActiveVersionByID :exec
UPDATE templates SET require_active_version = @require_active_version, updated_at = @updated_at WHERE id = @id;

-- name: UpdateTemplateVersionArchivedByID :exec
UPDATE template_versions SET archived = @archived, updated_at = @updated_at WHERE id = @id;

-- name: CountWorkspacesUsingTemplate :one
-- Workspaces not deleted of a template (a template with any may not be deleted).
SELECT count(*) FROM workspaces WHERE template_id = @template_id AND deleted = false;

-- name: InsertTemplateVersionVariableValue :exec
-- A variable value given at push, before the import says what the template declares.
INSERT INTO template_version_variables (template_version_id, name, value, has_value, inherited)
VALUES (@template_version_id, @name, @value, true, @inherited);

-- name: UpsertTemplateVersionVariable :exec
-- A variable block the import found; a value given at push is kept.
INSERT INTO template_version_variables (
    template_version_id, name, description, type, default_value, required, sensitive, declared
) VALUES (
    @template_version_id, @name, @description, @type, @default_value, @required, @sensitive, true
)
ON CONFLICT (template_version_id, name) DO UPDATE SET
    description = EXCLUDED.description, type = EXCLUDED.type, default_value = EXCLUDED.default_value,
    required = EXCLUDED.required, sensitive = EXCLUDED.sensitive, declared = true;

-- name: GetTemplateVersionVariables :many
SELECT * FROM template_version_variables WHERE template_version_id = @template_version_id ORDER BY name ASC;

-- name: GetTemplateByIDForUpdate :one
-- Locks the template row (deleting a template against concurrent workspace creation).
SELECT * FROM templates WHERE id = @id LIMIT 1 FOR UPDATE;
