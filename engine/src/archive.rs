//! Image archives: `engine save` and `engine load`, compatible with `docker save` / `docker load`, skopeo's
//! `docker-archive:` and `oci-archive:` transports and `podman save`.
//!
//! **Save** writes what docker ≥ 25 writes: one tar that is both a docker archive and an OCI image layout.
//! Every blob (manifests, configs, layers — exactly as stored, so a pulled gzip layer stays gzip) is written
//! once under `blobs/sha256/<hex>`; `manifest.json` lists per image its `Config`, `RepoTags` and `Layers` as
//! paths to those blobs; `index.json` + `oci-layout` make the same tar an OCI layout, each entry annotated with
//! `io.containerd.image.name` (the full name) and `org.opencontainers.image.ref.name` (the tag). Members have
//! mtime 0 and fixed owners, so saving the same images twice gives the same bytes.
//!
//! **Load** reads a docker archive (any layout of `manifest.json` paths: docker ≥ 25, older docker's
//! `<id>/layer.tar` + `<hex>.json`, skopeo, podman) or an OCI layout (`index.json`, nested indexes resolved to
//! `linux/amd64`), plain or gzip'd, from a file or a pipe. The archive is untrusted: members are streamed into
//! numbered staging files (never written by their own names), names that climb out (`../x`) or links that
//! point out of the archive are refused, JSON members are size-limited, every blob named by a digest
//! (`blobs/sha256/<hex>`, `<hex>.json`, OCI descriptors) must hash to it, and every layer's uncompressed
//! stream must hash to its config's diff ID. Storing happens in one [`crate::image::adopt::Ingest`], names
//! last: a corrupt archive changes nothing.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor as OciDescriptor, ImageManifestBuilder, MediaType};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::digest::{Digest, Hashing};
use crate::image::adopt::Adopted;
use crate::image::{self, layer, Image, ImageConfig, ImageStore};
use crate::reference::Reference;
use crate::registry::manifest::{self, Descriptor, Manifest, Platform};

