//! The coordinator's database: SQLite (one WAL file in the data directory, the embedded default) or PostgreSQL
//! (`postgres://…`, for several coordinators), chosen at run time through sqlx's `Any` driver. Every query is
//! written once in SQL both backends accept (`$N` placeholders, `RETURNING`, BIGINT times in Unix milliseconds);
//! the few places that differ (`FOR UPDATE SKIP LOCKED`) ask [`Backend`]. Migrations live in
//! `migrations/{sqlite,postgres}` and are embedded in the binary.
//!
//! Writes: PostgreSQL serialises them with row locks. SQLite has one writer per file; a deferred transaction that
//! reads and then writes can fail with `SQLITE_BUSY` instead of waiting, so every write transaction of this process
//! first takes [`Store::write`]'s in-process lock (the embedded setup runs one coordinator per file).
//!
//! Submodules hold the queries per table group: [`projects`], [`pipelines`], [`jobs`] (lease, heartbeat,
//! completion, the workflow DAG), [`reruns`] (a finished workflow again), [`logs`], [`runners`] (runners and API
//! tokens), [`schedules`] (cron schedules and their ticks), [`deliveries`] (webhooks), [`status_outbox`] (commit
//! statuses GitHub has yet to get).

pub mod deliveries;
pub mod jobs;
pub mod log_range;
pub mod logs;
pub mod pipelines;
pub mod projects;
pub mod reruns;
pub mod runners;
pub mod schedules;
pub mod secrets;
pub mod status_outbox;

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{Any, AnyPool, Transaction};

/// Set on every SQLite connection.
const SQLITE_PRAGMAS: &[&str] = &[
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = NORMAL",
    "PRAGMA busy_timeout = 10000",
    "PRAGMA foreign_keys = ON",
];

/// Which database the store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A store error: what failed and what to do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database url `{0}` is neither sqlite:… nor postgres://…: give one of those")]
    UnsupportedUrl(String),
    #[error("cannot connect to the database at {url}: {source}: check that it runs and the url is right")]
    Connect { url: String, source: sqlx::Error },
    #[error("cannot apply the database migrations: {0}: the database may be from a newer coordinator")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("stored {what} is not valid JSON: {source}")]
    Corrupt { what: &'static str, source: serde_json::Error },
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("job {0} is not leased to this runner any more: stop working on it")]
    LeaseLost(i64),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The database handle shared by the server's tasks (cheap to clone).
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    write_lock: Arc<tokio::sync::Mutex<()>>,
    /// Write transactions begun so far (see [`Store::write_transactions`]).
    writes: Arc<std::sync::atomic::AtomicU64>,
    /// Bumped after every committed write transaction (see [`Store::changes`]).
    changes: Arc<tokio::sync::watch::Sender<u64>>,
}

/// A write transaction; on SQLite it also holds the process's write lock until it ends.
pub struct WriteTx {
    pub tx: Transaction<'static, Any>,
    _guard: Option<tokio::sync::OwnedMutexGuard<()>>,
    changes: Arc<tokio::sync::watch::Sender<u64>>,
}

impl WriteTx {
    pub async fn commit(self) -> Result<()> {
        self.tx.commit().await?;
        self.changes.send_modify(|generation| *generation = generation.wrapping_add(1));
        Ok(())
    }
}

/// The default database URL: `coordinator.db` in the data directory.
pub fn sqlite_url(data_dir: &Path) -> String {
    format!("sqlite://{}?mode=rwc", data_dir.join("coordinator.db").display())
}

