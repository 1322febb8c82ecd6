//! A container's root filesystem: an overlay of the image layers (lowerdirs, read-only, shared) under a
//! per-container `upper/` + `work/`, mounted on `merged/`.
//!
//! The monitor mounts it before the container starts and unmounts it when the container ends, in the monitor's
//! own mount namespace (see [`super::monitor`], "Private mount namespace"): the host's namespace never holds a
//! running container's mounts. Verbs that read or write a container's files (`cp`, `export`, `exec`'s user
//! lookup) use [`Mounted::container`]: a running container's rootfs through its monitor's namespace
//! (`/proc/<monitor>/root/…/merged`), a stopped one's mounted here for the duration. `diff` and `commit` read
//! `upper/` directly: overlay keeps every change there, deletions
//! as `0:0` character devices ("whiteouts") and replaced directories with `trusted.overlay.opaque=y`, which
//! [`layer_tar`] turns back into OCI `.wh.` entries.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use super::{io_err, sys_err, Container, Error, Result};
use crate::image::layer::{xattr_get, OPAQUE_WHITEOUT, WHITEOUT_PREFIX};

/// The overlay directories of a container.
#[derive(Debug, Clone)]
pub struct RootfsDirs {
    pub upper: PathBuf,
    pub work: PathBuf,
    pub merged: PathBuf,
    /// Lower directories, top first (overlay's order).
    pub lower: Vec<PathBuf>,
}

impl RootfsDirs {
    pub fn of(container_dir: &Path, c: &Container) -> RootfsDirs {
        let mut lower: Vec<PathBuf> = c.layers.iter().rev().cloned().collect();
        if lower.is_empty() {
            // An image without layers (`FROM scratch` + nothing): overlay needs a lower directory.
            lower.push(container_dir.join("empty"));
        }
        RootfsDirs {
            upper: container_dir.join("upper"),
            work: container_dir.join("work"),
            merged: container_dir.join("merged"),
            lower,
        }
    }

    /// Creates the per-container directories (at `create`).
    pub fn create(&self) -> Result<()> {
        for d in [&self.upper, &self.work, &self.merged] {
            fs::create_dir_all(d).map_err(io_err(format!("cannot create {}", d.display())))?;
        }
        for d in &self.lower {
            if !d.exists() {
                fs::create_dir_all(d).map_err(io_err(format!("cannot create {}", d.display())))?;
            }
        }
        Ok(())
    }

    /// The overlay mount options. Kept under a page: very deep images need short layer paths.
    fn options(&self) -> Result<String> {
        let lower: Vec<String> = self.lower.iter().map(|p| escape_option(p)).collect();
        let opts = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.join(":"),
            escape_option(&self.upper),
            escape_option(&self.work)
        );
        if opts.len() >= 4096 {
            return Err(Error::InvalidInput {
                what: "image",
                value: format!("{} layers", self.lower.len()),
                hint: "the overlay mount options exceed a page; use a shorter --root or an image with fewer layers"
                    .into(),
            });
        }
        Ok(opts)
    }

    /// Mounts the overlay on `merged/` unless it is mounted already.
    pub fn mount(&self) -> Result<()> {
        if is_mounted(&self.merged) {
            return Ok(());
        }
        let opts = self.options()?;
        mount(Some("overlay"), &self.merged, Some("overlay"), MsFlags::empty(), Some(opts.as_str()))
            .map_err(sys_err(format!("cannot mount the overlay root filesystem on {}", self.merged.display())))
    }

    /// Unmounts `merged/` (lazily: a process still inside keeps it alive, we never wait).
    pub fn unmount(&self) {
        let _ = umount2(&self.merged, MntFlags::MNT_DETACH);
    }
}

/// A container's rootfs made reachable for one operation; a mount made here is undone on drop.
pub struct Mounted {
    dirs: RootfsDirs,
    path: PathBuf,
    made: bool,
}

impl Mounted {
    /// Makes sure the container's rootfs is mounted in this process's namespace; the guard undoes only what it did.
    pub fn ensure(dirs: RootfsDirs) -> Result<Mounted> {
        let made = !is_mounted(&dirs.merged);
        dirs.mount()?;
        Ok(Mounted { path: dirs.merged.clone(), dirs, made })
    }