/// JSON members (`manifest.json`, `index.json`, configs, manifests) larger than this are refused.
const MAX_JSON_BYTES: u64 = 16 << 20;
/// Symlink / hard link members resolved at most this deep.
const MAX_LINK_DEPTH: usize = 16;
const CONTAINERD_NAME: &str = "io.containerd.image.name";
const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Errors saving or loading an archive. Loading errors say that nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid image archive: {0} (nothing was loaded)")]
    Invalid(String),
    #[error("invalid image archive: member `{0}` points outside the archive (refusing a hostile archive; nothing was loaded)")]
    Escape(String),
    #[error("invalid image archive: `{0}` is missing (the archive is incomplete or corrupt; nothing was loaded)")]
    Missing(String),
    #[error("invalid image archive: `{member}` should have digest {expected} but hashes to {actual} (the archive is corrupt; nothing was loaded)")]
    DigestMismatch { member: String, expected: Digest, actual: Digest },
    #[error("invalid image archive: it is neither a docker archive (manifest.json) nor an OCI layout (index.json) (nothing was loaded)")]
    UnknownFormat,
    #[error("cannot read the archive: {0}")]
    Read(io::Error),
    #[error("cannot write {path}: {source}")]
    Write { path: String, source: io::Error },
    #[error(transparent)]
    Image(#[from] image::Error),
    #[error(transparent)]
    Registry(#[from] crate::registry::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

/// One `manifest.json` entry (docker's field names).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    repo_tags: Vec<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    layers: Vec<String>,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

/// What `load` added: the image and the names it got.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub image: Image,
    pub names: Vec<Reference>,
}

// ---------------------------------------------------------------------------------------------------------- save

/// `engine save`: writes `images` (names or IDs) to `out` as a docker archive that is also an OCI layout.
pub fn save(store: &ImageStore, images: &[String], out: impl Write) -> Result<()> {
    // (image, the tags asked for) in the order given, each image once.
    let mut chosen: Vec<(Image, Vec<Reference>)> = Vec::new();
    for name in images {
        let image = store.resolve(name)?;
        let tag = Reference::parse(name).ok().filter(|r| r.tag.is_some() && image.names.contains(r));
        match chosen.iter_mut().find(|(i, _)| i.id == image.id) {
            Some((_, tags)) => {
                if let Some(t) = tag.filter(|t| !tags.contains(t)) {
                    tags.push(t);
                }
            }
            None => chosen.push((image, tag.into_iter().collect())),
        }
    }
    let mut tar = tar::Builder::new(BufWriter::with_capacity(256 * 1024, out));
    let mut written: Vec<Digest> = Vec::new();
    append_dir(&mut tar, "blobs/")?;
    append_dir(&mut tar, "blobs/sha256/")?;
    let mut docker_entries = Vec::new();
    let mut index_entries = Vec::new();
    for (image, tags) in &chosen {
        let manifest_size = store.blobs().size(&image.manifest_digest).map_err(image::Error::from)?;
        let mut layer_paths = Vec::new();
        let layer_digests: Vec<Digest> = image
            .layers
            .iter()
            .map(|l| l.digest().to_string().parse::<Digest>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| Error::Invalid(format!("image {}: {e}", image.id)))?;
        for d in [image.manifest_digest.clone(), image.id.clone()].iter().chain(&layer_digests) {
            if !written.contains(d) {
                append_blob(&mut tar, store, d)?;
                written.push(d.clone());
            }
        }
        for d in &layer_digests {
            layer_paths.push(format!("blobs/sha256/{}", d.hex()));
        }
        docker_entries.push(DockerEntry {
            config: format!("blobs/sha256/{}", image.id.hex()),
            repo_tags: tags.iter().map(Reference::familiar).collect(),
            layers: layer_paths,
        });
        let media_type = stored_media_type(store, image);
        let descriptor = |annotations: Option<serde_json::Value>| {
            let mut d =
                json!({ "mediaType": media_type, "digest": image.manifest_digest.to_string(), "size": manifest_size });
            if let (Some(a), Some(obj)) = (annotations, d.as_object_mut()) {
                obj.insert("annotations".into(), a);
            }
            d
        };
        if tags.is_empty() {
            index_entries.push(descriptor(None));
        }
        for t in tags {
            let tag = t.tag.clone().unwrap_or_default();
            index_entries.push(descriptor(Some(json!({ CONTAINERD_NAME: t.to_string(), REF_NAME: tag }))));
        }
    }
    let index = json!({ "schemaVersion": 2, "mediaType": manifest::OCI_INDEX, "manifests": index_entries });
    append_bytes(&mut tar, "index.json", &to_json(&index)?)?;
    append_bytes(&mut tar, "manifest.json", &to_json(&docker_entries)?)?;
    append_bytes(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let out = tar.into_inner().map_err(write_err("the archive"))?;
    out.into_inner()
        .map_err(|e| write_err("the archive")(e.into_error()))?
        .flush()
        .map_err(write_err("the archive"))?;
    Ok(())
}

/// The media type of a stored manifest (its `mediaType` field; OCI when absent).
fn stored_media_type(store: &ImageStore, image: &Image) -> String {
    store
        .blobs()
        .read(&image.manifest_digest)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v.get("mediaType").and_then(|m| m.as_str()).map(str::to_owned))
        .unwrap_or_else(|| manifest::OCI_MANIFEST.to_owned())
}

fn to_json(value: &impl Serialize) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| write_err("the archive")(io::Error::other(e)))
}

fn write_err(what: &str) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Write { path: what.to_owned(), source }
}

fn header(kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h
}

fn append_dir<W: Write>(tar: &mut tar::Builder<W>, path: &str) -> Result<()> {
    let mut h = header(tar::EntryType::Directory, 0, 0o755);
    tar.append_data(&mut h, path, io::empty()).map_err(write_err("the archive"))
}

fn append_bytes<W: Write>(tar: &mut tar::Builder<W>, path: &str, bytes: &[u8]) -> Result<()> {
    let mut h = header(tar::EntryType::Regular, bytes.len() as u64, 0o644);
    tar.append_data(&mut h, path, bytes).map_err(write_err("the archive"))
}

