-- Workspace schedules: a template's autostop/autostart/dormancy settings
-- (default_ttl stays on templates), kept in their own table so a template
-- without a row has the defaults below.

CREATE TABLE template_schedules (
    template_id uuid PRIMARY KEY REFERENCES templates (id) ON DELETE CASCADE,
    updated_at timestamptz NOT NULL,
    max_ttl bigint NOT NULL DEFAULT 0,
    allow_user_autostart boolean NOT NULL DEFAULT true,
    allow_user_autostop boolean NOT NULL DEFAULT true,
    failure_ttl bigint NOT NULL DEFAULT 0,
    time_til_dormant bigint NOT NULL DEFAULT 0,
    time_til_dormant_autodelete bigint NOT NULL DEFAULT 0,
    CONSTRAINT template_schedules_nonnegative CHECK (
        max_ttl >= 0 AND failure_ttl >= 0 AND time_til_dormant >= 0 AND time_til_dormant_autodelete >= 0
    )
);

COMMENT ON COLUMN template_schedules.max_ttl IS 'Nanoseconds a started workspace may run at most (its build''s max_deadline); 0 means no limit.';
COMMENT ON COLUMN template_schedules.failure_ttl IS 'Nanoseconds after which a workspace whose latest build failed is deleted; 0 never.';
COMMENT ON COLUMN template_schedules.time_til_dormant IS 'Nanoseconds without activity after which a workspace becomes dormant (and is stopped); 0 never.';
COMMENT ON COLUMN template_schedules.time_til_dormant_autodelete IS 'Nanoseconds a workspace stays dormant before it is deleted; 0 never.';

-- Builds the lifecycle executor queues for dormancy and cleanup.
ALTER TYPE build_reason ADD VALUE IF NOT EXISTS 'dormancy';
ALTER TYPE build_reason ADD VALUE IF NOT EXISTS 'autodelete';
