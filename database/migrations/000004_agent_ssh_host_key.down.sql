ALTER TABLE workspace_agents DROP COLUMN IF EXISTS ssh_host_key;
