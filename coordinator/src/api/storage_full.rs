//! A full disk is the operator's problem to fix, not a coordinator bug: writes that fail for want of space
//! (`ENOSPC`/`EDQUOT` on an upload, SQLite's `SQLITE_FULL`, PostgreSQL's `53100 disk_full`) answer
//! `507 insufficient_storage` with a message naming the disk, instead of a generic `500`/`503`. Nothing is
//! half-written: an upload goes to a temporary file that is removed on failure, and a database write is one
//! transaction, rolled back. Runners treat any `5xx` as "retry later", which is what a full disk needs.

use std::path::Path;

use axum::http::StatusCode;

use super::Problem;
use crate::store::StoreError;

/// The problem code of a full disk.
pub const CODE: &str = "insufficient_storage";

/// Whether `e` is the database refusing a write because its disk is full.
pub fn store_disk_full(e: &StoreError) -> bool {
    let StoreError::Database(sqlx::Error::Database(db)) = e else {
        return false;
    };
    // SQLite's primary result code 13 is SQLITE_FULL (sqlx reports the extended code, whose low byte is the
    // primary one); PostgreSQL's SQLSTATE 53100 is disk_full.
    match db.code().as_deref() {
        Some("53100") => true,
        Some(code) => code.parse::<i64>().is_ok_and(|c| c & 0xff == 13),
        None => false,
    }
}

/// Whether an I/O error means "no space left" (the disk, or the user's quota).
pub fn io_disk_full(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::StorageFull || e.raw_os_error() == Some(libc::EDQUOT)
}

/// `507` for a database write that did not fit.
pub fn database_full(e: &StoreError) -> Problem {
    tracing::error!(error = %e, "the database's disk is full");
    Problem::new(
        StatusCode::INSUFFICIENT_STORAGE,
        CODE,
        format!("the coordinator's database disk is full ({e}): free space there, then retry"),
    )
}

/// The problem for an I/O error while writing `what` at `path` under the data directory `data_dir`: `507` naming
/// the disk when it is full, `500` otherwise.
pub fn write_failed(e: &std::io::Error, what: &str, path: &Path, data_dir: &Path) -> Problem {
    if io_disk_full(e) {
        tracing::error!(path = %path.display(), error = %e, "the data directory's disk is full");
        Problem::new(
            StatusCode::INSUFFICIENT_STORAGE,
            CODE,
            format!(
                "cannot store {what}: the disk of the coordinator's data directory {} is full ({e}): free space \
                 there, then retry",
                data_dir.display()
            ),
        )
    } else {
        Problem::internal(format!("cannot store {what} at {}: {e}", path.display()))
    }
}
