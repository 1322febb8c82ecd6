//! Adopting images made elsewhere — pulled from a registry, loaded from an archive — with their manifest and
//! config blobs kept byte for byte, so image IDs and manifest digests stay those of the source.
//!
//! An [`Ingest`] is one all-or-nothing transaction: every blob it stores is verified (the blob store refuses
//! content that does not hash to the expected digest) and leased, every layer is unpacked and checked against
//! its diff ID, and the names index is written last, in [`Ingest::commit`]. If the ingest is dropped without a
//! commit (an error, a digest mismatch, a panic), the blobs and layer directories it added that nothing else
//! references are removed again, so a failed pull or load leaves the store as it was.

use std::collections::HashSet;
use std::fs;
use std::io::Read;
use std::path::Path;

use super::store::{self, Lease};
use super::{Image, ImageStore, Result};
use crate::digest::Digest;
use crate::reference::Reference;

/// One image (manifest) to name at commit time.
#[derive(Debug, Clone)]
pub struct Adopted {
    pub manifest: Digest,
    pub size: u64,
    pub media_type: String,
    /// Tags and `name@digest` references; empty for a nameless image.
    pub names: Vec<Reference>,
}

/// A transaction that stores blobs and layers, then names images; undone if not committed.
#[derive(Debug)]
pub struct Ingest<'a> {
    store: &'a ImageStore,
    lease: Option<Lease>,
    added_blobs: Vec<Digest>,
    added_layers: Vec<Digest>,
    committed: bool,
}

impl ImageStore {
    /// Starts an all-or-nothing ingest of outside content.
    pub fn ingest(&self) -> Result<Ingest<'_>> {
        Ok(Ingest {
            store: self,
            lease: Some(Lease::new(&self.root)?),
            added_blobs: Vec::new(),
            added_layers: Vec::new(),
            committed: false,
        })
    }
}

impl Ingest<'_> {
    fn lease(&self, digest: &Digest) -> Result<()> {
        if let Some(lease) = &self.lease {
            lease.add(digest)?;
        }
        Ok(())
    }

    /// Whether the store already has `digest`; if so it is claimed for this ingest.
    pub fn has_blob(&self, digest: &Digest) -> Result<bool> {
        self.lease(digest)?;
        Ok(self.store.blobs.has(digest))
    }

    /// Streams `reader` into the store; it must hash to `expected` or nothing is stored.
    pub fn put_reader(&mut self, reader: impl Read, expected: &Digest) -> Result<u64> {
        self.lease(expected)?;
        let existed = self.store.blobs.has(expected);
        let (_, size) = self.store.blobs.put_reader(reader, Some(expected))?;
        if !existed {
            self.added_blobs.push(expected.clone());
        }
        Ok(size)
    }

    /// Stores `bytes` (a manifest or config received whole) and returns their digest.
    pub fn put_bytes(&mut self, bytes: &[u8]) -> Result<Digest> {
        let digest = Digest::of(bytes);
        self.lease(&digest)?;
        let existed = self.store.blobs.has(&digest);
        self.store.blobs.put_bytes(bytes)?;
        if !existed {
            self.added_blobs.push(digest.clone());
        }
        Ok(digest)
    }

    /// Moves a staged file whose content the caller has hashed to `digest` into the store (same filesystem).
    pub fn put_file(&mut self, path: &Path, digest: &Digest) -> Result<()> {
        self.lease(digest)?;
        let existed = self.store.blobs.has(digest);
        self.store.blobs.put_file_as(path, digest)?;
        if !existed {
            self.added_blobs.push(digest.clone());
        }
        Ok(())
    }

    /// Unpacks layer blob `blob` as `diff_id` unless that layer is already on disk; the uncompressed stream must
    /// hash to `diff_id`. Returns whether it was unpacked now.
    pub fn unpack_layer(&mut self, diff_id: &Digest, blob: &Digest) -> Result<bool> {
        self.lease(diff_id)?;
        if self.store.layer_dir(diff_id).is_dir() {
            return Ok(false);
        }
        self.store.ensure_layer(diff_id, blob)?;
        self.added_layers.push(diff_id.clone());
        Ok(true)
    }

    /// Names the adopted images (the index is written last, under the lock) and ends the transaction.
    pub fn commit(mut self, images: &[Adopted]) -> Result<Vec<Image>> {
        let lock = self.store.root.lock()?;
        for image in images {
            if image.names.is_empty() {
                self.store.add_index_entry(&lock, &image.manifest, image.size, image.media_type.clone(), None)?;
            }
            for name in &image.names {
                self.store.add_index_entry(&lock, &image.manifest, image.size, image.media_type.clone(), Some(name))?;
            }
        }
        drop(lock);
        self.committed = true;
        let index = store::read_index(&self.store.root)?;
        images.iter().map(|i| self.store.load(&i.manifest, &index)).collect()
    }

    /// Removes what this ingest added and nothing references (called when it is dropped uncommitted).
    fn discard(&mut self) {
        drop(self.lease.take());
        if self.added_blobs.is_empty() && self.added_layers.is_empty() {
            return;
        }
        let Ok(lock) = self.store.root.lock() else { return };
        let Ok(index) = store::read_index(&self.store.root) else { return };
        let leased = Lease::all_live(&self.store.root);
        let mut keep: HashSet<Digest> = leased.into_iter().collect();
        let manifests: HashSet<&Digest> = index.iter().map(|e| &e.manifest).collect();
        for m in manifests {
            keep.insert(m.clone());
            let Ok(image) = self.store.load(m, &index) else { return }; // unsure what is referenced: keep all
            keep.insert(image.id.clone());
            keep.extend(image.layers.iter().filter_map(|l| l.digest().to_string().parse::<Digest>().ok()));
            keep.extend(image.config.rootfs.diff_ids.iter().filter_map(|d| d.parse::<Digest>().ok()));
        }
        for d in &self.added_blobs {
            if !keep.contains(d) {
                self.store.blobs.remove(d);
            }
        }
        for d in &self.added_layers {
            if !keep.contains(d) {
                let _ = fs::remove_dir_all(self.store.layer_dir(d));
                let _ = fs::remove_file(self.store.root.layers_dir().join(format!("{}.size", d.hex())));
            }
        }
        drop(lock);
    }
}

impl Drop for Ingest<'_> {
    fn drop(&mut self) {
        if !self.committed {
            self.discard();
        }
    }
}