fn append_blob<W: Write>(tar: &mut tar::Builder<W>, store: &ImageStore, digest: &Digest) -> Result<()> {
    let file = store.blobs().open(digest).map_err(image::Error::from)?;
    let size = file.metadata().map_err(write_err("the archive"))?.len();
    let mut h = header(tar::EntryType::Regular, size, 0o644);
    let path = format!("blobs/sha256/{}", digest.hex());
    tar.append_data(&mut h, &path, BufReader::with_capacity(256 * 1024, file)).map_err(write_err("the archive"))
}

// ---------------------------------------------------------------------------------------------------------- load

/// A regular member, staged under a numbered name with its digest.
#[derive(Debug)]
struct Member {
    file: PathBuf,
    digest: Digest,
    size: u64,
}

/// The archive's members by clean relative path, and its links.
#[derive(Debug, Default)]
struct Members {
    files: HashMap<String, Member>,
    /// Link path → the path it stands for (already made relative to the archive root).
    links: HashMap<String, String>,
}

impl Members {
    fn get(&self, name: &str) -> Result<&Member> {
        let mut name = clean(name).ok_or_else(|| Error::Escape(name.to_owned()))?;
        for _ in 0..MAX_LINK_DEPTH {
            if let Some(m) = self.files.get(&name) {
                return Ok(m);
            }
            match self.links.get(&name) {
                Some(target) => name = target.clone(),
                None => return Err(Error::Missing(name)),
            }
        }
        Err(Error::Invalid(format!("`{name}`: too many levels of links")))
    }

    /// A member that must hash to `digest`, looked up at `blobs/sha256/<hex>`.
    fn blob(&self, digest: &Digest) -> Result<&Member> {
        let name = format!("blobs/sha256/{}", digest.hex());
        let m = self.get(&name)?;
        if &m.digest != digest {
            return Err(Error::DigestMismatch { member: name, expected: digest.clone(), actual: m.digest.clone() });
        }
        Ok(m)
    }

    fn read_json<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<T> {
        let m = self.get(name)?;
        read_json_member(name, m)
    }
}

fn read_json_member<T: serde::de::DeserializeOwned>(name: &str, m: &Member) -> Result<T> {
    if m.size > MAX_JSON_BYTES {
        return Err(Error::Invalid(format!("`{name}` is {} bytes, too large for JSON metadata", m.size)));
    }
    let bytes = fs::read(&m.file).map_err(Error::Read)?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Invalid(format!("`{name}`: {e}")))
}

/// The clean relative form of a member name (`./a//b` → `a/b`); `None` if it climbs out.
fn clean(name: &str) -> Option<String> {
    let rel = layer::clean_relative(std::ffi::OsStr::new(name))?;
    Some(rel.to_string_lossy().into_owned())
}

/// Streams the archive into numbered staging files, hashing each.
fn stage(input: impl Read, dir: &Path) -> Result<Members> {
    let reader = layer::decompressed(input).map_err(|e| Error::Invalid(e.to_string()))?;
    let mut archive = tar::Archive::new(reader);
    let mut members = Members::default();
    let entries = archive.entries().map_err(Error::Read)?;
    for (n, entry) in entries.enumerate() {
        let mut entry = entry.map_err(|e| Error::Invalid(format!("corrupt or truncated tar: {e}")))?;
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let name =
            clean(&shown).filter(|_| std::str::from_utf8(&raw).is_ok()).ok_or_else(|| Error::Escape(shown.clone()))?;
        let kind = entry.header().entry_type();
        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let file = dir.join(format!("m{n}"));
                let out =
                    File::create(&file).map_err(|e| Error::Write { path: file.display().to_string(), source: e })?;
                let mut hashing = Hashing::new(BufWriter::with_capacity(256 * 1024, out));
                let expected = entry.size();
                io::copy(&mut entry, &mut hashing)
                    .map_err(|e| Error::Invalid(format!("corrupt or truncated tar at `{shown}`: {e}")))?;
                let (digest, size, writer) = hashing.finish();
                writer
                    .into_inner()
                    .map_err(|e| Error::Write { path: file.display().to_string(), source: e.into_error() })?;
                if size != expected {
                    return Err(Error::Invalid(format!("`{shown}` is truncated ({size} of {expected} bytes)")));
                }
                members.links.remove(&name);
                members.files.insert(name, Member { file, digest, size });
            }
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target =
                    entry.link_name_bytes().ok_or_else(|| Error::Invalid(format!("link `{shown}` has no target")))?;
                let target = std::ffi::OsStr::from_bytes(&target).to_string_lossy().into_owned();
                let joined = if kind == tar::EntryType::Symlink && !target.starts_with('/') {
                    let parent =
                        Path::new(&name).parent().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
                    format!("{parent}/{target}")
                } else {
                    target.clone()
                };
                // `clean` clamps nothing: a target above the root is refused, not resolved inside.
                let resolved = clean(&joined).ok_or_else(|| Error::Escape(format!("{shown} -> {target}")))?;
                members.files.remove(&name);
                members.links.insert(name, resolved);
            }
            // Directories need nothing; PAX/GNU headers are consumed by the tar crate; devices and FIFOs
            // have no place in an image archive and are ignored.
            _ => {}
        }
    }
    Ok(members)
}