impl Store {
    /// Connects to `url` and applies pending migrations.
    pub async fn open(url: &str) -> Result<Store> {
        let store = Store::connect(url).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Connects to `url` without migrating.
    pub async fn connect(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl(url.to_string()));
        };
        let options = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 4 } else { 10 })
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL: readers never block the writer; NORMAL sync is durable across process crashes.
                        for pragma in SQLITE_PRAGMAS {
                            sqlx::Executor::execute(&mut *conn, *pragma).await?;
                        }
                    }
                    Ok(())
                })
            });
        let pool = options.connect(url).await.map_err(|source| StoreError::Connect { url: redact_url(url), source })?;
        let changes = Arc::new(tokio::sync::watch::channel(0).0);
        Ok(Store { pool, backend, write_lock: Arc::new(tokio::sync::Mutex::new(())), writes: Arc::default(), changes })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Applies the migrations this binary carries that the database lacks.
    pub async fn migrate(&self) -> Result<()> {
        let migrator = migrator(self.backend);
        migrator.run(&self.pool).await?;
        Ok(())
    }

    /// How many write transactions this handle (and its clones) began: idle paths such as a waiting long-poll
    /// must not write, and tests check that they do not.
    pub fn write_transactions(&self) -> u64 {
        self.writes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Starts a write transaction (see the module doc for SQLite's lock).
    pub async fn write(&self) -> Result<WriteTx> {
        self.writes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let guard = match self.backend {
            Backend::Sqlite => Some(self.write_lock.clone().lock_owned().await),
            Backend::Postgres => None,
        };
        let tx = self.pool.begin().await?;
        Ok(WriteTx { tx, _guard: guard, changes: self.changes.clone() })
    }

    /// Wakes after each write transaction this process committed: the dashboard's live pipeline pages look
    /// again then (a hint only: another coordinator's writes wake nothing here, so readers also look on a timer).
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn migrator(backend: Backend) -> Migrator {
    let files: &[(i64, &str, &'static str)] = match backend {
        Backend::Sqlite => &[
            (1, "initial", include_str!("../../../migrations/sqlite/0001_initial.sql")),
            (2, "dashboard_users", include_str!("../../../migrations/sqlite/0002_dashboard_users.sql")),
            (3, "reruns", include_str!("../../../migrations/sqlite/0003_reruns.sql")),
            (4, "schedules_and_limits", include_str!("../../../migrations/sqlite/0004_schedules_and_limits.sql")),
            (5, "job_list_indexes", include_str!("../../../migrations/sqlite/0005_job_list_indexes.sql")),
            (6, "status_outbox", include_str!("../../../migrations/sqlite/0006_status_outbox.sql")),
            (7, "log_chunk_stored_len", include_str!("../../../migrations/sqlite/0007_log_chunk_stored_len.sql")),
            (8, "project_fetch_error", include_str!("../../../migrations/sqlite/0008_project_fetch_error.sql")),
        ],
        Backend::Postgres => &[
            (1, "initial", include_str!("../../../migrations/postgres/0001_initial.sql")),
            (2, "dashboard_users", include_str!("../../../migrations/postgres/0002_dashboard_users.sql")),
            (3, "reruns", include_str!("../../../migrations/postgres/0003_reruns.sql")),
            (4, "schedules_and_limits", include_str!("../../../migrations/postgres/0004_schedules_and_limits.sql")),
            (5, "job_list_indexes", include_str!("../../../migrations/postgres/0005_job_list_indexes.sql")),
            (6, "status_outbox", include_str!("../../../migrations/postgres/0006_status_outbox.sql")),
            (7, "log_chunk_stored_len", include_str!("../../../migrations/postgres/0007_log_chunk_stored_len.sql")),
            (8, "project_fetch_error", include_str!("../../../migrations/postgres/0008_project_fetch_error.sql")),
        ],
    };
    let migrations = files
        .iter()
        .map(|(version, name, sql)| {
            Migration::new(*version, Cow::Borrowed(name), MigrationType::Simple, Cow::Borrowed(sql), false)
        })
        .collect::<Vec<_>>();
    Migrator { migrations: Cow::Owned(migrations), ..Migrator::DEFAULT }
}

/// The URL without its password, for messages.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!("{}{}:***{}", &url[..scheme + 3], &userinfo[..colon], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Reads column `name` of a row, naming the column when it has the wrong type.
pub(crate) fn col<'r, T>(row: &'r AnyRow, name: &str) -> Result<T>
where
    T: sqlx::Decode<'r, Any> + sqlx::Type<Any>,
{
    use sqlx::Row;
    Ok(row.try_get(name)?)
}

#[cfg(test)]
pub(crate) mod testing;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_password_in_messages() {
        assert_eq!(redact_url("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("sqlite:///x.db"), "sqlite:///x.db");
    }

    #[tokio::test]
    async fn migrations_apply_twice_on_both_backends() {
        for db in testing::databases().await {
            db.store.migrate().await.unwrap_or_else(|e| panic!("{}: {e}", db.name));
        }
    }
}
