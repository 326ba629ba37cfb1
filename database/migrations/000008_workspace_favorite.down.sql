ALTER TABLE workspaces DROP COLUMN favorite;