/// `engine load`: reads an archive from `input` into `store`. All or nothing.
pub fn load(store: &ImageStore, input: impl Read) -> Result<Vec<Loaded>> {
    let staging = store
        .root()
        .staging_dir("load")
        .map_err(|e| Error::Write { path: store.root().tmp_dir().display().to_string(), source: e })?;
    let members = stage(input, staging.path())?;
    if members.files.is_empty() && members.links.is_empty() {
        return Err(Error::Invalid("the archive is empty".into()));
    }
    let plans = if members.get("manifest.json").is_ok() {
        plan_docker(&members)?
    } else if members.get("index.json").is_ok() {
        plan_oci(&members)?
    } else {
        return Err(Error::UnknownFormat);
    };
    let mut ingest = store.ingest()?;
    let mut adopted = Vec::new();
    for plan in &plans {
        for (blob, _) in &plan.layers {
            let m = members.blob_by_digest(blob)?;
            ingest.put_file(&m.file, blob)?;
        }
        let config = members.blob_by_digest(&plan.config)?;
        ingest.put_file(&config.file, &plan.config)?;
        for (blob, diff_id) in &plan.layers {
            ingest.unpack_layer(diff_id, blob)?;
        }
        let manifest_digest = ingest.put_bytes(&plan.manifest)?;
        adopted.push(Adopted {
            manifest: manifest_digest,
            size: plan.manifest.len() as u64,
            media_type: plan.media_type.clone(),
            names: plan.names.clone(),
        });
    }
    let images = ingest.commit(&adopted)?;
    Ok(images.into_iter().zip(plans).map(|(image, plan)| Loaded { image, names: plan.names }).collect())
}

/// One image to store: its manifest bytes, config and (layer blob, diff ID) pairs, all checked already.
#[derive(Debug)]
struct Plan {
    manifest: Vec<u8>,
    media_type: String,
    config: Digest,
    layers: Vec<(Digest, Digest)>,
    names: Vec<Reference>,
}

impl Members {
    /// Any staged member with this content digest.
    fn blob_by_digest(&self, digest: &Digest) -> Result<&Member> {
        self.files.values().find(|m| &m.digest == digest).ok_or_else(|| Error::Missing(digest.to_string()))
    }
}

/// The digest a member's name claims, for `blobs/sha256/<hex>` and `<hex>.json`.
fn digest_in_name(name: &str) -> Option<Digest> {
    let base = name.rsplit('/').next().unwrap_or(name);
    let hex = base.strip_suffix(".json").unwrap_or(base);
    let is_blob_path = name.contains("blobs/sha256/") || base.ends_with(".json");
    if is_blob_path {
        Digest::from_hex(hex).ok()
    } else {
        None
    }
}

fn checked_member<'a>(members: &'a Members, name: &str) -> Result<&'a Member> {
    let m = members.get(name)?;
    if let Some(expected) = digest_in_name(name) {
        if expected != m.digest {
            return Err(Error::DigestMismatch { member: name.to_owned(), expected, actual: m.digest.clone() });
        }
    }
    Ok(m)
}

