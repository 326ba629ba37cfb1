-- The latest run of each agent script, as the agent reports it: when it
-- started and ended, how (running, ok, exit_failure, timed_out, canceled)
-- and its exit code (-1 when killed by a signal or not started).
CREATE TABLE workspace_agent_script_runs (
    script_id uuid PRIMARY KEY REFERENCES workspace_agent_scripts (id) ON DELETE CASCADE,
    workspace_agent_id uuid NOT NULL REFERENCES workspace_agents (id) ON DELETE CASCADE,
    status text NOT NULL CHECK (status IN ('running', 'ok', 'exit_failure', 'timed_out', 'canceled')),
    started_at timestamptz NOT NULL,
    ended_at timestamptz,
    exit_code integer
);

CREATE INDEX workspace_agent_script_runs_agent_idx ON workspace_agent_script_runs (workspace_agent_id);
