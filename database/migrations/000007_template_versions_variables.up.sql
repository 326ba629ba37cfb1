-- Template updates, versions and Terraform variables: a template may require
-- its active version for every start, versions may be archived, and each
-- version keeps the Terraform variables its import found with the values
-- given at push.

ALTER TABLE templates ADD COLUMN require_active_version boolean NOT NULL DEFAULT false;

COMMENT ON COLUMN templates.require_active_version IS 'Every start of a workspace of this template builds the active version.';

ALTER TABLE template_versions ADD COLUMN archived boolean NOT NULL DEFAULT false;

COMMENT ON COLUMN template_versions.archived IS 'Hidden from version lists; no new workspace or build may use it.';

CREATE TABLE template_version_variables (
    template_version_id uuid NOT NULL REFERENCES template_versions (id) ON DELETE CASCADE,
    name text NOT NULL,
    description text NOT NULL DEFAULT '',
    type text NOT NULL DEFAULT '',
    value text NOT NULL DEFAULT '',
    has_value boolean NOT NULL DEFAULT false,
    default_value text NOT NULL DEFAULT '',
    required boolean NOT NULL DEFAULT false,
    sensitive boolean NOT NULL DEFAULT false,
    declared boolean NOT NULL DEFAULT false,
    inherited boolean NOT NULL DEFAULT false,
    PRIMARY KEY (template_version_id, name)
);

COMMENT ON TABLE template_version_variables IS 'Terraform variable blocks of a template version and the values given at push (written to a var file in the job directory for every plan).';
COMMENT ON COLUMN template_version_variables.value IS 'The value given at push (has_value); write-only through the API when sensitive.';
COMMENT ON COLUMN template_version_variables.inherited IS 'The value was not given at push but kept from the active version of the template then (a template that no longer declares the variable just ignores it).';
COMMENT ON COLUMN template_version_variables.declared IS 'Set by the import: the template declares the variable (rows inserted at push start undeclared).';
