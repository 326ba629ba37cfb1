-- name: InsertReplica :exec
INSERT INTO replicas (id, hostname, region_id, relay_address, version, started_at, updated_at)
VALUES (@id, @hostname, @region_id, @relay_address, @version, @started_at, @started_at);

-- name: UpsertReplicaHeartbeat :exec
-- Refreshes a replica's heartbeat, re-creating its row when another replica
-- expired it (it could not reach the database for a while).
INSERT INTO replicas (id, hostname, region_id, relay_address, version, started_at, updated_at, error)
VALUES (@id, @hostname, @region_id, @relay_address, @version, @started_at, @updated_at, @error)
ON CONFLICT (id) DO UPDATE SET updated_at = @updated_at, error = @error, stopped_at = NULL;

-- name: DeleteReplicasUpdatedBefore :exec
DELETE FROM replicas WHERE updated_at < @before;

-- name: GetLiveReplicas :many
-- Replicas that did not stop and heartbeated since the given time, oldest first.
SELECT * FROM replicas WHERE stopped_at IS NULL AND updated_at >= @since ORDER BY started_at, id;

-- name: UpdateReplicaStopped :exec
UPDATE replicas SET stopped_at = @stopped_at, updated_at = @stopped_at WHERE id = @id;
