-- Drydock coordinator schema (SQLite). Times are Unix milliseconds; JSON documents are TEXT; flags are 0/1.
-- Keep in step with migrations/postgres/0001_initial.sql: the same tables, columns and meanings.

CREATE TABLE projects (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    slug TEXT NOT NULL UNIQUE,
    clone_url TEXT NOT NULL,
    local_path TEXT,
    webhook_secret_enc TEXT,
    default_branch TEXT NOT NULL DEFAULT 'main',
    fork_secrets INTEGER NOT NULL DEFAULT 0,
    pipeline_counter INTEGER NOT NULL DEFAULT 0,
    job_counter INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);

CREATE TABLE pipelines (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    number INTEGER NOT NULL,
    source TEXT NOT NULL,
    branch TEXT,
    tag TEXT,
    sha TEXT NOT NULL,
    pr_number INTEGER,
    is_fork INTEGER NOT NULL DEFAULT 0,
    commit_message TEXT NOT NULL DEFAULT '',
    author TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL,
    error TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (project_id, number)
);
CREATE INDEX pipelines_project_branch ON pipelines (project_id, branch);

CREATE TABLE workflows (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    pipeline_id INTEGER NOT NULL REFERENCES pipelines (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX workflows_pipeline ON workflows (pipeline_id);

CREATE TABLE jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    workflow_id INTEGER NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    pipeline_id INTEGER NOT NULL,
    project_id INTEGER NOT NULL,
    number INTEGER NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 1,
    requeues INTEGER NOT NULL DEFAULT 0,
    resource_class TEXT NOT NULL DEFAULT 'medium',
    requires_json TEXT NOT NULL DEFAULT '[]',
    contexts_json TEXT NOT NULL DEFAULT '[]',
    spec_json TEXT,
    runner_id INTEGER,
    lease_expires_at INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    exit_code INTEGER,
    message TEXT,
    queued_at INTEGER,
    started_at INTEGER,
    finished_at INTEGER,
    created_at INTEGER NOT NULL
);
CREATE INDEX jobs_state ON jobs (state, id);
CREATE INDEX jobs_workflow ON jobs (workflow_id);

CREATE TABLE steps (
    job_id INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt INTEGER NOT NULL,
    step INTEGER NOT NULL,
    name TEXT NOT NULL,
    status TEXT,
    exit_code INTEGER,
    started_at INTEGER,
    finished_at INTEGER,
    PRIMARY KEY (job_id, attempt, step)
);

CREATE TABLE log_chunks (
    job_id INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt INTEGER NOT NULL,
    step INTEGER NOT NULL,
    byte_offset INTEGER NOT NULL,
    byte_len INTEGER NOT NULL,
    stream TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (job_id, attempt, step, byte_offset)
);

CREATE TABLE runners (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    token_sha256 TEXT NOT NULL UNIQUE,
    labels_json TEXT NOT NULL DEFAULT '{}',
    resource_classes_json TEXT NOT NULL DEFAULT '[]',
    created_at INTEGER NOT NULL,
    last_seen_at INTEGER
);

CREATE TABLE api_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    token_sha256 TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);

CREATE TABLE webhook_deliveries (
    delivery_id TEXT PRIMARY KEY,
    event TEXT NOT NULL,
    body BLOB NOT NULL,
    received_at INTEGER NOT NULL,
    processed_at INTEGER,
    pipeline_id INTEGER,
    outcome TEXT
);
CREATE INDEX webhook_deliveries_unprocessed ON webhook_deliveries (processed_at);

CREATE TABLE env_vars (
    project_id INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    ciphertext TEXT NOT NULL,
    masked TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (project_id, name)
);

CREATE TABLE contexts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);

CREATE TABLE context_vars (
    context_id INTEGER NOT NULL REFERENCES contexts (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    ciphertext TEXT NOT NULL,
    masked TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (context_id, name)
);

CREATE TABLE schedules (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    cron TEXT NOT NULL,
    branch TEXT NOT NULL,
    workflow TEXT,
    next_tick_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (project_id, name)
);

CREATE TABLE test_results (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt INTEGER NOT NULL,
    path TEXT NOT NULL,
    classname TEXT NOT NULL,
    name TEXT NOT NULL,
    file TEXT,
    result TEXT NOT NULL,
    message TEXT,
    run_time_ms INTEGER NOT NULL
);
CREATE INDEX test_results_job ON test_results (job_id);

CREATE TABLE artifacts (
    job_id INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt INTEGER NOT NULL,
    path TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    file TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (job_id, attempt, path)
);

CREATE TABLE workspace_layers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt INTEGER NOT NULL,
    size_bytes INTEGER NOT NULL,
    file TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX workspace_layers_job ON workspace_layers (job_id);
