//! `cp`: copy files between a container and the host with `docker cp`'s tar semantics. A path in the container
//! is resolved inside its root filesystem (symlinks cannot lead out); the rootfs is mounted for the duration if
//! the container is not running.
//!
//! - container → tar: the entry names start with the source's base name (`/etc` → `etc/…`); a source ending in
//!   `/.` gives its contents.
//! - tar → container: unpacked into a directory that must exist, with the same protections as image layers.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::rootfs::Mounted;
use super::store::ContainerStore;
use super::{io_err, Error, Result};
use crate::image::layer::{clean_relative, resolve_in_root};

/// What a path in a container is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    Dir,
    Other,
}

/// The container's rootfs, mounted while it is needed, and `path` resolved in it (see [`etc_file`]).
fn located(store: &ContainerStore, id: &str, path: &str) -> Result<(Mounted, PathBuf)> {
    let c = store.load(id)?;
    let m = Mounted::container(store, &c)?;
    let full = resolve(m.path(), path)?;
    let full = etc_file(store, id, &c.host_config.network_mode, m.path(), &full).unwrap_or(full);
    Ok((m, full))
}

/// The files the container's `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf` are bind-mounted from (its
/// directory's, or with `--network container:X` X's, as in the runtime spec): in the rootfs they are empty mount
/// targets, which is all the host sees, running or not. docker copies their content; so does `cp`.
fn etc_file(store: &ContainerStore, id: &str, network_mode: &str, rootfs: &Path, full: &Path) -> Option<PathBuf> {
    let name = full.file_name()?;
    if full.parent()? != rootfs.join("etc") || !["hostname", "hosts", "resolv.conf"].iter().any(|f| name == *f) {
        return None;
    }
    let dir = match super::network::joined_container(network_mode) {
        Some(other) if store.dir(other).join(name).is_file() => store.dir(other),
        _ => store.dir(id),
    };
    Some(dir.join(name)).filter(|f| f.is_file())
}

/// Resolves `path` inside `rootfs`: every directory component follows symlinks within the rootfs; the last
/// component is kept as is (copying a symlink copies the link, as docker does).
fn resolve(rootfs: &Path, path: &str) -> Result<PathBuf> {
    let rel = clean_relative(std::ffi::OsStr::new(path)).unwrap_or_default();
    let parent = rel.parent().unwrap_or(Path::new(""));
    let dir = resolve_in_root(rootfs, parent, path).map_err(|e| Error::Runtime(e.to_string()))?;
    Ok(match rel.file_name() {
        Some(name) => dir.join(name),
        None => dir,
    })
}

/// The kind of `path` in container `id`, `None` if it does not exist.
pub fn stat(store: &ContainerStore, id: &str, path: &str) -> Result<Option<PathKind>> {
    let (_mounted, full) = located(store, id, path)?;
    let meta = fs::metadata(&full).or_else(|_| fs::symlink_metadata(&full));
    Ok(meta.ok().map(|meta| if meta.is_dir() { PathKind::Dir } else { PathKind::Other }))
}

/// What docker's `X-Docker-Container-Path-Stat` header says about a path (`mode` in Go's `os.FileMode` bits:
/// permissions plus 1<<31 for a directory, 1<<27 for a symlink).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathStat {
    pub name: String,
    pub size: u64,
    pub mode: u32,
    /// RFC 3339.
    pub mtime: String,
    pub link_target: String,
}

/// Stat of `path` in container `id` (the last component is not followed, as docker's `stat`), `None` if it does
/// not exist.
pub fn path_stat(store: &ContainerStore, id: &str, path: &str) -> Result<Option<PathStat>> {
    use std::os::unix::fs::MetadataExt;
    let (_mounted, full) = located(store, id, path)?;
    let Ok(meta) = fs::symlink_metadata(&full) else { return Ok(None) };
    let ft = meta.file_type();
    let mut mode = meta.mode() & 0o777;
    if ft.is_dir() {
        mode |= 1 << 31;
    }
    if ft.is_symlink() {
        mode |= 1 << 27;
    }
    let link_target = if ft.is_symlink() {
        fs::read_link(&full).map(|t| t.display().to_string()).unwrap_or_default()
    } else {
        String::new()
    };
    let mtime = chrono::DateTime::from_timestamp(meta.mtime(), 0).unwrap_or_default().to_rfc3339();
    let name = full.file_name().map_or_else(|| "/".to_owned(), |n| n.to_string_lossy().into_owned());
    Ok(Some(PathStat { name, size: meta.len(), mode, mtime, link_target }))
}

