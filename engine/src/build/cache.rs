//! The layer cache of `engine build`: one record per executed step, found by a key made of the parent image ID
//! and the step as it ran (the expanded instruction, the build args in effect for `RUN`, a hash of the copied
//! files' contents, modes and owners for `COPY`/`ADD`). The record holds the resulting image — its config and
//! layer descriptors — so a hit reproduces the very same image ID without running anything.
//!
//! Records live in `<root>/build-cache/<key>.json`, outside `index.json`: intermediate images are never listed
//! by `images` and never pruned as dangling. Their layers are ordinary blobs: those of a tagged image are kept by
//! the store's garbage collection (a step's layers are a prefix of every later step's), those of abandoned
//! builds go with the next `rmi`/`prune`, which makes their records dangling; a dangling record is a miss and is
//! deleted by [`BuildCache::prune_dangling`] (called by `image prune`) or when it is next looked up.

use std::fs;
use std::io;
use std::path::PathBuf;

use oci_spec::image::Descriptor;
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::image::store::BlobStore;
use crate::image::ImageConfig;
use crate::root::Root;

/// An image produced by a build step: not (yet) in the index.
#[derive(Debug, Clone, PartialEq)]
pub struct StepImage {
    pub config: ImageConfig,
    /// Layer blobs, bottom first, parallel to `config.rootfs.diff_ids`.
    pub layers: Vec<Descriptor>,
}

impl StepImage {
    /// The image ID: the digest of the config as the store will write it.
    pub fn id(&self) -> Digest {
        Digest::of(&self.config.to_json())
    }
}

#[derive(Serialize, Deserialize)]
struct Record {
    config: ImageConfig,
    layers: Vec<Descriptor>,
}

/// The cache key of a step: parent ID + everything that decides the step's result.
pub fn key(parent: Option<&Digest>, step: &str) -> Digest {
    let parent = parent.map_or_else(|| "scratch".to_owned(), Digest::to_string);
    Digest::of(format!("{parent}\n{step}").as_bytes())
}

/// The build cache of one engine root.
#[derive(Debug, Clone)]
pub struct BuildCache {
    dir: PathBuf,
    blobs: BlobStore,
}

impl BuildCache {
    pub fn open(root: &Root) -> BuildCache {
        BuildCache { dir: root.path().join("build-cache"), blobs: BlobStore::new(root) }
    }

    fn path(&self, key: &Digest) -> PathBuf {
        self.dir.join(format!("{}.json", key.hex()))
    }

    /// The image a step with this key made before, if its record is intact and its layers are still stored.
    pub fn get(&self, key: &Digest) -> Option<StepImage> {
        let path = self.path(key);
        let bytes = fs::read(&path).ok()?;
        let Ok(record) = serde_json::from_slice::<Record>(&bytes) else {
            let _ = fs::remove_file(&path);
            return None;
        };
        if !self.layers_present(&record.layers) {
            let _ = fs::remove_file(&path);
            return None;
        }
        Some(StepImage { config: record.config, layers: record.layers })
    }

    /// Records the image a step made (replacing an older record with the same key).
    pub fn put(&self, key: &Digest, image: &StepImage) -> io::Result<()> {
        fs::create_dir_all(&self.dir)?;
        let record = Record { config: image.config.clone(), layers: image.layers.clone() };
        let bytes = serde_json::to_vec(&record).map_err(io::Error::other)?;
        let tmp = self.dir.join(format!(".{}.{}", key.hex(), std::process::id()));
        fs::write(&tmp, bytes)?;
        fs::rename(&tmp, self.path(key))
    }

    fn layers_present(&self, layers: &[Descriptor]) -> bool {
        layers.iter().all(|l| l.digest().to_string().parse::<Digest>().is_ok_and(|d| self.blobs.has(&d)))
    }

    /// Deletes records whose layers are gone (their builds' images were removed); returns how many.
    pub fn prune_dangling(&self) -> usize {
        let Ok(entries) = fs::read_dir(&self.dir) else { return 0 };
        let mut removed = 0;
        for entry in entries.flatten() {
            let path = entry.path();
            let keep = fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<Record>(&b).ok())
                .is_some_and(|r| self.layers_present(&r.layers));
            if !keep && fs::remove_file(&path).is_ok() {
                removed += 1;
            }
        }
        removed
    }
}
