//! `coordinator rotate-key`: re-encrypts every secret at rest (project variables, context variables, webhook
//! secrets) under a new key, keeps the old key as a backup file, and loses nothing if it dies at any point.
//!
//! The database and the key file cannot change in one atomic step, so the rotation is a sequence whose every
//! prefix can be finished by running it again:
//!
//! 1. the new key is written to `secret.key.new` (0600; a file left there by an interrupted run is reused, never
//!    replaced, since values may be sealed with it already);
//! 2. one database transaction opens every value with the old or the new key (a value names its key) and seals
//!    it with the new one — all rows or none;
//! 3. the old key is copied to `secret.key.old-<key id>` (0600, synced);
//! 4. `secret.key.new` is renamed over `secret.key` (atomic) and the directory synced.
//!
//! Between 2 and 4 the database holds values the old `secret.key` cannot open: `coordinator serve` refuses to
//! start while `secret.key.new` exists ([`interrupted`]), saying to run `rotate-key` again. Stop every
//! coordinator before rotating: a running one keeps the old key in memory.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::secrets::{Keyring, SecretError, SecretKey};
use crate::store::{col, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{what} `{name}`: {source}: nothing was changed")]
    Open { what: &'static str, name: String, source: SecretError },
    #[error("cannot {action} {path}: {source}")]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
    /// Only from tests: the rotation stopped at a step as a crash would.
    #[error("simulated crash {0:?}")]
    Crash(CrashPoint),
}

/// Where a test makes the rotation stop (as if the process died there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// After re-sealing half of the values, before the transaction commits.
    MidTransaction,
    /// After the commit, before the key files move.
    AfterCommit,
}

/// What a rotation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotated {
    pub old_key_id: String,
    pub new_key_id: String,
    /// Values re-sealed.
    pub values: usize,
    /// Where the old key was kept.
    pub backup: PathBuf,
}

/// The file a rotation writes its new key to before it becomes `key_path`.
pub fn pending_key_path(key_path: &Path) -> PathBuf {
    let mut name = key_path.as_os_str().to_owned();
    name.push(".new");
    PathBuf::from(name)
}

/// `Some(message)` when a rotation of `key_path` was interrupted (the server must not start then).
pub fn interrupted(key_path: &Path) -> Option<String> {
    let pending = pending_key_path(key_path);
    pending.exists().then(|| {
        format!(
            "a key rotation was interrupted ({} exists): run `coordinator rotate-key` again to finish it",
            pending.display()
        )
    })
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> RotateError {
    let path = path.to_path_buf();
    move |source| RotateError::Io { action, path, source }
}

/// Rotates the key at `key_path` over every secret in `store` (see the module doc).
pub async fn rotate_key(store: &Store, key_path: &Path) -> Result<Rotated, RotateError> {
    rotate_key_crashing(store, key_path, None).await
}

/// [`rotate_key`], stopping at `crash` (tests).
pub async fn rotate_key_crashing(
    store: &Store,
    key_path: &Path,
    crash: Option<CrashPoint>,
) -> Result<Rotated, RotateError> {
    let old = SecretKey::load(key_path)?;
    let pending = pending_key_path(key_path);
    // 1. The new key: an interrupted run's, or a fresh one.
    let new = match SecretKey::load(&pending) {
        Ok(k) => {
            tracing::warn!(path = %pending.display(), "finishing an interrupted key rotation");
            k
        }
        Err(SecretError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            SecretKey::create(&pending)?
        }
        Err(e) => return Err(e.into()),
    };
    let ring = Keyring::new(new.clone(), vec![old.clone()]);

    // 2. Every value, in one transaction.
    let values = reseal_all(store, &ring, crash).await?;
    if crash == Some(CrashPoint::AfterCommit) {
        return Err(RotateError::Crash(CrashPoint::AfterCommit));
    }

    // 3. The old key kept (a rerun after the rename finds the new key current: nothing to back up then).
    let backup = backup_path(key_path, old.id());
    if old.id() != new.id() {
        write_key_copy(key_path, &backup)?;
    }
    // 4. The new key in place.
    std::fs::rename(&pending, key_path).map_err(io("rename the new key to", key_path))?;
    if let Some(dir) = key_path.parent() {
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io("sync", dir))?;
    }
    tracing::info!(old_key.id = old.id(), new_key.id = new.id(), values, backup = %backup.display(), "secret key rotated");
    Ok(Rotated { old_key_id: old.id().to_string(), new_key_id: new.id().to_string(), values, backup })
}

