-- name: InsertProvisionerJob :one
INSERT INTO provisioner_jobs (
    id, created_at, updated_at, initiator_id, provisioner, storage_method, type, input, file_id, tags, trace_metadata
) VALUES (
    @id, @created_at, @updated_at, @initiator_id, @provisioner, @storage_method, @type, @input, @file_id, @tags, @trace_metadata
) RETURNING *;

-- name: GetProvisionerJobByID :one
SELECT * FROM provisioner_jobs WHERE id = @id LIMIT 1;

-- name: GetProvisionerJobsByIDs :many
SELECT * FROM provisioner_jobs WHERE id = ANY(@ids::uuid[]);

-- name: AcquireProvisionerJob :one
-- Claims the oldest pending job whose tags are all carried by the daemon
-- (job tags ⊆ daemon tags) and that one of its provisioners can run. Jobs
-- locked by a concurrent acquirer are skipped.
UPDATE provisioner_jobs SET
    started_at = @started_at,
    updated_at = @started_at,
    heartbeat_at = @started_at,
    worker_id = @worker_id
WHERE id = (
    SELECT nested.id FROM provisioner_jobs AS nested
    WHERE nested.started_at IS NULL
      AND nested.canceled_at IS NULL
      AND nested.completed_at IS NULL
      AND nested.provisioner::text = ANY(@types::text[])
      AND nested.tags <@ @tags::jsonb
    ORDER BY nested.created_at ASC, nested.id ASC
    FOR UPDATE SKIP LOCKED
    LIMIT 1
)
RETURNING *;

-- name: UpdateProvisionerJobHeartbeat :execrows
-- Records a heartbeat of the daemon running a job; no rows when the job is
-- no longer running on that daemon.
UPDATE provisioner_jobs SET heartbeat_at = @heartbeat_at, updated_at = @heartbeat_at
WHERE id = @id AND worker_id = @worker_id AND completed_at IS NULL;

-- name: UpdateProvisionerJobWithCancelByID :exec
UPDATE provisioner_jobs SET canceled_at = @canceled_at, completed_at = @completed_at, updated_at = @canceled_at
WHERE id = @id;

-- name: UpdateProvisionerJobWithCompleteByID :execrows
UPDATE provisioner_jobs SET
    updated_at = @completed_at,
    completed_at = @completed_at,
    error = @error,
    error_code = @error_code
WHERE id = @id AND completed_at IS NULL;

-- name: GetHungProvisionerJobs :many
-- Running jobs whose daemon stopped heartbeating before the given time.
SELECT * FROM provisioner_jobs
WHERE started_at IS NOT NULL AND completed_at IS NULL AND heartbeat_at < @lapsed_before
FOR UPDATE SKIP LOCKED;

-- name: GetProvisionerJobsWithQueueByIDs :many
-- The given jobs, each with the queue figures of a pending job (zero for
-- every other job): its 1-based position among the jobs not yet started
-- nor canceled, the number of such jobs, and how many provisioner daemons
-- seen since live_since carry all of its tags. GetWorkspaceBuildsWithDetails
-- computes the same figures for build jobs.
SELECT
    sqlc.embed(j),
    CASE WHEN j.started_at IS NULL AND j.canceled_at IS NULL AND j.completed_at IS NULL THEN
        (SELECT count(*) FROM provisioner_jobs p WHERE p.started_at IS NULL AND p.canceled_at IS NULL
            AND (p.created_at, p.id) <= (j.created_at, j.id))
    ELSE 0 END::bigint AS queue_position,
    CASE WHEN j.started_at IS NULL AND j.canceled_at IS NULL AND j.completed_at IS NULL THEN
        (SELECT count(*) FROM provisioner_jobs p WHERE p.started_at IS NULL AND p.canceled_at IS NULL)
    ELSE 0 END::bigint AS queue_size,
    CASE WHEN j.started_at IS NULL AND j.canceled_at IS NULL AND j.completed_at IS NULL THEN
        (SELECT count(*) FROM provisioner_daemons d WHERE d.last_seen_at >= @live_since::timestamptz AND j.tags <@ d.tags)
    ELSE 0 END::bigint AS live_daemons
FROM provisioner_jobs j
WHERE j.id = ANY(@ids::uuid[]);

-- name: InsertProvisionerJobLogs :many
INSERT INTO provisioner_job_logs (job_id, created_at, source, level, stage, output)
SELECT @job_id::uuid,
    unnest(@created_at::timestamptz[]),
    unnest(@source::text[])::log_source,
    unnest(@level::text[])::log_level,
    unnest(@stage::varchar(128)[]),
    unnest(@output::varchar(1024)[])
RETURNING *;

-- name: GetProvisionerLogsAfterID :many
SELECT * FROM provisioner_job_logs WHERE job_id = @job_id AND id > @created_after ORDER BY id ASC;
