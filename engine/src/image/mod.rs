//! The image store: images as OCI manifests + configs in the blob store, named through `index.json`, with each
//! layer unpacked once under `layers/<diff_id>/` and shared by every image and container that uses it.
//!
//! An image's ID is the digest of its config blob, as in docker. Names resolve as docker resolves them: a
//! reference (`busybox` → `docker.io/library/busybox:latest`) first, then a full ID, then a unique ID prefix.
//! Every change is staged under `tmp/` and committed under the root lock, the index last, so a crash never leaves
//! a partial image visible.

pub mod adopt;
pub mod change;
pub mod config;
pub mod import;
pub mod layer;
pub mod store;

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, ImageManifest, ImageManifestBuilder, MediaType};
use serde_json::{json, Value};

pub use config::{Empty, HealthConfig, History, ImageConfig, RootFs, RunConfig};
use store::{BlobStore, IndexEntry};

use crate::digest::{Digest, Hashing};
use crate::reference::Reference;
use crate::root::{Root, RootLock};

/// Errors of the image store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("No such image: {0}")]
    NotFound(String),
    #[error("image ID prefix `{0}` is ambiguous: it matches several images (give more characters)")]
    Ambiguous(String),
    #[error("conflict: unable to remove repository reference \"{name}\" (must force) - container {container} is using its referenced image {image}")]
    InUse { name: String, container: String, image: String },
    #[error("conflict: unable to delete {image} (must be forced) - image is referenced in multiple repositories")]
    MultipleNames { image: String },
    #[error("image {image} is corrupt: {message} (remove it with `engine rmi -f` and import or pull it again)")]
    Corrupt { image: String, message: String },
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error(transparent)]
    Change(#[from] change::Error),
    #[error(transparent)]
    Layer(#[from] layer::Error),
    #[error(transparent)]
    Reference(#[from] crate::reference::Error),
    #[error(transparent)]
    Root(#[from] crate::root::Error),
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
}

pub type Result<T> = std::result::Result<T, Error>;

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}

/// An image as the store knows it.
#[derive(Debug, Clone)]
pub struct Image {
    /// Digest of the config blob: docker's image ID.
    pub id: Digest,
    pub manifest_digest: Digest,
    pub config: ImageConfig,
    /// Every name pointing at this image, sorted.
    pub names: Vec<Reference>,
    /// Layer blobs (possibly compressed), bottom first, parallel to `config.rootfs.diff_ids`.
    pub layers: Vec<Descriptor>,
}

/// What `rmi` did, in docker's words (`Untagged: …`, `Deleted: …`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    Untagged(Reference),
    Deleted(Digest),
}

/// The images of one engine root.
#[derive(Debug, Clone)]
pub struct ImageStore {
    root: Root,
    blobs: BlobStore,
}

impl ImageStore {
    pub fn open(root: &Root) -> Result<ImageStore> {
        Ok(ImageStore { root: root.clone(), blobs: BlobStore::new(root) })
    }

    pub fn root(&self) -> &Root {
        &self.root
    }

    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    /// Every image, newest first.
    pub fn list(&self) -> Result<Vec<Image>> {
        let index = store::read_index(&self.root)?;
        let mut seen: Vec<Digest> = Vec::new();
        let mut images = Vec::new();
        for entry in &index {
            if seen.contains(&entry.manifest) {
                continue;
            }
            seen.push(entry.manifest.clone());
            images.push(self.load(&entry.manifest, &index)?);
        }
        images.sort_by(|a, b| b.config.created.cmp(&a.config.created).then_with(|| a.id.cmp(&b.id)));
        Ok(images)
    }

    /// Finds an image by name, full ID or unique ID prefix (docker's order).
    pub fn resolve(&self, s: &str) -> Result<Image> {
        let index = store::read_index(&self.root)?;
        let by_manifest = |m: &Digest| self.load(m, &index);
        if let Ok(reference) = Reference::parse(s) {
            if let Some(digest) = &reference.digest {
                // A pulled `name@digest` may name a manifest list whose platform manifest is what is stored.
                if let Some(e) = index.iter().find(|e| &e.manifest == digest || e.name.as_ref() == Some(&reference)) {
                    return by_manifest(&e.manifest);
                }
            } else if let Some(e) = index.iter().find(|e| e.name.as_ref() == Some(&reference)) {
                return by_manifest(&e.manifest);
            }
        }
        let hex = s.strip_prefix("sha256:").unwrap_or(s);
        if !hex.is_empty() && hex.len() <= 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut found: Option<Image> = None;
            let mut manifests: Vec<&Digest> = index.iter().map(|e| &e.manifest).collect();
            manifests.dedup();
            for m in manifests {
                let image = by_manifest(m)?;
                if image.id.hex().starts_with(hex) {
                    match &found {
                        Some(f) if f.id != image.id => return Err(Error::Ambiguous(s.to_owned())),
                        _ => found = Some(image),
                    }
                }
            }
            if let Some(image) = found {
                return Ok(image);
            }
        }
        Err(Error::NotFound(s.to_owned()))
    }

    /// The image with this ID.
    pub fn get(&self, id: &Digest) -> Result<Image> {
        let index = store::read_index(&self.root)?;
        for entry in &index {
            let image = self.load(&entry.manifest, &index)?;
            if &image.id == id {
                return Ok(image);
            }
        }
        Err(Error::NotFound(id.to_string()))
    }

    fn load(&self, manifest_digest: &Digest, index: &[IndexEntry]) -> Result<Image> {
        let corrupt = |message: String| Error::Corrupt { image: manifest_digest.to_string(), message };
        let manifest: ImageManifest =
            serde_json::from_slice(&self.blobs.read(manifest_digest)?).map_err(|e| corrupt(e.to_string()))?;
        let id: Digest = manifest
            .config()
            .digest()
            .to_string()
            .parse()
            .map_err(|e: crate::digest::InvalidDigest| corrupt(e.to_string()))?;
        let config: ImageConfig = serde_json::from_slice(&self.blobs.read(&id)?).map_err(|e| corrupt(e.to_string()))?;
        if config.rootfs.diff_ids.len() != manifest.layers().len() {
            return Err(corrupt("the manifest's layers do not match the config's diff_ids".to_owned()));
        }
        let mut names: Vec<Reference> =
            index.iter().filter(|e| &e.manifest == manifest_digest).filter_map(|e| e.name.clone()).collect();
        names.sort();
        Ok(Image { id, manifest_digest: manifest_digest.clone(), config, names, layers: manifest.layers().clone() })
    }

    /// The unpacked layer directories of `image`, bottom first, unpacking any that are not yet on disk.
    pub fn layer_dirs(&self, image: &Image) -> Result<Vec<PathBuf>> {
        let mut dirs = Vec::with_capacity(image.layers.len());
        for (layer, diff_id) in image.layers.iter().zip(&image.config.rootfs.diff_ids) {
            let diff_id: Digest = diff_id.parse().map_err(|e: crate::digest::InvalidDigest| Error::Corrupt {
                image: image.id.to_string(),
                message: e.to_string(),
            })?;
            let blob: Digest = layer.digest().to_string().parse().map_err(|e: crate::digest::InvalidDigest| {
                Error::Corrupt { image: image.id.to_string(), message: e.to_string() }
            })?;
            dirs.push(self.ensure_layer(&diff_id, &blob)?);
        }
        Ok(dirs)
    }

    /// The directory of layer `diff_id`, unpacking blob `blob` into it first if needed. The uncompressed stream
    /// must hash to `diff_id`, or nothing is kept.
    pub fn ensure_layer(&self, diff_id: &Digest, blob: &Digest) -> Result<PathBuf> {
        let dir = self.layer_dir(diff_id);
        if dir.is_dir() {
            return Ok(dir);
        }
        let staging = self.root.staging_dir("layer").map_err(io_err("cannot create a staging directory"))?;
        let target = staging.path().join("fs");
        fs::create_dir(&target).map_err(io_err("cannot create a staging directory"))?;
        let file = self.blobs.open(blob)?;
        let mut hashing = Hashing::new(layer::decompressed(file)?);
        layer::unpack(&mut hashing, &target)?;
        // Read any padding after the end-of-archive marker so the digest covers the whole stream.
        io::copy(&mut hashing, &mut io::sink()).map_err(|e| Error::Layer(layer::Error::Corrupt(e)))?;
        let (actual, _, _) = hashing.finish();
        if &actual != diff_id {
            return Err(store::Error::DigestMismatch { expected: diff_id.clone(), actual }.into());
        }
        self.commit_layer_dir(&target, diff_id)?;
        Ok(dir)
    }

    pub fn layer_dir(&self, diff_id: &Digest) -> PathBuf {
        self.root.layers_dir().join(diff_id.hex())
    }

    /// Moves an unpacked, verified layer into place (no-op if another process got there first).
    fn commit_layer_dir(&self, unpacked: &Path, diff_id: &Digest) -> Result<()> {
        let dir = self.layer_dir(diff_id);
        let size = layer::dir_size(unpacked);
        fs::write(self.root.layers_dir().join(format!("{}.size", diff_id.hex())), size.to_string())
            .map_err(io_err("cannot record the layer size"))?;
        match fs::rename(unpacked, &dir) {
            Ok(()) => Ok(()),
            Err(_) if dir.is_dir() => Ok(()),
            Err(e) => Err(io_err(format!("cannot move layer into {}", dir.display()))(e)),
        }
    }

    /// Uncompressed size of a layer in bytes (0 if unknown).
    pub fn layer_size(&self, diff_id: &str) -> u64 {
        let hex = diff_id.strip_prefix("sha256:").unwrap_or(diff_id);
        fs::read_to_string(self.root.layers_dir().join(format!("{hex}.size")))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Uncompressed size of an image in bytes, as `images` shows it.
    pub fn image_size(&self, image: &Image) -> u64 {
        image.config.rootfs.diff_ids.iter().map(|d| self.layer_size(d)).sum()
    }

    /// Creates an image on top of `parent` (or from scratch) with an optional new layer, the given execution
    /// config and a history line; names it `name` if given. `layer_tar` is an uncompressed tar with OCI
    /// whiteouts. Used by `import`, `commit` and the builder.
    pub fn create_image(
        &self,
        parent: Option<&Image>,
        layer_tar: Option<&Path>,
        run_config: RunConfig,
        history: History,
        name: Option<&Reference>,
    ) -> Result<Image> {
        let mut config = match parent {
            Some(p) => p.config.clone(),
            None => ImageConfig { architecture: "amd64".to_owned(), os: "linux".to_owned(), ..ImageConfig::default() },
        };
        let mut layers = parent.map(|p| p.layers.clone()).unwrap_or_default();
        config.config = run_config;
        config.created = history.created.clone().or_else(|| Some(now_rfc3339()));
        let mut history = history;
        history.empty_layer = layer_tar.is_none();
        config.history.push(history);
        let lease = store::Lease::new(&self.root)?;
        if let Some(tar) = layer_tar {
            let (diff_id, size) = self.add_layer_tar(tar, &lease)?;
            config.rootfs.diff_ids.push(diff_id.to_string());
            layers.push(descriptor(MediaType::ImageLayer, size, &diff_id)?);
        }
        let image = self.commit_image(config, layers, name)?;
        drop(lease);
        Ok(image)
    }

    /// Stores an uncompressed layer tar as a blob and unpacks it; returns its diff ID and size. The lease keeps
    /// garbage collection away from the new blob until the caller has indexed an image that uses it.
    pub fn add_layer_tar(&self, tar: &Path, lease: &store::Lease) -> Result<(Digest, u64)> {
        let file = fs::File::open(tar).map_err(io_err(format!("cannot open {}", tar.display())))?;
        let (diff_id, size) = self.blobs.put_reader(file, None)?;
        lease.add(&diff_id)?;
        if !self.layer_dir(&diff_id).is_dir() {
            self.ensure_layer(&diff_id, &diff_id)?;
        }
        Ok((diff_id, size))
    }

    /// Writes config + manifest blobs and points `name` (if any) at the new image; otherwise it is recorded
    /// without a name.
    pub fn commit_image(
        &self,
        config: ImageConfig,
        layers: Vec<Descriptor>,
        name: Option<&Reference>,
    ) -> Result<Image> {
        let config_bytes = config.to_json();
        let config_digest = self.blobs.put_bytes(&config_bytes)?;
        let manifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(descriptor(MediaType::ImageConfig, config_bytes.len() as u64, &config_digest)?)
            .layers(layers)
            .build()
            .map_err(|e| Error::Corrupt { image: config_digest.to_string(), message: e.to_string() })?;
        let manifest_bytes = serde_json::to_vec(&manifest)
            .map_err(|e| Error::Corrupt { image: config_digest.to_string(), message: e.to_string() })?;
        let manifest_digest = self.blobs.put_bytes(&manifest_bytes)?;
        let lock = self.root.lock()?;
        self.add_index_entry(
            &lock,
            &manifest_digest,
            manifest_bytes.len() as u64,
            MediaType::ImageManifest.to_string(),
            name,
        )?;
        drop(lock);
        let index = store::read_index(&self.root)?;
        self.load(&manifest_digest, &index)
    }

    /// Records `manifest` in the index under `name` (moving the name if it pointed elsewhere), or as a nameless
    /// entry. Call with the lock held.
    pub fn add_index_entry(
        &self,
        _lock: &RootLock,
        manifest: &Digest,
        size: u64,
        media_type: String,
        name: Option<&Reference>,
    ) -> Result<()> {
        let before = store::read_index(&self.root)?;
        if name.is_some() && before.iter().any(|e| e.name.as_ref() == name && &e.manifest == manifest) {
            // Already there (a rebuild that hit the cache all the way): no rewrite, no fsync.
            return Ok(());
        }
        let mut index = before.clone();
        if let Some(name) = name {
            index.retain(|e| e.name.as_ref() != Some(name));
            index.retain(|e| !(e.manifest == *manifest && e.name.is_none()));
        } else if index.iter().any(|e| &e.manifest == manifest) {
            return Ok(());
        }
        index.push(IndexEntry { name: name.cloned(), manifest: manifest.clone(), media_type, size });
        keep_dangling_entries(&mut index, &before);
        Ok(store::write_index(&self.root, &index)?)
    }

    /// `engine tag SOURCE TARGET`.
    pub fn tag(&self, source: &str, target: &str) -> Result<Image> {
        let image = self.resolve(source)?;
        let target = Reference::parse(target)?;
        let lock = self.root.lock()?;
        let size = self.blobs.size(&image.manifest_digest)?;
        self.add_index_entry(&lock, &image.manifest_digest, size, MediaType::ImageManifest.to_string(), Some(&target))?;
        drop(lock);
        self.get(&image.id)
    }

    /// `engine rmi [-f] NAME|ID`. `used_by` names a container using an image ID, if any.
    pub fn remove(&self, s: &str, force: bool, used_by: &dyn Fn(&Digest) -> Option<String>) -> Result<Vec<Removal>> {
        let image = self.resolve(s)?;
        let lock = self.root.lock()?;
        let mut index = store::read_index(&self.root)?;
        let by_name = Reference::parse(s).ok().filter(|r| image.names.contains(r));
        let mut removals = Vec::new();
        let untag: Vec<Reference> = match &by_name {
            // Untagging the last tag also drops the image's `name@digest` references (RepoDigests), as docker does.
            Some(r) if r.tag.is_some() && !image.names.iter().any(|n| n.tag.is_some() && n != r) => {
                std::iter::once(r.clone()).chain(image.names.iter().filter(|n| n.tag.is_none()).cloned()).collect()
            }
            Some(r) => vec![r.clone()],
            None if image.names.iter().filter(|n| n.tag.is_some()).count() > 1 && !force => {
                return Err(Error::MultipleNames { image: image.id.short().to_owned() });
            }
            None => image.names.clone(),
        };
        let last_name = untag.len() == image.names.len();
        let user = used_by(&image.id);
        if let (true, Some(container)) = (last_name, &user) {
            if !force {
                return Err(Error::InUse {
                    name: by_name.map(|r| r.familiar()).unwrap_or_else(|| s.to_owned()),
                    container: container.chars().take(12).collect(),
                    image: image.id.short().to_owned(),
                });
            }
        }
        index.retain(|e| !(e.manifest == image.manifest_digest && e.name.as_ref().is_some_and(|n| untag.contains(n))));
        removals.extend(untag.into_iter().map(Removal::Untagged));
        let still_named = index.iter().any(|e| e.manifest == image.manifest_digest);
        if !still_named {
            if user.is_some() {
                // A container still needs it: keep it, nameless, as docker does.
                let size = self.blobs.size(&image.manifest_digest)?;
                index.push(IndexEntry {
                    name: None,
                    manifest: image.manifest_digest.clone(),
                    media_type: MediaType::ImageManifest.to_string(),
                    size,
                });
            } else {
                index.retain(|e| e.manifest != image.manifest_digest);
                removals.push(Removal::Deleted(image.id.clone()));
            }
        }
        store::write_index(&self.root, &index)?;
        self.collect_garbage(&lock, &index)?;
        Ok(removals)
    }

    /// `engine image prune [-a]`: removes nameless images no container uses (with `all`, every unused image).
    pub fn prune(&self, all: bool, in_use: &dyn Fn(&Digest) -> bool) -> Result<(Vec<Removal>, u64)> {
        let images = self.list()?;
        let lock = self.root.lock()?;
        let mut index = store::read_index(&self.root)?;
        let mut removals = Vec::new();
        let before = self.store_size();
        for image in images {
            let dangling = image.names.iter().all(|n| n.tag.is_none()); // `name@digest` references are not tags
            if (dangling || all) && !in_use(&image.id) {
                index.retain(|e| e.manifest != image.manifest_digest);
                removals.extend(image.names.iter().cloned().map(Removal::Untagged));
                removals.push(Removal::Deleted(image.id.clone()));
            }
        }
        store::write_index(&self.root, &index)?;
        self.collect_garbage(&lock, &index)?;
        Ok((removals, before.saturating_sub(self.store_size())))
    }

    fn store_size(&self) -> u64 {
        self.blobs.list().iter().filter_map(|d| self.blobs.size(d).ok()).sum::<u64>()
            + self.layer_dirs_on_disk().iter().map(|d| self.layer_size(d.hex())).sum::<u64>()
    }

    fn layer_dirs_on_disk(&self) -> Vec<Digest> {
        fs::read_dir(self.root.layers_dir())
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.path().is_dir())
                    .filter_map(|e| Digest::from_hex(&e.file_name().to_string_lossy()).ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Removes blobs and layer directories no indexed image refers to. Call with the lock held.
    fn collect_garbage(&self, _lock: &RootLock, index: &[IndexEntry]) -> Result<()> {
        let leased = store::Lease::all_live(&self.root);
        let mut keep_layers: HashSet<String> = leased.iter().map(|d| d.hex().to_owned()).collect();
        let mut keep_blobs: HashSet<Digest> = leased.into_iter().collect();
        let manifests: BTreeSet<&Digest> = index.iter().map(|e| &e.manifest).collect();
        for m in manifests {
            let image = self.load(m, index)?;
            keep_blobs.insert(m.clone());
            keep_blobs.insert(image.id.clone());
            for l in &image.layers {
                if let Ok(d) = l.digest().to_string().parse::<Digest>() {
                    keep_blobs.insert(d);
                }
            }
            keep_layers.extend(image.config.rootfs.diff_ids.iter().map(|d| d.trim_start_matches("sha256:").to_owned()));
        }
        for d in self.blobs.list() {
            if !keep_blobs.contains(&d) {
                self.blobs.remove(&d);
            }
        }
        for d in self.layer_dirs_on_disk() {
            if !keep_layers.contains(d.hex()) {
                let dir = self.layer_dir(&d);
                let _ = fs::remove_dir_all(&dir);
                let _ = fs::remove_file(self.root.layers_dir().join(format!("{}.size", d.hex())));
            }
        }
        Ok(())
    }

    /// `docker image inspect` JSON.
    pub fn inspect_json(&self, image: &Image) -> Value {
        let c = &image.config;
        let lower: Vec<String> = c
            .rootfs
            .diff_ids
            .iter()
            .rev()
            .map(|d| self.root.layers_dir().join(d.trim_start_matches("sha256:")).display().to_string())
            .collect();
        json!({
            "Id": image.id.to_string(),
            "RepoTags": image.names.iter().filter(|n| n.tag.is_some()).map(Reference::familiar).collect::<Vec<_>>(),
            "RepoDigests": image.names.iter().filter(|n| n.digest.is_some()).map(Reference::familiar).collect::<Vec<_>>(),
            "Parent": "",
            "Comment": c.history.last().and_then(|h| h.comment.clone()).unwrap_or_default(),
            "Created": c.created.clone().unwrap_or_default(),
            "DockerVersion": "",
            "Author": c.author.clone().unwrap_or_default(),
            "Config": docker_run_config(&c.config),
            "Architecture": c.architecture,
            "Variant": c.variant,
            "Os": c.os,
            "Size": self.image_size(image),
            "GraphDriver": { "Name": "overlay2", "Data": { "LowerDir": lower.join(":") } },
            "RootFS": { "Type": c.rootfs.kind, "Layers": c.rootfs.diff_ids },
            "Metadata": { "LastTagTime": "0001-01-01T00:00:00Z" },
            "Descriptor": {
                "mediaType": MediaType::ImageManifest.to_string(),
                "digest": image.manifest_digest.to_string(),
                "size": self.blobs.size(&image.manifest_digest).unwrap_or(0),
            },
        })
    }

    /// `docker history` rows, newest first: (image ID or None for `<missing>`, history entry, layer size).
    pub fn history(&self, image: &Image) -> Vec<(Option<Digest>, History, u64)> {
        let mut diff_ids = image.config.rootfs.diff_ids.iter();
        let mut rows: Vec<(Option<Digest>, History, u64)> = image
            .config
            .history
            .iter()
            .map(|h| {
                let size = if h.empty_layer { 0 } else { diff_ids.next().map(|d| self.layer_size(d)).unwrap_or(0) };
                (None, h.clone(), size)
            })
            .collect();
        if rows.is_empty() {
            // Images without history (some imports): one row per layer.
            rows =
                image.config.rootfs.diff_ids.iter().map(|d| (None, History::default(), self.layer_size(d))).collect();
        }
        rows.reverse();
        if let Some(first) = rows.first_mut() {
            first.0 = Some(image.id.clone());
        }
        rows
    }
}

/// An entry for a manifest that had names and lost them all keeps the image, nameless: it is only removed by
/// `rmi` or `prune`, as docker keeps `<none>` images.
fn keep_dangling_entries(index: &mut Vec<IndexEntry>, before: &[IndexEntry]) {
    for old in before {
        if !index.iter().any(|e| e.manifest == old.manifest) {
            index.push(IndexEntry { name: None, ..old.clone() });
        }
    }
}

fn descriptor(media_type: MediaType, size: u64, digest: &Digest) -> Result<Descriptor> {
    let d: oci_spec::image::Digest = digest
        .to_string()
        .parse()
        .map_err(|e: oci_spec::OciSpecError| Error::Corrupt { image: digest.to_string(), message: e.to_string() })?;
    Ok(Descriptor::new(media_type, size, d))
}

/// The run config as docker's inspect shows it (its full set of keys, nulls included).
pub fn docker_run_config(c: &RunConfig) -> Value {
    json!({
        "Hostname": "", "Domainname": "", "User": c.user,
        "AttachStdin": false, "AttachStdout": false, "AttachStderr": false,
        "ExposedPorts": if c.exposed_ports.is_empty() { Value::Null } else { json!(c.exposed_ports) },
        "Tty": false, "OpenStdin": false, "StdinOnce": false,
        "Env": if c.env.is_empty() { Value::Null } else { json!(c.env) },
        "Cmd": c.cmd, "Healthcheck": c.healthcheck, "Image": "",
        "Volumes": if c.volumes.is_empty() { Value::Null } else { json!(c.volumes) },
        "WorkingDir": c.working_dir, "Entrypoint": c.entrypoint,
        "OnBuild": if c.on_build.is_empty() { Value::Null } else { json!(c.on_build) },
        "Labels": if c.labels.is_empty() { Value::Null } else { json!(c.labels) },
        "StopSignal": c.stop_signal, "Shell": if c.shell.is_empty() { Value::Null } else { json!(c.shell) },
    })
}

/// Now, as RFC 3339 with nanoseconds (docker's `Created` format).
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}
