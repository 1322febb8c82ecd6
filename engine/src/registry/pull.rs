//! `engine pull`: fetch an image's manifest, config and layers from a registry into the image store.
//!
//! Order of work, each step verified before the next: the manifest (its bytes must hash to the digest asked
//! for, and to the registry's `Docker-Content-Digest`); for an index / manifest list, the manifest of the
//! requested platform (default `linux/amd64`), verified against the index's descriptor; the config blob; each
//! layer blob, streamed into the blob store, which refuses content that does not hash to the descriptor's
//! digest; each layer unpacked, its uncompressed stream checked against the config's diff ID. The manifest is
//! stored byte for byte and the names (`repo:tag` and `repo@digest`, docker's RepoTags and RepoDigests) are
//! written last. Everything runs inside an [`crate::image::adopt::Ingest`]: a failure at any step removes what
//! the pull added. A blob download cut by the network is retried whole, at most [`BLOB_ATTEMPTS`] times.

use std::io::{self, Read};

use super::client::Client;
use super::credentials::CredentialStore;
use super::manifest::{self, Descriptor, Manifest, Platform};
use super::{Error, RegistryOptions, Result};
use crate::digest::Digest;
use crate::image::adopt::{Adopted, Ingest};
use crate::image::{self, Image, ImageConfig, ImageStore};
use crate::reference::Reference;

/// Attempts to download one blob (the first included) when the connection breaks mid-stream.
pub const BLOB_ATTEMPTS: u32 = 3;

/// What `engine pull` was asked for.
#[derive(Debug, Clone)]
pub struct PullOptions {
    pub platform: Platform,
    pub registry: RegistryOptions,
    pub credentials: CredentialStore,
}

/// Progress of a pull, in docker's vocabulary; `id` is the 12-character short form of a layer blob digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullEvent {
    /// `latest: Pulling from library/busybox`
    Resolved { reference: String, repository: String },
    /// `abc123: Pulling fs layer`
    Waiting { id: String },
    /// `abc123: Already exists`
    Exists { id: String },
    /// `abc123: Downloading` (`current` of `total` bytes)
    Downloading { id: String, current: u64, total: u64 },
    /// `abc123: Retrying` after a broken download
    Retrying { id: String, attempt: u32, reason: String },
    /// `abc123: Download complete` (verified)
    Downloaded { id: String },
    /// `abc123: Extracting`
    Extracting { id: String },
    /// `abc123: Pull complete`
    Complete { id: String },
}

/// The result of a pull.
#[derive(Debug, Clone)]
pub struct PullOutcome {
    pub image: Image,
    /// The digest of what the reference points at in the registry (an index's digest for a multi-platform image).
    pub digest: Digest,
    /// True when the name already pointed at this image: nothing was downloaded.
    pub up_to_date: bool,
}

/// Pulls `reference` into `store`.
pub fn pull(
    store: &ImageStore,
    reference: &Reference,
    options: &PullOptions,
    progress: &mut dyn FnMut(PullEvent),
) -> Result<PullOutcome> {
    let registry = reference.registry.clone();
    let repository = reference.repository.clone();
    let credentials = options.credentials.get(&registry)?;
    let scopes = vec![format!("repository:{repository}:pull")];
    let mut client = Client::connect(&registry, &repository, scopes, credentials, &options.registry)?;
    let wanted = match (&reference.digest, &reference.tag) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.clone(),
        (None, None) => crate::reference::DEFAULT_TAG.to_owned(),
    };
    progress(PullEvent::Resolved { reference: wanted.clone(), repository: repository.clone() });

    let image_name = reference.familiar();
    let (bytes, content_type, header_digest) = client.get_manifest(&wanted, &image_name)?;
    let top_digest = verified_manifest_digest(&client, &bytes, reference.digest.as_ref(), header_digest.as_ref())?;
    let (manifest_bytes, manifest_digest, media_type, parsed) = match Manifest::parse(&bytes, content_type.as_deref())?
    {
        Manifest::Image { media_type, manifest } => (bytes, top_digest.clone(), media_type, manifest),
        Manifest::Index { index, .. } => {
            let chosen = options.platform.select(&index, &image_name)?.clone();
            let (bytes, content_type, header_digest) = client.get_manifest(&chosen.digest.to_string(), &image_name)?;
            let digest = verified_manifest_digest(&client, &bytes, Some(&chosen.digest), header_digest.as_ref())?;
            let content_type = content_type.or_else(|| Some(chosen.media_type.clone()).filter(|m| !m.is_empty()));
            match Manifest::parse(&bytes, content_type.as_deref())? {
                Manifest::Image { media_type, manifest } => (bytes, digest, media_type, manifest),
                Manifest::Index { media_type, .. } => {
                    return Err(Error::UnsupportedManifest(format!("{media_type} nested in a manifest list")))
                }
            }
        }
    };

    let up_to_date = store.resolve(&reference.to_string()).is_ok_and(|i| i.manifest_digest == manifest_digest);
    let mut ingest = store.ingest()?;
    let config = fetch_config(&mut client, &mut ingest, store, &parsed.config)?;
    if config.rootfs.diff_ids.len() != parsed.layers.len() {
        return Err(Error::Protocol {
            registry: registry.clone(),
            what: format!("image {image_name}"),
            message: format!(
                "its manifest has {} layers but its config lists {} diff IDs",
                parsed.layers.len(),
                config.rootfs.diff_ids.len()
            ),
        });
    }
    let mut diff_ids = Vec::with_capacity(parsed.layers.len());
    for (layer, diff_id) in parsed.layers.iter().zip(&config.rootfs.diff_ids) {
        if !manifest::is_known_layer(&layer.media_type) {
            return Err(Error::UnsupportedManifest(format!("layer media type {}", layer.media_type)));
        }
        let diff_id: Digest = diff_id.parse().map_err(|e: crate::digest::InvalidDigest| Error::Protocol {
            registry: registry.clone(),
            what: format!("config of {image_name}"),
            message: e.to_string(),
        })?;
        diff_ids.push(diff_id);
        progress(PullEvent::Waiting { id: layer.digest.short().to_owned() });
    }
    for (layer, diff_id) in parsed.layers.iter().zip(&diff_ids) {
        let id = layer.digest.short().to_owned();
        if ingest.has_blob(&layer.digest)? && store.layer_dir(diff_id).is_dir() {
            ingest.unpack_layer(diff_id, &layer.digest)?;
            progress(PullEvent::Exists { id });
            continue;
        }
        if !store.blobs().has(&layer.digest) {
            fetch_blob(&mut client, &mut ingest, layer, "layer", &id, progress)?;
        }
        progress(PullEvent::Downloaded { id: id.clone() });
        progress(PullEvent::Extracting { id: id.clone() });
        ingest.unpack_layer(diff_id, &layer.digest)?;
        progress(PullEvent::Complete { id });
    }
    ingest.put_bytes(&manifest_bytes)?;
    let mut names = Vec::new();
    if reference.digest.is_none() {
        names.push(Reference { digest: None, ..reference.clone() });
    }
    names.push(Reference { tag: None, digest: Some(top_digest.clone()), ..reference.clone() });
    let adopted = Adopted { manifest: manifest_digest, size: manifest_bytes.len() as u64, media_type, names };
    let image = ingest.commit(&[adopted])?.pop().ok_or(Error::Image(image::Error::NotFound(image_name)))?;
    Ok(PullOutcome { image, digest: top_digest, up_to_date })
}

