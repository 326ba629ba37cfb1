-- name: UpsertWorkspaceAgentScriptRun :execrows
-- Records the latest run of a script of the agent; a script of another
-- agent matches no row (0 rows affected).
INSERT INTO workspace_agent_script_runs (script_id, workspace_agent_id, status, started_at, ended_at, exit_code)
SELECT s.id, s.workspace_agent_id, @status, @started_at, sqlc.narg('ended_at'), sqlc.narg('exit_code')
FROM workspace_agent_scripts s
WHERE s.id = @script_id AND s.workspace_agent_id = @workspace_agent_id
ON CONFLICT (script_id) DO UPDATE SET
    status = EXCLUDED.status, started_at = EXCLUDED.started_at,
    ended_at = EXCLUDED.ended_at, exit_code = EXCLUDED.exit_code;

-- name: GetWorkspaceAgentScriptRuns :many
SELECT * FROM workspace_agent_script_runs WHERE workspace_agent_id = @workspace_agent_id
ORDER BY started_at ASC;
