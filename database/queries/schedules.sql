-- name: GetTemplateSchedule :one
-- A template's schedule settings; a template without a template_schedules
-- row has the defaults.
SELECT
    t.id AS template_id,
    t.default_ttl AS default_ttl,
    COALESCE(s.max_ttl, 0)::bigint AS max_ttl,
    COALESCE(s.allow_user_autostart, true)::boolean AS allow_user_autostart,
    COALESCE(s.allow_user_autostop, true)::boolean AS allow_user_autostop,
    COALESCE(s.failure_ttl, 0)::bigint AS failure_ttl,
    COALESCE(s.time_til_dormant, 0)::bigint AS time_til_dormant,
    COALESCE(s.time_til_dormant_autodelete, 0)::bigint AS time_til_dormant_autodelete
FROM templates t
LEFT JOIN template_schedules s ON s.template_id = t.id
WHERE t.id = @template_id;

-- name: UpsertTemplateSchedule :exec
INSERT INTO template_schedules (
    template_id, updated_at, max_ttl, allow_user_autostart, allow_user_autostop,
    failure_ttl, time_til_dormant, time_til_dormant_autodelete
) VALUES (
    @template_id, @updated_at, @max_ttl, @allow_user_autostart, @allow_user_autostop,
    @failure_ttl, @time_til_dormant, @time_til_dormant_autodelete
) ON CONFLICT (template_id) DO UPDATE SET
    updated_at = EXCLUDED.updated_at, max_ttl = EXCLUDED.max_ttl,
    allow_user_autostart = EXCLUDED.allow_user_autostart, allow_user_autostop = EXCLUDED.allow_user_autostop,
    failure_ttl = EXCLUDED.failure_ttl, time_til_dormant = EXCLUDED.time_til_dormant,
    time_til_dormant_autodelete = EXCLUDED.time_til_dormant_autodelete;

-- name: UpdateTemplateDefaultTTLByID :exec
UPDATE templates SET default_ttl = @default_ttl, updated_at = @updated_at WHERE id = @id;

-- name: UpdateWorkspaceAutostart :exec
UPDATE workspaces SET autostart_schedule = @autostart_schedule, updated_at = @updated_at WHERE id = @id;

-- name: UpdateWorkspaceTTL :exec
UPDATE workspaces SET ttl = @ttl, updated_at = @updated_at WHERE id = @id;

-- name: UpdateWorkspaceDormantDeletingAt :exec
-- Marks a workspace dormant (dormant_at set, deleting_at when it will be
-- deleted) or clears both.
UPDATE workspaces SET dormant_at = @dormant_at, deleting_at = @deleting_at, updated_at = @updated_at WHERE id = @id;

-- name: UpdateWorkspaceBuildDeadlineByID :exec
UPDATE workspace_builds SET deadline = @deadline, max_deadline = @max_deadline, updated_at = @updated_at WHERE id = @id;

-- name: GetWorkspacesForLifecycle :many
-- Every workspace not deleted whose latest build's job has ended, with what
-- the lifecycle executor decides on: its schedule, activity and dormancy,
-- its latest build and job outcome, and its template's schedule settings.
SELECT
    w.id AS workspace_id,
    w.owner_id AS owner_id,
    w.template_id AS template_id,
    w.created_at AS created_at,
    w.autostart_schedule AS autostart_schedule,
    w.last_used_at AS last_used_at,
    w.dormant_at AS dormant_at,
    w.deleting_at AS deleting_at,
    b.id AS build_id,
    b.transition AS transition,
    b.deadline AS deadline,
    b.max_deadline AS max_deadline,
    j.completed_at AS job_completed_at,
    (j.error IS NOT NULL OR j.canceled_at IS NOT NULL)::boolean AS job_failed,
    COALESCE(s.allow_user_autostart, true)::boolean AS allow_user_autostart,
    COALESCE(s.allow_user_autostop, true)::boolean AS allow_user_autostop,
    COALESCE(s.failure_ttl, 0)::bigint AS failure_ttl,
    COALESCE(s.time_til_dormant, 0)::bigint AS time_til_dormant,
    COALESCE(s.time_til_dormant_autodelete, 0)::bigint AS time_til_dormant_autodelete
FROM workspaces w
JOIN LATERAL (
    SELECT lb.id, lb.transition, lb.deadline, lb.max_deadline, lb.job_id FROM workspace_builds lb
    WHERE lb.workspace_id = w.id ORDER BY lb.build_number DESC LIMIT 1
) b ON true
JOIN provisioner_jobs j ON j.id = b.job_id
JOIN templates t ON t.id = w.template_id
LEFT JOIN template_schedules s ON s.template_id = w.template_id
WHERE w.deleted = false AND j.completed_at IS NOT NULL
ORDER BY w.id;

-- name: GetTemplateSchedulesByTemplateIDs :many
-- The schedule rows of the given templates; a template without one has the defaults.
SELECT * FROM template_schedules WHERE template_id = ANY(@template_ids::uuid[]);
