-- The latest failure to fetch a project's repository mirror (unreachable, stalled, credentials refused) and when
-- it happened (Unix ms), shown on the project's dashboard page; both NULL again after the next successful fetch.
-- Keep in step with migrations/postgres/0008_project_fetch_error.sql.
ALTER TABLE projects ADD COLUMN fetch_error TEXT;
ALTER TABLE projects ADD COLUMN fetch_error_at BIGINT;
