-- A pipeline's jobs are listed by pipeline (the dashboard's pipeline page, Store::pipeline_jobs): without an
-- index that read every row of jobs (a sequential scan: ~100,000 rows for a busy installation, on every page
-- view). Keep in step with migrations/sqlite/0005_job_list_indexes.sql.
CREATE INDEX jobs_pipeline ON jobs (pipeline_id, id);
-- The dashboard's branch list (latest pipeline per branch, on the projects and project pages) groups a project's
-- pipelines by branch and takes MAX(number): with number in the index it reads the index alone, not every
-- pipeline row.
CREATE INDEX pipelines_project_branch_number ON pipelines (project_id, branch, number);
