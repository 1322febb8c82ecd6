-- A pipeline's jobs are listed by pipeline (the dashboard's pipeline page, Store::pipeline_jobs): without an
-- index that read every row of jobs (a sequential scan: ~100,000 rows for a busy installation, on every page
-- view). Keep in step with migrations/sqlite/0003_job_list_indexes.sql.
CREATE INDEX jobs_pipeline ON jobs (pipeline_id, id);