/// Writes `path` of container `id` as a tar stream to `out`.
pub fn archive(store: &ContainerStore, id: &str, path: &str, out: impl Write) -> Result<()> {
    let (_mounted, full) = located(store, id, path)?;
    let meta = fs::symlink_metadata(&full)
        .map_err(|_| Error::NoSuchPath { container: id.to_owned(), path: path.to_owned() })?;
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    let ctx = |e: std::io::Error| Error::Io { context: format!("cannot archive {path}"), source: e };
    let contents_only = path.ends_with("/.");
    let name = full.file_name().map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    if meta.is_dir() {
        if contents_only {
            b.append_dir_all(".", &full).map_err(ctx)?;
        } else {
            b.append_dir_all(&name, &full).map_err(ctx)?;
        }
    } else {
        b.append_path_with_name(&full, &name).map_err(ctx)?;
    }
    b.into_inner().map_err(ctx)?.flush().map_err(ctx)
}

/// Unpacks the tar stream `input` into directory `dir` of container `id`.
pub fn extract(store: &ContainerStore, id: &str, dir: &str, input: impl Read) -> Result<()> {
    let c = store.load(id)?;
    let m = Mounted::container(store, &c)?;
    let rel = clean_relative(std::ffi::OsStr::new(dir))
        .ok_or_else(|| Error::NoSuchPath { container: id.to_owned(), path: dir.to_owned() })?;
    let target = resolve_in_root(m.path(), &rel, dir).map_err(|e| Error::Runtime(e.to_string()))?;
    if !target.is_dir() {
        return Err(Error::NoSuchPath { container: id.to_owned(), path: dir.to_owned() });
    }
    crate::image::layer::unpack_files(input, &target)
        .map_err(|e| Error::Runtime(format!("cannot copy into {dir}: {e}")))?;
    Ok(())
}

/// Builds a tar of host path `src` whose single top entry is named `name`.
pub fn host_archive(src: &Path, name: &str, out: impl Write) -> Result<()> {
    let meta = fs::symlink_metadata(src).map_err(io_err(format!("cannot copy {}", src.display())))?;
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    let ctx = |e: std::io::Error| Error::Io { context: format!("cannot archive {}", src.display()), source: e };
    if meta.is_dir() {
        b.append_dir_all(name, src).map_err(ctx)?;
    } else {
        b.append_path_with_name(src, name).map_err(ctx)?;
    }
    b.into_inner().map_err(ctx)?.flush().map_err(ctx)
}

/// Unpacks a tar from a container onto the host: into `dest` if it is a directory, else as `dest` itself (the
/// tar's single top entry renamed). Entries cannot escape the target (tar's own checks).
pub fn host_extract(input: impl Read, dest: &Path) -> Result<()> {
    let ctx = |e: std::io::Error| Error::Io { context: format!("cannot copy to {}", dest.display()), source: e };
    if dest.is_dir() {
        return tar::Archive::new(input).unpack(dest).map_err(ctx);
    }
    let parent = dest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let staging = tempfile::Builder::new().prefix(".drydock-cp-").tempdir_in(parent).map_err(ctx)?;
    tar::Archive::new(input).unpack(staging.path()).map_err(ctx)?;
    let mut top = fs::read_dir(staging.path()).map_err(ctx)?.flatten();
    match (top.next(), top.next()) {
        (Some(entry), None) => fs::rename(entry.path(), dest).map_err(ctx),
        _ => Err(Error::InvalidInput {
            what: "copy source",
            value: dest.display().to_string(),
            hint: "copying several entries needs an existing destination directory".into(),
        }),
    }
}
