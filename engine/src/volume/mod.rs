//! Volumes: docker's `local` volumes, directories under `<root>/volumes/<name>/_data` with a JSON record
//! (`volume.json`) beside them, plus the parsing of `-v`, `--mount` and `--tmpfs` ([`mount`]) and the first-use
//! copy of image content into a volume ([`copy_up`]).
//!
//! API for the container runtime:
//! ```text
//! let volumes = VolumeStore::open(&root)?;
//! let req = mount::parse_volume_flag("data:/var/lib/app:ro")?;     // or parse_mount_flag / parse_tmpfs_flag
//! match req {
//!     MountRequest::Volume { name: Some(n), .. } => volumes.ensure(&n)?,    // created on first use
//!     MountRequest::Volume { name: None, .. }    => volumes.create_anonymous()?,
//!     MountRequest::Bind { .. }  => req.ensure_bind_source()?,             // -v creates it, --mount must exist
//!     MountRequest::Tmpfs { .. } => …,
//! }
//! volumes.copy_up(&volume, &image_rootfs_dir_at_target)?;   // unless nocopy; before the container starts
//! // OCI mount: bind `volume.mountpoint` on the target (rbind, plus ro).
//! // rm / prune take a callback saying which container uses a volume (from the container records).
//! ```
//! Names follow docker: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`; an omitted name is 64 random hex characters and the
//! volume is labelled `com.docker.volume.anonymous` (what `volume prune` without `-a` removes). Changes happen
//! under the root lock; slow copies are staged in `tmp/` first.

pub mod copy_up;
pub mod mount;

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

pub use mount::MountRequest;

use crate::root::{Root, RootLock};

/// docker's label on volumes created without a name.
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";

/// Errors of the volume store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("get {0}: no such volume")]
    NotFound(String),
    #[error(
        "\"{0}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. \
         If you intended to pass a host directory, use absolute path"
    )]
    InvalidName(String),
    #[error("remove {name}: volume is in use - [{container}] (remove the container first, or use -f)")]
    InUse { name: String, container: String },
    #[error(transparent)]
    Mount(#[from] mount::Error),
    #[error(transparent)]
    Root(#[from] crate::root::Error),
    #[error("volume record {path} is corrupt: {message} (remove the volume with `engine volume rm -f`)")]
    Corrupt { path: PathBuf, message: String },
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
}

pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}

/// A volume as recorded on disk.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Volume {
    pub name: String,
    pub driver: String,
    pub created_at: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// Image content has been copied in once (see [`copy_up`]); it never is again.
    #[serde(default)]
    pub populated: bool,
    /// `<root>/volumes/<name>/_data`, filled in when loaded.
    #[serde(skip)]
    pub mountpoint: PathBuf,
}

impl Volume {
    pub fn is_anonymous(&self) -> bool {
        self.labels.contains_key(ANONYMOUS_LABEL)
    }
}

/// The volumes of one engine root.
#[derive(Debug, Clone)]
pub struct VolumeStore {
    root: Root,
}

impl VolumeStore {
    pub fn open(root: &Root) -> Result<VolumeStore> {
        let store = VolumeStore { root: root.clone() };
        let dir = store.dir();
        fs::create_dir_all(&dir).map_err(io_err(format!("cannot create {}", dir.display())))?;
        Ok(store)
    }

    pub fn root(&self) -> &Root {
        &self.root
    }

    fn dir(&self) -> PathBuf {
        self.root.path().join("volumes")
    }

    fn volume_dir(&self, name: &str) -> PathBuf {
        self.dir().join(name)
    }

    /// Where a volume's content lives (what gets bind-mounted).
    pub fn mountpoint(&self, name: &str) -> PathBuf {
        self.volume_dir(name).join("_data")
    }

