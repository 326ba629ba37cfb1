DROP TABLE IF EXISTS template_schedules;
-- build_reason keeps 'dormancy' and 'autodelete' (PostgreSQL cannot drop
-- enum values); builds with them stay readable.
