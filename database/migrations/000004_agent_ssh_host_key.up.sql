-- The agent's SSH host key (authorized_keys format), reported by the agent at
-- startup. coderd's app proxy and `coder ssh` verify the agent against it
-- instead of accepting any host key.
ALTER TABLE workspace_agents ADD COLUMN ssh_host_key text NOT NULL DEFAULT '';
