DROP TABLE IF EXISTS template_schedules;
