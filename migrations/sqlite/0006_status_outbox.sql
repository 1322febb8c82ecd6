-- Commit status outbox and configuration schedules (sqlite). Keep in step with
-- migrations/postgres/0006_status_outbox.sql.
--
-- A change of a GitHub project's pipeline (created, a workflow's state moved) writes or bumps its row here in the
-- transaction that made the change; the status task posts the pipeline's current states and deletes the row only
-- if its version is still the one it read, so a change made meanwhile is posted too. A failed post stays with a
-- later next_attempt_at (backoff): a restart or GitHub being down loses no status.

CREATE TABLE status_outbox (
    pipeline_id INTEGER PRIMARY KEY REFERENCES pipelines (id) ON DELETE CASCADE,
    version INTEGER NOT NULL DEFAULT 1,
    first_queued_at INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX status_outbox_due ON status_outbox (next_attempt_at);

-- Where a schedule comes from: 'project' (the API, `coordinator schedule add`) or 'config' (a workflow's
-- `triggers: - schedule:` in .circleci/config.yml, kept in step with the branch's configuration).
ALTER TABLE schedules ADD COLUMN source TEXT NOT NULL DEFAULT 'project';
