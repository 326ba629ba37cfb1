-- name: ClaimWorkspaceAgentLogBatch :execrows
-- Records batch_seq as the agent's latest stored log batch. Affects no row
-- when a batch with this or a higher sequence number was stored before.
INSERT INTO workspace_agent_log_batches (agent_id, last_batch_seq)
VALUES (@agent_id, @batch_seq)
ON CONFLICT (agent_id) DO UPDATE SET last_batch_seq = EXCLUDED.last_batch_seq
WHERE workspace_agent_log_batches.last_batch_seq < EXCLUDED.last_batch_seq;

-- name: InsertWorkspaceAgentStat :exec
INSERT INTO workspace_agent_stats (
    created_at, agent_id, workspace_id, connections_by_proto, connection_count, rx_bytes, tx_bytes,
    connection_median_latency_ms, session_count_vscode, session_count_jetbrains,
    session_count_reconnecting_pty, session_count_ssh
) VALUES (
    @created_at, @agent_id, @workspace_id, @connections_by_proto, @connection_count, @rx_bytes, @tx_bytes,
    @connection_median_latency_ms, @session_count_vscode, @session_count_jetbrains,
    @session_count_reconnecting_pty, @session_count_ssh
);

-- name: GetLatestWorkspaceAgentStat :one
SELECT * FROM workspace_agent_stats WHERE agent_id = @agent_id ORDER BY id DESC LIMIT 1;

-- name: GetWorkspaceAgentLogsAfterLimit :many
SELECT * FROM workspace_agent_logs WHERE agent_id = @agent_id AND id > @after_id ORDER BY id ASC LIMIT @max_rows;

-- name: UpdateWorkspaceAppHealthByAgentAndID :execrows
UPDATE workspace_apps SET health = @health WHERE agent_id = @agent_id AND id = @id;
