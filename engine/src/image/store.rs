//! Blobs and the names index: the on-disk OCI image layout under the engine root.
//!
//! `blobs/sha256/<hex>` holds every manifest, config and layer blob, written to a staging file first and renamed
//! into place only once its sha256 matched. `index.json` is an OCI image index: one entry per (name, manifest),
//! the full normalised name (`docker.io/library/busybox:latest`) in `org.opencontainers.image.ref.name`, and an
//! entry without that annotation for an image that has lost all its names but still exists (dangling). Because it
//! is a valid OCI layout, `skopeo inspect oci:<root>:<name>` reads our images too. `index.json` is rewritten
//! atomically (write + rename) under the root lock.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, ImageIndex, ImageIndexBuilder, MediaType};

use crate::digest::{Digest, Hashing};
use crate::reference::Reference;
use crate::root::Root;

pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Errors of the blob store and index.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "blob {expected} failed verification: its content hashes to {actual} (the source is corrupt or was changed)"
    )]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("blob {0} is missing from the store (run `engine image prune` and pull or import the image again)")]
    MissingBlob(Digest),
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("image index {path} is corrupt: {message} (restore it or remove it to start an empty store)")]
    CorruptIndex { path: PathBuf, message: String },
}

pub type Result<T> = std::result::Result<T, Error>;

/// One line of the names index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    pub name: Option<Reference>,
    pub manifest: Digest,
    pub media_type: String,
    pub size: u64,
}

/// The content-addressed blob directory.
#[derive(Debug, Clone)]
pub struct BlobStore {
    dir: PathBuf,
    tmp: PathBuf,
}

impl BlobStore {
    pub fn new(root: &Root) -> BlobStore {
        BlobStore { dir: root.blobs_dir(), tmp: root.tmp_dir() }
    }

    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(digest.hex())
    }

    pub fn has(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    pub fn size(&self, digest: &Digest) -> Result<u64> {
        fs::metadata(self.path(digest)).map(|m| m.len()).map_err(|_| Error::MissingBlob(digest.clone()))
    }

    pub fn open(&self, digest: &Digest) -> Result<File> {
        File::open(self.path(digest)).map_err(|_| Error::MissingBlob(digest.clone()))
    }

    pub fn read(&self, digest: &Digest) -> Result<Vec<u8>> {
        fs::read(self.path(digest)).map_err(|_| Error::MissingBlob(digest.clone()))
    }

    /// Stores `bytes`, returning their digest. Idempotent.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<Digest> {
        let digest = Digest::of(bytes);
        if !self.has(&digest) {
            let mut staged = self.staging_file()?;
            staged.write_all(bytes).map_err(|source| Error::Write { path: staged.path().to_path_buf(), source })?;
            self.persist(staged, &digest)?;
        }
        Ok(digest)
    }

    /// Streams `reader` into the store. With `expected`, the content must hash to it or nothing is stored.
    pub fn put_reader(&self, reader: impl Read, expected: Option<&Digest>) -> Result<(Digest, u64)> {
        let staged = self.staging_file()?;
        let path = staged.path().to_path_buf();
        let mut hashing = Hashing::new(staged);
        let mut reader = reader;
        io::copy(&mut reader, &mut hashing).map_err(|source| Error::Write { path: path.clone(), source })?;
        let (digest, size, staged) = hashing.finish();
        if let Some(expected) = expected {
            if *expected != digest {
                return Err(Error::DigestMismatch { expected: expected.clone(), actual: digest });
            }
        }
        if !self.has(&digest) {
            self.persist(staged, &digest)?;
        }
        Ok((digest, size))
    }

    /// Moves an already hashed file (on the same filesystem) into the store under `digest`.
    pub fn put_file_as(&self, path: &Path, digest: &Digest) -> Result<()> {
        if self.has(digest) {
            return Ok(());
        }
        fs::rename(path, self.path(digest)).map_err(|source| Error::Write { path: self.path(digest), source })
    }

    pub fn remove(&self, digest: &Digest) {
        let _ = fs::remove_file(self.path(digest));
    }

    /// Every digest in the store (for garbage collection).
    pub fn list(&self) -> Vec<Digest> {
        fs::read_dir(&self.dir)
            .map(|rd| rd.flatten().filter_map(|e| Digest::from_hex(&e.file_name().to_string_lossy()).ok()).collect())
            .unwrap_or_default()
    }

    fn staging_file(&self) -> Result<tempfile::NamedTempFile> {
        tempfile::Builder::new()
            .prefix(&format!("blob-{}-", std::process::id()))
            .tempfile_in(&self.tmp)
            .map_err(|source| Error::Write { path: self.tmp.clone(), source })
    }

    fn persist(&self, staged: tempfile::NamedTempFile, digest: &Digest) -> Result<()> {
        let target = self.path(digest);
        staged.as_file().sync_all().map_err(|source| Error::Write { path: target.clone(), source })?;
        staged.persist(&target).map_err(|e| Error::Write { path: target, source: e.error })?;
        Ok(())
    }
}

