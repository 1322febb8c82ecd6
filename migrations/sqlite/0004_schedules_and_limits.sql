-- Schedule ticks and project options (sqlite). Keep in step with migrations/postgres/0004_schedules_and_limits.sql.
-- A due schedule is claimed by inserting its tick (one row per schedule and tick time: two coordinators cannot
-- both claim it) and moving the schedule's next_tick_at in the same transaction; the tick's pipeline is created
-- in the transaction that marks the tick processed, so a tick makes exactly one pipeline whatever crashes.

CREATE TABLE schedule_ticks (
    schedule_id INTEGER NOT NULL REFERENCES schedules (id) ON DELETE CASCADE,
    tick_at INTEGER NOT NULL,
    claimed_at INTEGER NOT NULL,
    processed_at INTEGER,
    pipeline_id INTEGER,
    outcome TEXT,
    PRIMARY KEY (schedule_id, tick_at)
);
CREATE INDEX schedule_ticks_unprocessed ON schedule_ticks (processed_at);

-- Cancel the older pipelines of a branch (never the default branch) when a newer one is created: 0/1.
ALTER TABLE projects ADD COLUMN auto_cancel_redundant INTEGER NOT NULL DEFAULT 0;
-- At most this many of the project's jobs run at once; NULL: no limit.
ALTER TABLE projects ADD COLUMN max_concurrent_jobs INTEGER;
