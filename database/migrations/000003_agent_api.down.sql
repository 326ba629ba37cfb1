DROP TABLE IF EXISTS workspace_agent_stats;
DROP TABLE IF EXISTS workspace_agent_log_batches;