/// `secret.key.old-<key id>` beside the key.
pub fn backup_path(key_path: &Path, key_id: &str) -> PathBuf {
    let mut name = key_path.as_os_str().to_owned();
    name.push(format!(".old-{key_id}"));
    PathBuf::from(name)
}

/// Copies the key file `from` to `to` (mode 0600, synced); an existing identical backup is kept.
fn write_key_copy(from: &Path, to: &Path) -> Result<(), RotateError> {
    let bytes = std::fs::read(from).map_err(io("read", from))?;
    if std::fs::read(to).is_ok_and(|existing| existing == bytes) {
        return Ok(());
    }
    let mut tmp = to.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let mut file =
        std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp).map_err(io("create", &tmp))?;
    file.write_all(&bytes).and_then(|()| file.sync_all()).map_err(io("write", &tmp))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).map_err(io("chmod", &tmp))?;
    std::fs::rename(&tmp, to).map_err(io("rename the backup key to", to))?;
    Ok(())
}

/// Where a sealed value lives: its table's row.
enum Row {
    ProjectVar { project_id: i64, name: String },
    ContextVar { context_id: i64, name: String },
    WebhookSecret { project_id: i64 },
}

/// Every sealed value: `(what, where, sealed)`.
async fn sealed_values(w: &mut crate::store::WriteTx) -> Result<Vec<(&'static str, Row, String)>, RotateError> {
    let mut out = Vec::new();
    let rows = sqlx::query("SELECT project_id, name, ciphertext FROM env_vars ORDER BY project_id, name")
        .fetch_all(&mut *w.tx)
        .await
        .map_err(StoreError::from)?;
    for r in &rows {
        let row = Row::ProjectVar { project_id: col(r, "project_id")?, name: col(r, "name")? };
        out.push(("project variable", row, col(r, "ciphertext")?));
    }
    let rows = sqlx::query("SELECT context_id, name, ciphertext FROM context_vars ORDER BY context_id, name")
        .fetch_all(&mut *w.tx)
        .await
        .map_err(StoreError::from)?;
    for r in &rows {
        let row = Row::ContextVar { context_id: col(r, "context_id")?, name: col(r, "name")? };
        out.push(("context variable", row, col(r, "ciphertext")?));
    }
    let rows =
        sqlx::query("SELECT id, webhook_secret_enc FROM projects WHERE webhook_secret_enc IS NOT NULL ORDER BY id")
            .fetch_all(&mut *w.tx)
            .await
            .map_err(StoreError::from)?;
    for r in &rows {
        out.push((
            "webhook secret of project",
            Row::WebhookSecret { project_id: col(r, "id")? },
            col(r, "webhook_secret_enc")?,
        ));
    }
    Ok(out)
}

impl Row {
    fn describe(&self) -> String {
        match self {
            Row::ProjectVar { project_id, name } => format!("{name} of project {project_id}"),
            Row::ContextVar { context_id, name } => format!("{name} of context {context_id}"),
            Row::WebhookSecret { project_id } => project_id.to_string(),
        }
    }

