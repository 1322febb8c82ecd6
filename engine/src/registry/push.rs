//! `engine push`: upload an image's layers, config and manifest to a registry.
//!
//! Blobs go up exactly as they are stored and the manifest is pushed byte for byte, so the digest the registry
//! serves is the local manifest digest (and `name@digest` pulls give back the same image ID). Layers imported,
//! committed or built here are stored as uncompressed tars (`application/vnd.oci.image.layer.v1.tar`) and are
//! pushed that way; layers pulled compressed stay compressed. Why not gzip on push: see `docs/registry.md`.
//!
//! For each blob: `HEAD` first (the registry has it: "Layer already exists"); else a cross-repository mount
//! from another repository of the same registry known to hold it (a `name@digest` recorded by an earlier pull or
//! push of an image with that blob); else a monolithic upload (`POST` a session, `PUT ?digest=` the whole file
//! with its `Content-Length`). The manifest goes last, under the tag; then `name@digest` is recorded locally,
//! which `inspect` shows as RepoDigests.

use std::collections::BTreeMap;

use super::client::{Body, Client, Mount};
use super::credentials::CredentialStore;
use super::manifest::Manifest;
use super::{Error, RegistryOptions, Result};
use crate::digest::Digest;
use crate::image::{self, ImageStore};
use crate::reference::Reference;

/// At most this many other repositories are asked for in one token (one per blob would be enough).
const MAX_MOUNT_SOURCES: usize = 8;

/// Progress of a push, in docker's vocabulary; `id` is the short diff ID of a layer (docker shows those).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushEvent {
    /// `The push refers to repository [localhost:5000/app]`
    Repository { name: String },
    /// `abc123: Preparing`
    Preparing { id: String },
    /// `abc123: Pushing` (`size` bytes)
    Pushing { id: String, size: u64 },
    /// `abc123: Pushed`
    Pushed { id: String },
    /// `abc123: Layer already exists`
    Exists { id: String },
    /// `abc123: Mounted from other`
    Mounted { id: String, from: String },
}

/// The result of a push: `latest: digest: sha256:… size: 527`.
#[derive(Debug, Clone)]
pub struct PushOutcome {
    pub tag: String,
    pub digest: Digest,
    pub size: u64,
}

/// Pushes the local image named `reference` (with a tag) to its registry.
pub fn push(
    store: &ImageStore,
    reference: &Reference,
    options: &RegistryOptions,
    credentials: &CredentialStore,
    progress: &mut dyn FnMut(PushEvent),
) -> Result<PushOutcome> {
    let familiar = reference.familiar();
    if reference.digest.is_some() {
        return Err(Error::Push {
            image: familiar,
            message: "push a tag, not a digest reference (tag the image first with `engine tag`)".into(),
        });
    }
    let tag = reference.tag.clone().unwrap_or_else(|| crate::reference::DEFAULT_TAG.to_owned());
    let image = store.resolve(&reference.to_string()).map_err(|e| match e {
        image::Error::NotFound(_) => Error::Push {
            image: familiar.clone(),
            message: format!(
                "an image does not exist locally with the tag {familiar} (tag one with `engine tag IMAGE {familiar}`)"
            ),
        },
        e => Error::Image(e),
    })?;
    if !image.names.contains(reference) {
        return Err(Error::Push {
            image: familiar.clone(),
            message: format!("an image does not exist locally with the tag {familiar}"),
        });
    }
    progress(PushEvent::Repository { name: reference.familiar_name() });

    let manifest_bytes = store.blobs().read(&image.manifest_digest).map_err(image::Error::from)?;
    let (media_type, manifest) = match Manifest::parse(&manifest_bytes, None)? {
        Manifest::Image { media_type, manifest } => (media_type, manifest),
        Manifest::Index { media_type, .. } => return Err(Error::UnsupportedManifest(media_type)),
    };
    let sources = mount_sources(store, reference)?;
    let mut scopes = vec![format!("repository:{}:pull,push", reference.repository)];
    let mut source_repos: Vec<&String> = sources.values().flatten().collect();
    source_repos.sort();
    source_repos.dedup();
    scopes.extend(source_repos.into_iter().take(MAX_MOUNT_SOURCES).map(|r| format!("repository:{r}:pull")));
    let creds = credentials.get(&reference.registry)?;
    let mut client = Client::connect(&reference.registry, &reference.repository, scopes, creds, options)?;

    let ids: Vec<String> = image
        .config
        .rootfs
        .diff_ids
        .iter()
        .map(|d| d.trim_start_matches("sha256:").chars().take(12).collect())
        .collect();
    for id in &ids {
        progress(PushEvent::Preparing { id: id.clone() });
    }
    for (layer, id) in manifest.layers.iter().zip(&ids) {
        let outcome = upload_blob(&mut client, store, &layer.digest, sources.get(&layer.digest), Some(id), progress)?;
        progress(outcome);
    }
    // Docker shows no line for the config blob.
    upload_blob(&mut client, store, &manifest.config.digest, sources.get(&manifest.config.digest), None, &mut |_| {})?;
    let announced = client.put_manifest(&tag, &manifest_bytes, &media_type)?;
    if let Some(announced) = announced {
        if announced != image.manifest_digest {
            return Err(Error::DigestMismatch {
                registry: reference.registry.clone(),
                repository: reference.repository.clone(),
                what: "pushed manifest",
                expected: image.manifest_digest.clone(),
                actual: announced,
            });
        }
    }
    let by_digest = Reference { tag: None, digest: Some(image.manifest_digest.clone()), ..reference.clone() };
    let lock = store.root().lock().map_err(image::Error::from)?;
    store.add_index_entry(&lock, &image.manifest_digest, manifest_bytes.len() as u64, media_type, Some(&by_digest))?;
    drop(lock);
    Ok(PushOutcome { tag, digest: image.manifest_digest, size: manifest_bytes.len() as u64 })
}

