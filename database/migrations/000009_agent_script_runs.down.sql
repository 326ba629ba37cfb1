DROP TABLE IF EXISTS workspace_agent_script_runs;
