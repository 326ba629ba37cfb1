DROP TABLE IF EXISTS template_version_variables;
ALTER TABLE template_versions DROP COLUMN IF EXISTS archived;
ALTER TABLE templates DROP COLUMN IF EXISTS require_active_version;