/// Sends one blob unless the registry has it; returns the event describing what happened.
fn upload_blob(
    client: &mut Client,
    store: &ImageStore,
    digest: &Digest,
    sources: Option<&Vec<String>>,
    id: Option<&String>,
    progress: &mut dyn FnMut(PushEvent),
) -> Result<PushEvent> {
    let id = id.cloned().unwrap_or_else(|| digest.short().to_owned());
    if client.has_blob(digest)? {
        return Ok(PushEvent::Exists { id });
    }
    // One mount attempt: a refused mount already opens an upload session, which the upload then uses.
    let mut location = None;
    if let Some(from) = sources.and_then(|s| s.first()) {
        match client.mount_blob(digest, from)? {
            Mount::Mounted => return Ok(PushEvent::Mounted { id, from: from.clone() }),
            Mount::Upload(l) => location = Some(l),
        }
    }
    let path = store.blobs().path(digest);
    let size = store.blobs().size(digest).map_err(image::Error::from)?;
    let location = match location {
        Some(l) => l,
        None => client.start_upload()?,
    };
    progress(PushEvent::Pushing { id: id.clone(), size });
    client.finish_upload(&location, digest, Body::File(path))?;
    Ok(PushEvent::Pushed { id })
}

/// For each blob, other repositories of the same registry that hold it: those named `repo@digest` (recorded by
/// a pull or a push) on an image that contains the blob.
fn mount_sources(store: &ImageStore, target: &Reference) -> Result<BTreeMap<Digest, Vec<String>>> {
    let mut out: BTreeMap<Digest, Vec<String>> = BTreeMap::new();
    for image in store.list()? {
        let repos: Vec<&String> = image
            .names
            .iter()
            .filter(|n| n.digest.is_some() && n.registry == target.registry && n.repository != target.repository)
            .map(|n| &n.repository)
            .collect();
        if repos.is_empty() {
            continue;
        }
        let blobs =
            image.layers.iter().filter_map(|l| l.digest().to_string().parse::<Digest>().ok()).chain([image.id.clone()]);
        for blob in blobs {
            let entry = out.entry(blob).or_default();
            for r in &repos {
                if !entry.contains(r) {
                    entry.push((*r).clone());
                }
            }
        }
    }
    Ok(out)
}
