-- A workspace its owner marked as a favorite: listed first by coder list
-- and the dashboard (coder favorite / unfavorite).
ALTER TABLE workspaces ADD COLUMN favorite boolean NOT NULL DEFAULT false;

COMMENT ON COLUMN workspaces.favorite IS 'Whether the owner marked the workspace as a favorite (listed first for the owner).';