    /// The rootfs of container `c` (in `store`): a running container's through its monitor's mount namespace —
    /// a second overlay mount of the same upper directory would be undefined behaviour — else mounted here.
    pub fn container(store: &super::ContainerStore, c: &Container) -> Result<Mounted> {
        let dirs = RootfsDirs::of(&store.dir(&c.id), c);
        if let Some(path) = live_rootfs(store, &c.id, &dirs) {
            return Ok(Mounted { dirs, path, made: false });
        }
        Mounted::ensure(dirs)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// `merged/` as the running container's monitor sees it, if the container runs and its monitor is alive and
/// has the overlay there (a monitor from before the private namespaces mounted it in the host's: then `None`,
/// and [`Mounted::ensure`] finds it mounted).
fn live_rootfs(store: &super::ContainerStore, id: &str, dirs: &RootfsDirs) -> Option<PathBuf> {
    let state = store.raw_state(id).ok()?;
    if !state.is_running() || state.pid == 0 || !super::store::process_alive(state.monitor_pid, state.monitor_start) {
        return None;
    }
    let root = PathBuf::from(format!("/proc/{}/root", state.monitor_pid));
    let path = root.join(dirs.merged.strip_prefix("/").ok()?);
    // Same namespace as ours (an old monitor, or no private namespace): the plain path is mounted already.
    let ns = |pid: &str| fs::read_link(format!("/proc/{pid}/ns/mnt")).ok();
    if ns("self") == ns(&state.monitor_pid.to_string()) {
        return None;
    }
    Some(path)
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if self.made {
            self.dirs.unmount();
        }
    }
}

/// Overlay options separate with `,` and `:`; escape them in paths.
fn escape_option(p: &Path) -> String {
    p.display().to_string().replace('\\', "\\\\").replace(':', "\\:").replace(',', "\\,")
}

/// True if `path` is a mount point in this process's mount namespace.
pub fn is_mounted(path: &Path) -> bool {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else { return false };
    let want = path.display().to_string();
    info.lines().any(|l| l.split(' ').nth(4).is_some_and(|m| unescape_mountinfo(m) == want))
}

fn unescape_mountinfo(s: &str) -> String {
    s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
}

/// One change of a container's filesystem against its image, as `docker diff` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// `A` added, `C` changed, `D` deleted.
    pub kind: char,
    /// Absolute path inside the container.
    pub path: String,
}