    /// Every volume, by name.
    pub fn list(&self) -> Result<Vec<Volume>> {
        let dir = self.dir();
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err(format!("cannot read {}", dir.display())))?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if valid_name(&name) && entry.path().join("volume.json").is_file() {
                out.push(self.get(&name)?);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The volume called `name`.
    pub fn get(&self, name: &str) -> Result<Volume> {
        if !valid_name(name) {
            return Err(Error::NotFound(name.to_owned()));
        }
        let path = self.volume_dir(name).join("volume.json");
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(Error::NotFound(name.to_owned())),
            Err(e) => return Err(io_err(format!("cannot read {}", path.display()))(e)),
        };
        let mut v: Volume = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Corrupt { path: path.clone(), message: e.to_string() })?;
        v.mountpoint = self.mountpoint(name);
        Ok(v)
    }

    /// `volume create [NAME]`: creates a volume, or returns the existing one of that name (docker's behaviour).
    pub fn create(
        &self,
        name: Option<&str>,
        labels: BTreeMap<String, String>,
        options: BTreeMap<String, String>,
    ) -> Result<Volume> {
        let name = match name {
            Some(n) if !valid_name(n) => return Err(Error::InvalidName(n.to_owned())),
            Some(n) => n.to_owned(),
            None => crate::network::random_id(),
        };
        let lock = self.root.lock()?;
        if let Ok(v) = self.get(&name) {
            return Ok(v);
        }
        let volume = Volume {
            name: name.clone(),
            driver: "local".to_owned(),
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            labels,
            options,
            populated: false,
            mountpoint: self.mountpoint(&name),
        };
        let data = self.mountpoint(&name);
        fs::create_dir_all(&data).map_err(io_err(format!("cannot create {}", data.display())))?;
        if let Err(e) = self.save(&volume, &lock) {
            let _ = fs::remove_dir_all(self.volume_dir(&name));
            return Err(e);
        }
        Ok(volume)
    }

    /// The named volume a container mounts, created on first use.
    pub fn ensure(&self, name: &str) -> Result<Volume> {
        match self.get(name) {
            Ok(v) => Ok(v),
            Err(Error::NotFound(_)) => self.create(Some(name), BTreeMap::new(), BTreeMap::new()),
            Err(e) => Err(e),
        }
    }

    /// A new volume with a random name, for `-v /path` and `VOLUME` in images.
    pub fn create_anonymous(&self) -> Result<Volume> {
        self.create(None, BTreeMap::from([(ANONYMOUS_LABEL.to_owned(), String::new())]), BTreeMap::new())
    }

    /// Writes the record (staged, then renamed). Call with the lock held.
    fn save(&self, v: &Volume, _lock: &RootLock) -> Result<()> {
        let dir = self.volume_dir(&v.name);
        let path = dir.join("volume.json");
        let tmp = dir.join(".volume.json.tmp");
        let bytes =
            serde_json::to_vec_pretty(v).map_err(|e| Error::Corrupt { path: path.clone(), message: e.to_string() })?;
        fs::write(&tmp, bytes).map_err(io_err(format!("cannot write {}", tmp.display())))?;
        fs::rename(&tmp, &path).map_err(io_err(format!("cannot write {}", path.display())))
    }

    /// `volume rm [-f] NAME`: refuses a volume a container uses (`used_by` names it) unless `force`.
    pub fn remove(&self, name: &str, force: bool, used_by: &dyn Fn(&str) -> Option<String>) -> Result<()> {
        let v = self.get(name)?;
        if let (Some(container), false) = (used_by(&v.name), force) {
            return Err(Error::InUse { name: v.name, container });
        }
        let lock = self.root.lock()?;
        self.delete(&v, &lock)
    }

    fn delete(&self, v: &Volume, _lock: &RootLock) -> Result<()> {
        let dir = self.volume_dir(&v.name);
        // The record goes first: a volume whose content could only partly be removed is no longer listed.
        let record = dir.join("volume.json");
        fs::remove_file(&record).map_err(io_err(format!("cannot remove {}", record.display())))?;
        fs::remove_dir_all(&dir).map_err(io_err(format!("cannot remove {}", dir.display())))
    }

    /// `volume prune [-a]`: removes unused anonymous volumes (with `all`, every unused volume); returns their
    /// names and the bytes reclaimed.
    pub fn prune(&self, all: bool, in_use: &dyn Fn(&str) -> bool) -> Result<(Vec<String>, u64)> {
        let volumes = self.list()?;
        let lock = self.root.lock()?;
        let mut removed = Vec::new();
        let mut reclaimed = 0;
        for v in volumes {
            if (all || v.is_anonymous()) && !in_use(&v.name) {
                reclaimed += crate::image::layer::dir_size(&v.mountpoint);
                self.delete(&v, &lock)?;
                removed.push(v.name);
            }
        }
        Ok((removed, reclaimed))
    }

    /// docker's `volume inspect` object.
    pub fn inspect_json(&self, v: &Volume) -> Value {
        json!({
            "CreatedAt": v.created_at,
            "Driver": v.driver,
            "Labels": v.labels,
            "Mountpoint": v.mountpoint,
            "Name": v.name,
            "Options": v.options,
            "Scope": "local",
        })
    }
}

/// docker's rule for local volume names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+` (two characters at least).
pub fn valid_name(name: &str) -> bool {
    name.len() >= 2 && crate::network::valid_name(name)
}

/// Whether a directory has no entries (a missing one counts as empty).
pub(crate) fn is_empty_dir(path: &Path) -> bool {
    fs::read_dir(path).map(|mut rd| rd.next().is_none()).unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, VolumeStore) {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
        let root = Root::open(&tmp.path().join("root")).unwrap_or_else(|e| panic!("root: {e}"));
        let store = VolumeStore::open(&root).unwrap_or_else(|e| panic!("store: {e}"));
        (tmp, store)
    }

    #[test]
    fn rm_refuses_a_volume_in_use_unless_forced() -> Result<()> {
        let (_tmp, store) = store();
        store.create(Some("db"), BTreeMap::new(), BTreeMap::new())?;
        let used_by = |name: &str| (name == "db").then(|| "c0ffee".to_owned());
        match store.remove("db", false, &used_by) {
            Err(Error::InUse { name, container }) => assert_eq!((name.as_str(), container.as_str()), ("db", "c0ffee")),
            other => panic!("expected InUse, got {other:?}"),
        }
        let message = store.remove("db", false, &used_by).err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(message, "remove db: volume is in use - [c0ffee] (remove the container first, or use -f)");
        assert!(store.get("db").is_ok(), "a refused rm changes nothing");
        store.remove("db", true, &used_by)?;
        assert!(matches!(store.get("db"), Err(Error::NotFound(_))));
        Ok(())
    }

    #[test]
    fn prune_takes_unused_anonymous_volumes_and_with_all_every_unused_one() -> Result<()> {
        let (_tmp, store) = store();
        let anon = store.create_anonymous()?;
        let busy = store.create_anonymous()?;
        assert!(anon.is_anonymous() && anon.name.len() == 64);
        store.ensure("named")?;
        assert_eq!(store.ensure("named")?.name, "named", "ensure returns the existing volume");
        let in_use = |n: &str| n == busy.name;
        let (removed, _) = store.prune(false, &in_use)?;
        assert_eq!(removed, vec![anon.name.clone()]);
        let (removed, _) = store.prune(true, &in_use)?;
        assert_eq!(removed, vec!["named".to_owned()]);
        assert_eq!(store.list()?.iter().map(|v| v.name.clone()).collect::<Vec<_>>(), vec![busy.name]);
        Ok(())
    }
}