/// The digest of manifest `bytes`, checked against the digest asked for and the one the registry announced.
fn verified_manifest_digest(
    client: &Client,
    bytes: &[u8],
    expected: Option<&Digest>,
    announced: Option<&Digest>,
) -> Result<Digest> {
    let actual = Digest::of(bytes);
    for want in [expected, announced].into_iter().flatten() {
        if *want != actual {
            return Err(Error::DigestMismatch {
                registry: client.registry().to_owned(),
                repository: client.repository().to_owned(),
                what: "manifest",
                expected: want.clone(),
                actual,
            });
        }
    }
    Ok(actual)
}

fn fetch_config(
    client: &mut Client,
    ingest: &mut Ingest<'_>,
    store: &ImageStore,
    descriptor: &Descriptor,
) -> Result<ImageConfig> {
    if !ingest.has_blob(&descriptor.digest)? {
        fetch_blob(client, ingest, descriptor, "config", descriptor.digest.short(), &mut |_| {})?;
    }
    let bytes = store.blobs().read(&descriptor.digest).map_err(image::Error::from)?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Protocol {
        registry: client.registry().to_owned(),
        what: format!("image config {}", descriptor.digest),
        message: e.to_string(),
    })
}

/// Downloads one blob into the store, verified; retried whole when the connection breaks.
fn fetch_blob(
    client: &mut Client,
    ingest: &mut Ingest<'_>,
    descriptor: &Descriptor,
    what: &'static str,
    id: &str,
    progress: &mut dyn FnMut(PullEvent),
) -> Result<()> {
    let mut attempt = 1;
    loop {
        let (body, _) = client.get_blob(&descriptor.digest)?;
        let mut reader = Counting {
            inner: body.take(descriptor.size),
            read: 0,
            total: descriptor.size,
            id,
            progress,
            failure: None,
        };
        let result = ingest.put_reader(&mut reader, &descriptor.digest);
        match result {
            Ok(_) => return Ok(()),
            Err(image::Error::Store(image::store::Error::DigestMismatch { expected, actual })) => {
                return Err(Error::DigestMismatch {
                    registry: client.registry().to_owned(),
                    repository: client.repository().to_owned(),
                    what,
                    expected,
                    actual,
                })
            }
            Err(e) => match reader.failure.take() {
                Some(reason) if attempt < BLOB_ATTEMPTS => {
                    attempt += 1;
                    progress(PullEvent::Retrying { id: id.to_owned(), attempt, reason });
                    std::thread::sleep(super::client::FIRST_BACKOFF * attempt);
                }
                Some(reason) => {
                    return Err(Error::Interrupted {
                        registry: client.registry().to_owned(),
                        message: format!(
                            "downloading {what} {} from {} ({reason})",
                            descriptor.digest,
                            client.repository()
                        ),
                        attempts: BLOB_ATTEMPTS + 1,
                    })
                }
                None => return Err(e.into()),
            },
        }
    }
}

/// Counts bytes read, reports progress, and remembers a network failure (so it can be told from a disk one).
struct Counting<'a, R> {
    inner: R,
    read: u64,
    total: u64,
    id: &'a str,
    progress: &'a mut dyn FnMut(PullEvent),
    failure: Option<String>,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.read += n as u64;
                if n > 0 {
                    (self.progress)(PullEvent::Downloading {
                        id: self.id.to_owned(),
                        current: self.read,
                        total: self.total,
                    });
                }
                Ok(n)
            }
            Err(e) => {
                self.failure = Some(e.to_string());
                Err(e)
            }
        }
    }
}