fn parse_diff_ids(config: &ImageConfig, what: &str) -> Result<Vec<Digest>> {
    config
        .rootfs
        .diff_ids
        .iter()
        .map(|d| d.parse::<Digest>().map_err(|e| Error::Invalid(format!("{what}: {e}"))))
        .collect()
}

fn is_gzip(path: &Path) -> Result<bool> {
    let mut head = [0u8; 2];
    let mut f = File::open(path).map_err(Error::Read)?;
    let n = f.read(&mut head).map_err(Error::Read)?;
    Ok(n == 2 && head == [0x1f, 0x8b])
}

fn plan_docker(members: &Members) -> Result<Vec<Plan>> {
    let entries: Vec<DockerEntry> = members.read_json("manifest.json")?;
    if entries.is_empty() {
        return Err(Error::Invalid("manifest.json lists no images".into()));
    }
    let mut plans = Vec::new();
    for entry in entries {
        let config_member = checked_member(members, &entry.config)?;
        let config: ImageConfig = read_json_member(&entry.config, config_member)?;
        let diff_ids = parse_diff_ids(&config, &entry.config)?;
        if diff_ids.len() != entry.layers.len() {
            return Err(Error::Invalid(format!(
                "`{}` lists {} diff IDs but manifest.json gives {} layers",
                entry.config,
                diff_ids.len(),
                entry.layers.len()
            )));
        }
        let mut layers = Vec::new();
        let mut descriptors = Vec::new();
        for (path, diff_id) in entry.layers.iter().zip(diff_ids) {
            let m = checked_member(members, path)?;
            let media_type = if is_gzip(&m.file)? { MediaType::ImageLayerGzip } else { MediaType::ImageLayer };
            descriptors.push(oci_descriptor(media_type, m.size, &m.digest)?);
            layers.push((m.digest.clone(), diff_id));
        }
        let manifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(oci_descriptor(MediaType::ImageConfig, config_member.size, &config_member.digest)?)
            .layers(descriptors)
            .build()
            .map_err(|e| Error::Invalid(format!("cannot make a manifest for `{}`: {e}", entry.config)))?;
        let manifest = serde_json::to_vec(&manifest).map_err(|e| Error::Invalid(e.to_string()))?;
        let names = entry
            .repo_tags
            .iter()
            .map(|t| Reference::parse(t).map_err(|e| Error::Invalid(format!("manifest.json RepoTags: {e}"))))
            .collect::<Result<Vec<_>>>()?;
        plans.push(Plan {
            manifest,
            media_type: manifest::OCI_MANIFEST.to_owned(),
            config: config_member.digest.clone(),
            layers,
            names,
        });
    }
    Ok(plans)
}

fn oci_descriptor(media_type: MediaType, size: u64, digest: &Digest) -> Result<OciDescriptor> {
    let d: oci_spec::image::Digest =
        digest.to_string().parse().map_err(|e: oci_spec::OciSpecError| Error::Invalid(e.to_string()))?;
    Ok(OciDescriptor::new(media_type, size, d))
}

fn plan_oci(members: &Members) -> Result<Vec<Plan>> {
    let index: manifest::Index = members.read_json("index.json")?;
    let mut plans: Vec<Plan> = Vec::new();
    for d in &index.manifests {
        let names = names_of(d)?;
        let (manifest_bytes, media_type, image) = resolve_oci(members, d, 0)?;
        if let Some(existing) = plans.iter_mut().find(|p| p.manifest == manifest_bytes) {
            for n in names {
                if !existing.names.contains(&n) {
                    existing.names.push(n);
                }
            }
            continue;
        }
        let config_member = members.blob(&image.config.digest)?;
        let config: ImageConfig =
            read_json_member(&format!("blobs/sha256/{}", image.config.digest.hex()), config_member)?;
        let diff_ids = parse_diff_ids(&config, "image config")?;
        if diff_ids.len() != image.layers.len() {
            return Err(Error::Invalid(format!(
                "manifest {} has {} layers but its config lists {} diff IDs",
                Digest::of(&manifest_bytes),
                image.layers.len(),
                diff_ids.len()
            )));
        }
        let mut layers = Vec::new();
        for (l, diff_id) in image.layers.iter().zip(diff_ids) {
            if !manifest::is_known_layer(&l.media_type) {
                return Err(Error::Invalid(format!("layer media type {} is not supported", l.media_type)));
            }
            members.blob(&l.digest)?;
            layers.push((l.digest.clone(), diff_id));
        }
        plans.push(Plan { manifest: manifest_bytes, media_type, config: image.config.digest.clone(), layers, names });
    }
    if plans.is_empty() {
        return Err(Error::Invalid("index.json lists no images".into()));
    }
    Ok(plans)
}