/// Reads `index.json`; a missing file is an empty index.
pub fn read_index(root: &Root) -> Result<Vec<IndexEntry>> {
    let path = root.path().join("index.json");
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(Error::Read { path, source }),
    };
    let corrupt = |message: String| Error::CorruptIndex { path: path.clone(), message };
    let index: ImageIndex = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
    let mut entries = Vec::new();
    for m in index.manifests() {
        let manifest: Digest =
            m.digest().to_string().parse().map_err(|e: crate::digest::InvalidDigest| corrupt(e.to_string()))?;
        let name = match m.annotations().as_ref().and_then(|a| a.get(REF_NAME)) {
            Some(n) => Some(Reference::parse(n).map_err(|e| corrupt(e.to_string()))?),
            None => None,
        };
        entries.push(IndexEntry { name, manifest, media_type: m.media_type().to_string(), size: m.size() });
    }
    Ok(entries)
}

/// Rewrites `index.json` atomically. Call with the root lock held.
pub fn write_index(root: &Root, entries: &[IndexEntry]) -> Result<()> {
    let path = root.path().join("index.json");
    let write_err = |source: io::Error| Error::Write { path: path.clone(), source };
    let mut manifests = Vec::with_capacity(entries.len());
    for e in entries {
        let digest: oci_spec::image::Digest = e
            .manifest
            .to_string()
            .parse()
            .map_err(|err: oci_spec::OciSpecError| write_err(io::Error::other(err.to_string())))?;
        let mut d = Descriptor::new(MediaType::from(e.media_type.as_str()), e.size, digest);
        if let Some(name) = &e.name {
            d.set_annotations(Some(HashMap::from([(REF_NAME.to_owned(), name.to_string())])));
        }
        manifests.push(d);
    }
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(manifests)
        .build()
        .map_err(|e| write_err(io::Error::other(e.to_string())))?;
    let json = serde_json::to_vec_pretty(&index).map_err(|e| write_err(io::Error::other(e)))?;
    let mut staged = tempfile::NamedTempFile::new_in(root.tmp_dir()).map_err(write_err)?;
    staged.write_all(&json).map_err(write_err)?;
    staged.as_file().sync_all().map_err(write_err)?;
    staged.persist(&path).map_err(|e| write_err(e.error))?;
    Ok(())
}

/// A claim on blobs and layers that are stored but not yet referenced by the index (an import, commit, build or
/// pull in progress): garbage collection keeps them while the owning process lives. Dropping it ends the claim.
#[derive(Debug)]
pub struct Lease {
    file: tempfile::NamedTempFile,
}

impl Lease {
    pub fn new(root: &Root) -> Result<Lease> {
        let tmp = root.tmp_dir();
        let file = tempfile::Builder::new()
            .prefix(&format!("lease-{}-", std::process::id()))
            .tempfile_in(&tmp)
            .map_err(|source| Error::Write { path: tmp, source })?;
        Ok(Lease { file })
    }

    /// Claims `digest` (a blob digest or a layer diff ID).
    pub fn add(&self, digest: &Digest) -> Result<()> {
        let mut f = self.file.as_file();
        writeln!(f, "{digest}").map_err(|source| Error::Write { path: self.file.path().to_path_buf(), source })
    }

    /// Every digest claimed by a live process.
    pub fn all_live(root: &Root) -> Vec<Digest> {
        let Ok(entries) = fs::read_dir(root.tmp_dir()) else { return Vec::new() };
        let mut out = Vec::new();
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix("lease-") else { continue };
            let alive = rest.split('-').next().is_some_and(|pid| Path::new("/proc").join(pid).exists());
            if alive {
                let text = fs::read_to_string(e.path()).unwrap_or_default();
                out.extend(text.lines().filter_map(|l| l.parse::<Digest>().ok()));
            }
        }
        out
    }
}