    async fn store(&self, w: &mut crate::store::WriteTx, sealed: &str) -> Result<(), StoreError> {
        let q = match self {
            Row::ProjectVar { project_id, name } => {
                sqlx::query("UPDATE env_vars SET ciphertext = $1 WHERE project_id = $2 AND name = $3")
                    .bind(sealed.to_string())
                    .bind(*project_id)
                    .bind(name.clone())
            }
            Row::ContextVar { context_id, name } => {
                sqlx::query("UPDATE context_vars SET ciphertext = $1 WHERE context_id = $2 AND name = $3")
                    .bind(sealed.to_string())
                    .bind(*context_id)
                    .bind(name.clone())
            }
            Row::WebhookSecret { project_id } => {
                sqlx::query("UPDATE projects SET webhook_secret_enc = $1 WHERE id = $2")
                    .bind(sealed.to_string())
                    .bind(*project_id)
            }
        };
        q.execute(&mut *w.tx).await?;
        Ok(())
    }
}

/// Re-seals every stored value with the ring's current key in one transaction; returns how many.
async fn reseal_all(store: &Store, ring: &Keyring, crash: Option<CrashPoint>) -> Result<usize, RotateError> {
    let mut w = store.write().await?;
    // Everything is opened and re-sealed first, so a value that cannot be opened changes nothing.
    let mut updates = Vec::new();
    for (what, row, sealed) in sealed_values(&mut w).await? {
        let plain = ring.decrypt(&sealed).map_err(|source| RotateError::Open { what, name: row.describe(), source })?;
        updates.push((row, ring.encrypt(&plain)));
    }
    let total = updates.len();
    for (i, (row, sealed)) in updates.iter().enumerate() {
        if crash == Some(CrashPoint::MidTransaction) && i == total / 2 {
            // Dropping the transaction uncommitted is what a crash does to it.
            return Err(RotateError::Crash(CrashPoint::MidTransaction));
        }
        row.store(&mut w, sealed).await?;
    }
    w.commit().await?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing;

    /// A project with a webhook secret and two variables, and a context with one, sealed with the key at `path`.
    async fn secrets(db: &testing::TestDb, path: &Path) {
        let key = SecretKey::load_or_create(path).unwrap_or_else(|e| panic!("{e}"));
        let s = &db.store;
        let mut new = crate::store::projects::tests::new_project("acme/app");
        new.webhook_secret_enc = Some(key.encrypt("hook-secret-value"));
        let p = s.add_project(&new).await.unwrap_or_else(|e| panic!("{e}"));
        for (name, value) in [("A", "alpha-value-1111"), ("B", "beta-value-2222")] {
            s.set_env_var(p.id, name, &key.encrypt(value), "x").await.unwrap_or_else(|e| panic!("{e}"));
        }
        s.create_context("deploy").await.unwrap_or_else(|e| panic!("{e}"));
        s.set_context_var("deploy", "C", &key.encrypt("gamma-value-3333"), "x").await.unwrap_or_else(|e| panic!("{e}"));
    }

    /// Every stored value opened with the key at `path`, in a fixed order.
    async fn opened(store: &Store, path: &Path) -> Result<Vec<String>, SecretError> {
        let key = SecretKey::load(path)?;
        let p = store.project_by_slug("acme/app").await.unwrap_or_else(|e| panic!("{e}"));
        let mut out = vec![key.decrypt(p.webhook_secret_enc.as_deref().unwrap_or_default())?];
        for (_, sealed) in store.secret_ciphertexts(p.id, &["deploy".to_string()]).await.unwrap_or_default() {
            out.push(key.decrypt(&sealed)?);
        }
        out.sort();
        Ok(out)
    }

    const PLAIN: [&str; 4] = ["alpha-value-1111", "beta-value-2222", "gamma-value-3333", "hook-secret-value"];

    #[tokio::test]
    async fn every_secret_is_resealed_and_the_old_key_is_kept() {
        for db in testing::databases().await {
            let name = db.name;
            let path = db.dir.path().join("secret.key");
            secrets(&db, &path).await;
            let old_bytes = std::fs::read(&path).unwrap_or_default();
            let done = rotate_key(&db.store, &path).await.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(done.values, 4, "{name}");
            assert_ne!(done.old_key_id, done.new_key_id, "{name}");
            assert_eq!(opened(&db.store, &path).await.ok(), Some(PLAIN.map(String::from).to_vec()), "{name}");
            // The old key is the backup, 0600, and no longer opens anything.
            assert_eq!(std::fs::read(&done.backup).unwrap_or_default(), old_bytes, "{name}");
            let mode = std::fs::metadata(&done.backup).map(|m| m.permissions().mode() & 0o777).unwrap_or_default();
            assert_eq!(mode, 0o600, "{name}");
            assert!(matches!(opened(&db.store, &done.backup).await, Err(SecretError::UnknownKey { .. })), "{name}");
            assert!(interrupted(&path).is_none(), "{name}");
            // Again: a second rotation works from the new key.
            let again = rotate_key(&db.store, &path).await.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(again.old_key_id, done.new_key_id, "{name}");
            assert_eq!(opened(&db.store, &path).await.ok(), Some(PLAIN.map(String::from).to_vec()), "{name}");
        }
    }

    #[tokio::test]
    async fn a_crash_at_any_step_loses_nothing_and_a_rerun_finishes() {
        for db in testing::databases().await {
            let name = db.name;
            let path = db.dir.path().join("secret.key");
            secrets(&db, &path).await;
            let old_bytes = std::fs::read(&path).unwrap_or_default();

            // Mid-transaction: nothing changed in the database, the old key still opens everything.
            let crashed = rotate_key_crashing(&db.store, &path, Some(CrashPoint::MidTransaction)).await;
            assert!(matches!(crashed, Err(RotateError::Crash(CrashPoint::MidTransaction))), "{name}");
            assert_eq!(opened(&db.store, &path).await.ok(), Some(PLAIN.map(String::from).to_vec()), "{name}");
            let pending = std::fs::read(pending_key_path(&path)).unwrap_or_default();
            assert!(interrupted(&path).is_some(), "{name}: serve refuses until the rotation is finished");

            // After the commit: the values are sealed with the pending key, which the rerun reuses.
            let crashed = rotate_key_crashing(&db.store, &path, Some(CrashPoint::AfterCommit)).await;
            assert!(matches!(crashed, Err(RotateError::Crash(CrashPoint::AfterCommit))), "{name}");
            assert_eq!(std::fs::read(pending_key_path(&path)).unwrap_or_default(), pending, "{name}: key kept");
            assert_eq!(std::fs::read(&path).unwrap_or_default(), old_bytes, "{name}");
            assert!(opened(&db.store, &pending_key_path(&path)).await.is_ok(), "{name}");

            let done = rotate_key(&db.store, &path).await.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(std::fs::read(&path).unwrap_or_default(), pending, "{name}");
            assert_eq!(std::fs::read(&done.backup).unwrap_or_default(), old_bytes, "{name}");
            assert_eq!(opened(&db.store, &path).await.ok(), Some(PLAIN.map(String::from).to_vec()), "{name}");
            assert!(interrupted(&path).is_none(), "{name}");
        }
    }

    #[tokio::test]
    async fn a_value_no_key_opens_stops_the_rotation_before_anything_changes() {
        let db = testing::sqlite().await;
        let path = db.dir.path().join("secret.key");
        secrets(&db, &path).await;
        let stranger = SecretKey::from_bytes(&[7; 32]);
        let p = db.store.project_by_slug("acme/app").await.unwrap_or_else(|e| panic!("{e}"));
        db.store.set_env_var(p.id, "Z", &stranger.encrypt("zzz"), "x").await.unwrap_or_else(|e| panic!("{e}"));
        let err = rotate_key(&db.store, &path).await.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("project variable") && err.contains("nothing was changed"), "{err}");
        let key = SecretKey::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let sealed = db.store.secret_ciphertexts(p.id, &[]).await.unwrap_or_default();
        assert_eq!(sealed.iter().filter(|(_, s)| key.decrypt(s).is_ok()).count(), 2, "old values untouched");
    }
}
