//! The engine's state directory (`--root`, `DRYDOCK_ROOT`, default `/var/lib/drydock`) and the file lock that
//! makes concurrent CLI calls safe.
//!
//! Layout:
//! ```text
//! <root>/oci-layout, index.json     OCI image layout: the names index (see image::store)
//! <root>/blobs/sha256/<hex>         content-addressed blobs, verified on the way in
//! <root>/layers/<diff_id hex>/      each layer unpacked once, overlay-format whiteouts, shared by all images
//! <root>/containers/<id>/           one directory per container (see container::store)
//! <root>/tmp/                       staging area; renamed into place so a crash leaves no partial state
//! <root>/.lock                      flock: held exclusively around every change of shared state
//! ```
//! The lock is held only while state changes, never while a container runs or while input is read from a pipe:
//! slow work is staged in `tmp/` first, then committed under the lock with renames.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

/// Errors opening or locking the state directory.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot create engine state directory {path}: {source} (choose another with --root or DRYDOCK_ROOT)")]
    Create { path: PathBuf, source: std::io::Error },
    #[error("cannot lock engine state directory {path}: {source}")]
    Lock { path: PathBuf, source: std::io::Error },
}

pub type Result<T> = std::result::Result<T, Error>;

/// An opened state directory.
#[derive(Debug, Clone)]
pub struct Root {
    path: PathBuf,
}

/// The exclusive lock on a state directory; released when dropped.
#[derive(Debug)]
pub struct RootLock {
    _lock: Flock<File>,
}

impl Root {
    /// Opens (and creates, if needed) the state directory at `path`.
    pub fn open(path: &Path) -> Result<Root> {
        let root = Root { path: path.to_path_buf() };
        for dir in [root.path.clone(), root.blobs_dir(), root.layers_dir(), root.containers_dir(), root.tmp_dir()] {
            fs::create_dir_all(&dir).map_err(|source| Error::Create { path: dir.clone(), source })?;
        }
        let layout = root.path.join("oci-layout");
        if !layout.exists() {
            fs::write(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)
                .map_err(|source| Error::Create { path: layout, source })?;
        }
        Ok(root)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn blobs_dir(&self) -> PathBuf {
        self.path.join("blobs").join("sha256")
    }

    pub fn layers_dir(&self) -> PathBuf {
        self.path.join("layers")
    }

    pub fn containers_dir(&self) -> PathBuf {
        self.path.join("containers")
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.path.join("tmp")
    }

    /// Takes the exclusive lock, waiting for other engine processes to release it.
    pub fn lock(&self) -> Result<RootLock> {
        let path = self.path.join(".lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| Error::Lock { path: path.clone(), source })?;
        let mut file = file;
        loop {
            match Flock::lock(file, FlockArg::LockExclusive) {
                Ok(lock) => {
                    let lock = RootLock { _lock: lock };
                    self.clean_tmp(&lock);
                    return Ok(lock);
                }
                Err((f, nix::errno::Errno::EINTR)) => file = f,
                Err((_, e)) => return Err(Error::Lock { path, source: e.into() }),
            }
        }
    }

    /// A fresh private staging directory under `tmp/`. Leftovers of crashed processes are removed by
    /// [`Root::clean_tmp`].
    pub fn staging_dir(&self, what: &str) -> std::io::Result<tempfile::TempDir> {
        tempfile::Builder::new().prefix(&format!("{what}-{}-", std::process::id())).tempdir_in(self.tmp_dir())
    }

    /// Removes staging entries left by processes that no longer exist. Call with the lock held.
    pub fn clean_tmp(&self, _lock: &RootLock) {
        let Ok(entries) = fs::read_dir(self.tmp_dir()) else { return };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let pid = name.split('-').nth(1).and_then(|p| p.parse::<i32>().ok());
            let alive = pid.is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
            if !alive {
                let path = entry.path();
                let _ = fs::remove_dir_all(&path).or_else(|_| fs::remove_file(&path));
            }
        }
    }
}
