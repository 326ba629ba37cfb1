-- Agent API: idempotent log batches and agent stats.

CREATE TABLE workspace_agent_log_batches (
    agent_id uuid PRIMARY KEY REFERENCES workspace_agents (id) ON DELETE CASCADE,
    last_batch_seq bigint NOT NULL
);

COMMENT ON TABLE workspace_agent_log_batches IS 'Highest log batch sequence number stored per agent; a batch at or below it is a retry and is not stored again.';

CREATE TABLE workspace_agent_stats (
    id bigserial PRIMARY KEY,
    created_at timestamptz NOT NULL,
    agent_id uuid NOT NULL REFERENCES workspace_agents (id) ON DELETE CASCADE,
    workspace_id uuid NOT NULL,
    connections_by_proto jsonb NOT NULL DEFAULT '{}',
    connection_count bigint NOT NULL DEFAULT 0,
    rx_bytes bigint NOT NULL DEFAULT 0,
    tx_bytes bigint NOT NULL DEFAULT 0,
    connection_median_latency_ms double precision NOT NULL DEFAULT -1,
    session_count_vscode bigint NOT NULL DEFAULT 0,
    session_count_jetbrains bigint NOT NULL DEFAULT 0,
    session_count_reconnecting_pty bigint NOT NULL DEFAULT 0,
    session_count_ssh bigint NOT NULL DEFAULT 0
);

CREATE INDEX workspace_agent_stats_agent_id_created_at_idx ON workspace_agent_stats (agent_id, created_at);