fn is_whiteout(meta: &fs::Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

fn is_opaque(path: &Path) -> bool {
    xattr_get(path, "trusted.overlay.opaque").is_some_and(|v| v == b"y")
}

/// The changes recorded in `upper` against the `lower` layers (top first), sorted by path.
pub fn changes(upper: &Path, lower: &[PathBuf]) -> Result<Vec<Change>> {
    let mut out = Vec::new();
    walk_changes(upper, Path::new("/"), lower, false, &mut out)?;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

fn walk_changes(dir: &Path, rel: &Path, lower: &[PathBuf], under_new: bool, out: &mut Vec<Change>) -> Result<()> {
    let entries = fs::read_dir(dir).map_err(io_err(format!("cannot read {}", dir.display())))?;
    for entry in entries {
        let entry = entry.map_err(io_err(format!("cannot read {}", dir.display())))?;
        let path = entry.path();
        let meta = fs::symlink_metadata(&path).map_err(io_err(format!("cannot stat {}", path.display())))?;
        let rel_path = rel.join(entry.file_name());
        let in_lower = !under_new
            && lower
                .iter()
                .any(|l| fs::symlink_metadata(l.join(rel_path.strip_prefix("/").unwrap_or(&rel_path))).is_ok());
        let shown = rel_path.display().to_string();
        if is_whiteout(&meta) {
            if in_lower {
                out.push(Change { kind: 'D', path: shown });
            }
            continue;
        }
        let kind = if in_lower { 'C' } else { 'A' };
        out.push(Change { kind, path: shown });
        if meta.is_dir() {
            // Everything under a new or opaque directory is new.
            let new = under_new || !in_lower || is_opaque(&path);
            walk_changes(&path, &rel_path, lower, new, out)?;
        }
    }
    Ok(())
}

/// Writes `upper` as an uncompressed layer tar to `out`, overlay whiteouts turned into OCI ones
/// (`.wh.NAME` for a deleted entry, `DIR/.wh..wh..opq` for a directory that hides its lower contents).
pub fn layer_tar(upper: &Path, out: impl Write) -> Result<()> {
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    let ctx = |e: io::Error| Error::Io { context: "cannot write the layer tar".into(), source: e };
    append_upper(&mut builder, upper, Path::new("")).map_err(ctx)?;
    builder.into_inner().map_err(ctx)?.flush().map_err(ctx)?;
    Ok(())
}

fn append_upper<W: Write>(b: &mut tar::Builder<W>, dir: &Path, rel: &Path) -> io::Result<()> {
    let mut entries: Vec<fs::DirEntry> = fs::read_dir(dir)?.collect::<io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let meta = fs::symlink_metadata(&path)?;
        let name = rel.join(entry.file_name());
        if is_whiteout(&meta) {
            let wh = rel.join(format!("{WHITEOUT_PREFIX}{}", entry.file_name().to_string_lossy()));
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(0);
            h.set_mode(0o600);
            h.set_mtime(meta.mtime().max(0) as u64);
            b.append_data(&mut h, wh, io::empty())?;
            continue;
        }
        b.append_path_with_name(&path, &name)?;
        if meta.is_dir() {
            if is_opaque(&path) {
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(0);
                h.set_mode(0o600);
                b.append_data(&mut h, name.join(OPAQUE_WHITEOUT), io::empty())?;
            }
            append_upper(b, &path, &name)?;
        }
    }
    Ok(())
}

/// Writes the whole tree at `dir` as a tar (for `export`), entries relative to it.
pub fn tree_tar(dir: &Path, out: impl Write) -> Result<()> {
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    let ctx = |e: io::Error| Error::Io { context: "cannot write the tar".into(), source: e };
    let mut entries: Vec<fs::DirEntry> = fs::read_dir(dir).map_err(ctx)?.collect::<io::Result<_>>().map_err(ctx)?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let name = PathBuf::from(entry.file_name());
        if entry.file_type().map_err(ctx)?.is_dir() {
            builder.append_dir_all(&name, &path).map_err(ctx)?;
        } else {
            builder.append_path_with_name(&path, &name).map_err(ctx)?;
        }
    }
    builder.into_inner().map_err(ctx)?.flush().map_err(ctx)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_escape_separators() {
        assert_eq!(escape_option(Path::new("/a:b,c")), "/a\\:b\\,c");
        assert_eq!(unescape_mountinfo("/a\\040b"), "/a b");
    }

    #[test]
    fn changes_compare_upper_with_lower() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let t = tempfile::tempdir()?;
        let (lower, upper) = (t.path().join("lower"), t.path().join("upper"));
        fs::create_dir_all(lower.join("etc"))?;
        fs::write(lower.join("etc/passwd"), "x")?;
        fs::create_dir_all(upper.join("etc"))?;
        fs::write(upper.join("etc/passwd"), "y")?;
        fs::create_dir_all(upper.join("new/sub"))?;
        let got = changes(&upper, &[lower])?;
        let got: Vec<String> = got.iter().map(|c| format!("{} {}", c.kind, c.path)).collect();
        assert_eq!(got, ["C /etc", "C /etc/passwd", "A /new", "A /new/sub"]);
        Ok(())
    }

    #[test]
    fn layer_tar_keeps_files_and_names() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let t = tempfile::tempdir()?;
        fs::create_dir_all(t.path().join("a"))?;
        fs::write(t.path().join("a/f"), "hi")?;
        let mut buf = Vec::new();
        layer_tar(t.path(), &mut buf)?;
        let mut ar = tar::Archive::new(&buf[..]);
        let names: Vec<String> = ar
            .entries()?
            .filter_map(|e| e.ok())
            .map(|e| e.path().map(|p| p.display().to_string()).unwrap_or_default())
            .collect();
        assert_eq!(names, ["a", "a/f"]);
        Ok(())
    }
}
