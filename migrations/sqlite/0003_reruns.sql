-- Reruns (SQLite). Keep in step with migrations/postgres/0003_reruns.sql.
-- A rerun is a new workflow of the same pipeline that names the workflow it reruns (`rerun_of`); the pipeline's
-- state follows the newest workflow of each name. A job a "rerun from failed" keeps (it succeeded before) is
-- copied with `copied_from` naming the job that ran, so its workspace layers still reach the jobs after it.

ALTER TABLE workflows ADD COLUMN rerun_of INTEGER REFERENCES workflows (id) ON DELETE SET NULL;
ALTER TABLE jobs ADD COLUMN copied_from INTEGER;
CREATE INDEX workflows_rerun_of ON workflows (rerun_of);