/// The names an OCI index entry gives: the containerd annotation, else `ref.name` when it is a full reference
/// (skopeo and our own store write those; a bare tag such as `latest` names nothing on its own).
fn names_of(d: &Descriptor) -> Result<Vec<Reference>> {
    let name = d
        .annotations
        .get(CONTAINERD_NAME)
        .or_else(|| d.annotations.get(REF_NAME).filter(|n| n.contains(':') || n.contains('/')));
    match name {
        Some(n) => Ok(vec![Reference::parse(n).map_err(|e| Error::Invalid(format!("index.json: {e}")))?]),
        None => Ok(Vec::new()),
    }
}

/// The image manifest an index entry stands for (an index resolves to `linux/amd64`), verified.
fn resolve_oci(members: &Members, d: &Descriptor, depth: usize) -> Result<(Vec<u8>, String, manifest::ImageManifest)> {
    if depth > 4 {
        return Err(Error::Invalid("indexes nested too deep".into()));
    }
    let m = members.blob(&d.digest)?;
    if m.size > MAX_JSON_BYTES {
        return Err(Error::Invalid(format!("manifest {} is too large", d.digest)));
    }
    let bytes = fs::read(&m.file).map_err(Error::Read)?;
    let media = Some(d.media_type.as_str()).filter(|m| !m.is_empty());
    match Manifest::parse(&bytes, media)? {
        Manifest::Image { media_type, manifest } => Ok((bytes, media_type, manifest)),
        Manifest::Index { index, .. } => {
            let chosen = Platform::default().select(&index, &d.digest.to_string())?;
            resolve_oci(members, chosen, depth + 1)
        }
    }
}

/// Names of the loaded images as `load` prints them (`busybox:latest`), or the ID for nameless ones.
pub fn describe(loaded: &[Loaded]) -> Vec<String> {
    let mut lines = Vec::new();
    for l in loaded {
        if l.names.is_empty() {
            lines.push(format!("Loaded image ID: {}", l.image.id));
        }
        for n in &l.names {
            lines.push(format!("Loaded image: {}", n.familiar()));
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            let gnu = h.as_gnu_mut().expect("gnu");
            gnu.name[..name.len()].copy_from_slice(name.as_bytes());
            h.set_cksum();
            b.append(&h, *data).expect("append");
        }
        b.into_inner().expect("tar")
    }

    #[test]
    fn hostile_member_names_are_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let tar = tar_of(&[("../../evil", b"x")]);
        assert!(matches!(stage(&tar[..], dir.path()), Err(Error::Escape(_))));
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "manifest.json", "../../../etc/passwd").expect("link");
        let tar = b.into_inner().expect("tar");
        assert!(matches!(stage(&tar[..], dir.path()), Err(Error::Escape(_))));
    }

    #[test]
    fn links_resolve_inside_the_archive() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(2);
        h.set_mode(0o644);
        b.append_data(&mut h, "a/layer.tar", &b"hi"[..]).expect("file");
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "b/layer.tar", "../a/layer.tar").expect("link");
        let members = stage(&b.into_inner().expect("tar")[..], dir.path()).expect("stage");
        assert_eq!(members.get("./b/layer.tar").expect("resolves").digest, Digest::of(b"hi"));
        assert!(matches!(members.get("c"), Err(Error::Missing(_))));
    }

    #[test]
    fn names_that_claim_a_digest_are_checked() {
        let hex = "a".repeat(64);
        assert!(digest_in_name(&format!("blobs/sha256/{hex}")).is_some());
        assert!(digest_in_name(&format!("{hex}.json")).is_some());
        assert!(digest_in_name("abc/layer.tar").is_none());
    }
}
