//! `COPY` and `ADD` as a layer: docker's destination rules applied to the selected sources, written straight
//! into an uncompressed layer tar (no container is started), plus the content hash the layer cache keys on.
//!
//! Docker's rules: a directory source copies its *contents*; a file goes to `dest/<name>` when `dest` ends with
//! `/` or is an existing directory, else it becomes `dest`; several sources need a destination ending in `/`;
//! missing parent directories are created (0755, root); new files and directories are owned by 0:0 unless
//! `--chown` says otherwise, and keep their mode unless `--chmod` does; `ADD` extracts a local tar (plain or
//! gzip, recognised by content, not by name) into the destination, keeping the archive's owners and modes.
//! Parent directories that already exist in the image are written with their current metadata, so the layer
//! never changes them; symlinks in the destination's parents are resolved inside the image first.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::build::context::Selected;
use crate::build::dockerignore::EntryKind;
use crate::build::image_mount::ImageMount;

/// One source of a `COPY`/`ADD`.
pub enum Source {
    /// A file, symlink or directory of the context or of a `--from` image.
    Tree(Selected),
    /// A local archive `ADD` extracts into the destination.
    Archive(PathBuf),
    /// A file made by the builder (a downloaded URL, a heredoc), with its mode.
    File { name: String, host: PathBuf, mode: u32 },
}

/// What the step copies where.
pub struct CopyPlan {
    pub sources: Vec<Source>,
    /// Absolute destination inside the image, as written (a trailing `/` means "a directory").
    pub dest: String,
    /// `--chown`, resolved.
    pub owner: Option<(u32, u32)>,
    /// `--chmod`.
    pub mode: Option<u32>,
}

/// Whether a local file is an archive `ADD` extracts (by content). bzip2 and xz are recognised and refused.
pub fn archive_kind(path: &Path) -> io::Result<Option<&'static str>> {
    let mut head = [0u8; 512];
    let mut file = File::open(path)?;
    let mut n = 0;
    while n < head.len() {
        let r = file.read(&mut head[n..])?;
        if r == 0 {
            break;
        }
        n += r;
    }
    let head = &head[..n];
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Some("gzip")
    } else if head.starts_with(b"BZh") {
        Some("bzip2")
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Some("xz")
    } else if head.len() >= 262 && &head[257..262] == b"ustar" {
        Some("tar")
    } else {
        None
    })
}

/// The part of the cache key that stands for the sources' contents: names, kinds, modes, owners and a SHA-256
/// of every file (mtimes are left out, as docker leaves them out).
pub fn content_hash(sources: &[Source]) -> io::Result<String> {
    let mut h = Sha256::new();
    let entry = |h: &mut Sha256, name: &str, host: &Path, kind: EntryKind, mode: Option<u32>| -> io::Result<()> {
        let meta = fs::symlink_metadata(host)?;
        let mode = mode.unwrap_or(meta.mode() & 0o7777);
        h.update(format!("{name}\0{kind:?}\0{mode:o}\0{}:{}\0", meta.uid(), meta.gid()).as_bytes());
        match kind {
            EntryKind::File => {
                let mut f = File::open(host)?;
                io::copy(&mut f, h)?;
            }
            EntryKind::Symlink => h.update(fs::read_link(host)?.as_os_str().as_bytes()),
            _ => {}
        }
        h.update(b"\n");
        Ok(())
    };
    for s in sources {
        match s {
            Source::Tree(sel) => {
                entry(&mut h, &sel.name, &sel.host, sel.kind, None)?;
                for (rel, host, kind) in &sel.children {
                    entry(&mut h, &format!("{}/{rel}", sel.name), host, *kind, None)?;
                }
            }
            Source::Archive(p) => entry(&mut h, "archive", p, EntryKind::File, None)?,
            Source::File { name, host, mode } => entry(&mut h, name, host, EntryKind::File, Some(*mode))?,
        }
    }
    Ok(hex::encode(h.finalize()))
}

/// Writes the layer of `plan` as an uncompressed tar to `out`; `view` is the destination image. Errors are
/// messages for the step's line.
pub fn write_layer(plan: &CopyPlan, view: &ImageMount, out: impl Write) -> Result<(), String> {
    let dest_is_dir = plan.dest.ends_with('/');
    if plan.sources.len() > 1 && !dest_is_dir {
        return Err(
            "When using COPY with more than one source file, the destination must be a directory and end with a /"
                .to_owned(),
        );
    }
    let root = view.path();
    let host = view.host_path(&plan.dest);
    let canonical = host.strip_prefix(&root).map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
    // Followed inside the image (a destination that is a symlink to a directory of the image is a directory), never
    // onto the host's own files.
    let dest_exists_dir =
        crate::image::layer::resolve_in_root(&root, Path::new(&canonical), &plan.dest).is_ok_and(|p| p.is_dir());
    let mut w = LayerWriter { builder: tar::Builder::new(out), emitted: BTreeSet::new(), view: root };
    let owner = plan.owner.unwrap_or((0, 0));
    let io = |e: io::Error| format!("cannot write the layer: {e}");
    for source in &plan.sources {
        match source {
            Source::Tree(sel) if sel.kind == EntryKind::Dir => {
                w.dir(&canonical, &sel.host, owner, plan.mode, true).map_err(io)?;
                for (rel, host, kind) in &sel.children {
                    let path = join(&canonical, rel);
                    match kind {
                        EntryKind::Dir => w.dir(&path, host, owner, plan.mode, false).map_err(io)?,
                        EntryKind::Symlink => w.symlink(&path, host, owner).map_err(io)?,
                        EntryKind::File => w.file(&path, host, owner, plan.mode).map_err(io)?,
                        EntryKind::Other => {}
                    }
                }
            }
            Source::Tree(sel) => {
                let path = if dest_is_dir || dest_exists_dir { join(&canonical, &sel.name) } else { canonical.clone() };
                match sel.kind {
                    EntryKind::Symlink => w.symlink(&path, &sel.host, owner).map_err(io)?,
                    _ => w.file(&path, &sel.host, owner, plan.mode).map_err(io)?,
                }
            }
            Source::File { name, host, mode } => {
                let path = if dest_is_dir || dest_exists_dir { join(&canonical, name) } else { canonical.clone() };
                w.file(&path, host, owner, Some(plan.mode.unwrap_or(*mode))).map_err(io)?;
            }
            Source::Archive(path) => w.extract(&canonical, path, plan.owner)?,
        }
    }
    w.builder.into_inner().and_then(|mut o| o.flush()).map_err(io)?;
    Ok(())
}

/// The layer of a `WORKDIR` whose directory is missing from the image: the directory (0755, root) and any missing
/// parents. `path` is absolute.
pub fn workdir_layer(view: &ImageMount, path: &str, out: impl Write) -> Result<(), String> {
    let root = view.path();
    let host = view.host_path(path);
    let canonical = host.strip_prefix(&root).map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
    if canonical.is_empty() {
        return Ok(());
    }
    let mut w = LayerWriter { builder: tar::Builder::new(out), emitted: BTreeSet::new(), view: root };
    let io = |e: io::Error| format!("cannot write the layer: {e}");
    w.new_dir(&canonical, (0, 0)).map_err(io)?;
    w.builder.into_inner().and_then(|mut o| o.flush()).map_err(io)?;
    Ok(())
}

fn join(dir: &str, rel: &str) -> String {
    if dir.is_empty() {
        rel.to_owned()
    } else {
        format!("{dir}/{rel}")
    }
}

struct LayerWriter<W: Write> {
    builder: tar::Builder<W>,
    /// Directories already in the tar.
    emitted: BTreeSet<String>,
    view: PathBuf,
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl<W: Write> LayerWriter<W> {
    /// The metadata of the image's directory at `path`, read only if no directory on the way is a symlink (which
    /// would lead to the host's files).
    fn existing_dir(&self, path: &str) -> Option<fs::Metadata> {
        let rel = Path::new(path);
        crate::image::layer::parents_stay_in_root(&self.view, rel)
            .then(|| fs::symlink_metadata(self.view.join(rel)).ok().filter(|m| m.is_dir()))
            .flatten()
    }

    /// Adds every missing parent directory of `path` (relative, no leading `/`).
    fn parents(&mut self, path: &str) -> io::Result<()> {
        let mut cur = String::new();
        let parts: Vec<&str> = path.split('/').collect();
        for part in &parts[..parts.len().saturating_sub(1)] {
            cur = join(&cur, part);
            if self.emitted.contains(&cur) {
                continue;
            }
            let existing = self.existing_dir(&cur);
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
            match existing {
                Some(m) => {
                    h.set_mode(m.mode() & 0o7777);
                    h.set_uid(m.uid().into());
                    h.set_gid(m.gid().into());
                    h.set_mtime(m.mtime().max(0) as u64);
                }
                None => {
                    h.set_mode(0o755);
                    h.set_uid(0);
                    h.set_gid(0);
                    h.set_mtime(now());
                }
            }
            self.builder.append_data(&mut h, format!("{cur}/"), io::empty())?;
            self.emitted.insert(cur.clone());
        }
        Ok(())
    }

    /// A directory at `path` with `src`'s mode (or the existing directory's metadata for the destination root).
    fn dir(&mut self, path: &str, src: &Path, owner: (u32, u32), mode: Option<u32>, is_dest: bool) -> io::Result<()> {
        if path.is_empty() || self.emitted.contains(path) {
            return Ok(());
        }
        self.parents(path)?;
        let existing = self.existing_dir(path);
        let meta = fs::symlink_metadata(src)?;
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_size(0);
        match existing.filter(|_| is_dest) {
            Some(m) => {
                h.set_mode(m.mode() & 0o7777);
                h.set_uid(m.uid().into());
                h.set_gid(m.gid().into());
                h.set_mtime(m.mtime().max(0) as u64);
            }
            None => {
                h.set_mode(mode.unwrap_or(meta.mode() & 0o7777));
                h.set_uid(owner.0.into());
                h.set_gid(owner.1.into());
                h.set_mtime(meta.mtime().max(0) as u64);
            }
        }
        self.builder.append_data(&mut h, format!("{path}/"), io::empty())?;
        self.emitted.insert(path.to_owned());
        Ok(())
    }

    fn file(&mut self, path: &str, src: &Path, owner: (u32, u32), mode: Option<u32>) -> io::Result<()> {
        self.parents(path)?;
        let file = File::open(src)?;
        let meta = file.metadata()?;
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(meta.len());
        h.set_mode(mode.unwrap_or(meta.mode() & 0o7777));
        h.set_uid(owner.0.into());
        h.set_gid(owner.1.into());
        h.set_mtime(meta.mtime().max(0) as u64);
        self.builder.append_data(&mut h, path, BufReader::new(file))
    }

    fn symlink(&mut self, path: &str, src: &Path, owner: (u32, u32)) -> io::Result<()> {
        self.parents(path)?;
        let target = fs::read_link(src)?;
        let meta = fs::symlink_metadata(src)?;
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        h.set_uid(owner.0.into());
        h.set_gid(owner.1.into());
        h.set_mtime(meta.mtime().max(0) as u64);
        self.builder.append_link(&mut h, path, target)
    }

    /// `ADD`'s extraction: every entry of the archive under `dest`; entries climbing out of it are refused.
    fn extract(&mut self, dest: &str, archive: &Path, owner: Option<(u32, u32)>) -> Result<(), String> {
        let name = archive.display().to_string();
        let kind = archive_kind(archive).map_err(|e| format!("cannot read {name}: {e}"))?;
        if matches!(kind, Some("bzip2" | "xz")) {
            return Err(format!(
                "ADD cannot extract {} archives (only tar and tar.gz): recompress it with gzip",
                kind.unwrap_or_default()
            ));
        }
        let file = File::open(archive).map_err(|e| format!("cannot read {name}: {e}"))?;
        let mut reader = BufReader::new(file);
        let gz = reader.fill_buf().map(|h| h.starts_with(&[0x1f, 0x8b])).unwrap_or(false);
        let reader: Box<dyn Read> =
            if gz { Box::new(flate2::read::MultiGzDecoder::new(reader)) } else { Box::new(reader) };
        let bad = |e: io::Error| format!("cannot extract {name}: {e}");
        if !dest.is_empty() {
            self.dir(dest, &self.view.join(dest), owner.unwrap_or((0, 0)), None, true)
                .or_else(|_| {
                    // The destination does not exist yet: a plain new directory.
                    self.new_dir(dest, owner.unwrap_or((0, 0)))
                })
                .map_err(bad)?;
        }
        let mut tar = tar::Archive::new(reader);
        for entry in tar.entries().map_err(bad)? {
            let mut entry = entry.map_err(bad)?;
            let raw = entry.path_bytes().into_owned();
            let Some(rel) = crate::image::layer::clean_relative(std::ffi::OsStr::from_bytes(&raw)) else {
                return Err(format!(
                    "cannot extract {name}: entry {} points outside the destination",
                    String::from_utf8_lossy(&raw)
                ));
            };
            let rel = rel.to_string_lossy().into_owned();
            if rel.is_empty() {
                continue;
            }
            let path = join(dest, rel.trim_end_matches('/'));
            self.parents(&path).map_err(bad)?;
            let mut header = entry.header().clone();
            if let Some((uid, gid)) = owner {
                header.set_uid(uid.into());
                header.set_gid(gid.into());
            }
            let kind = header.entry_type();
            if kind.is_dir() {
                if self.emitted.insert(path.clone()) {
                    self.builder.append_data(&mut header, format!("{path}/"), io::empty()).map_err(bad)?;
                }
            } else if kind.is_symlink() || kind.is_hard_link() {
                let target = entry.link_name().map_err(bad)?.map(|t| t.into_owned()).unwrap_or_default();
                let target = if kind.is_hard_link() {
                    let Some(t) = crate::image::layer::clean_relative(target.as_os_str()) else {
                        return Err(format!("cannot extract {name}: hard link {rel} points outside the archive"));
                    };
                    PathBuf::from(join(dest, &t.to_string_lossy()))
                } else {
                    target
                };
                self.builder.append_link(&mut header, &path, target).map_err(bad)?;
            } else {
                self.builder.append_data(&mut header, &path, &mut entry).map_err(bad)?;
            }
        }
        Ok(())
    }

    fn new_dir(&mut self, path: &str, owner: (u32, u32)) -> io::Result<()> {
        self.parents(path)?;
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_size(0);
        h.set_mode(0o755);
        h.set_uid(owner.0.into());
        h.set_gid(owner.1.into());
        h.set_mtime(now());
        self.builder.append_data(&mut h, format!("{path}/"), io::empty())?;
        self.emitted.insert(path.to_owned());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::context::BuildContext;
    use std::os::unix::fs::PermissionsExt;

    /// (path, mode, uid) of every entry of a layer tar.
    fn entries(tar: &[u8]) -> Vec<(String, u32, u64)> {
        let mut a = tar::Archive::new(tar);
        a.entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (e.path().unwrap().display().to_string(), h.mode().unwrap(), h.uid().unwrap())
            })
            .collect()
    }

    fn setup() -> (tempfile::TempDir, Root, tempfile::TempDir) {
        let state = tempfile::tempdir().unwrap();
        let root = Root::open(state.path()).unwrap();
        let ctx = tempfile::tempdir().unwrap();
        fs::create_dir_all(ctx.path().join("dir/sub")).unwrap();
        fs::write(ctx.path().join("a.txt"), "a").unwrap();
        fs::write(ctx.path().join("dir/sub/b.txt"), "b").unwrap();
        (state, root, ctx)
    }

    use crate::root::Root;

    fn layer(
        root: &Root,
        ctx: &Path,
        sources: &[&str],
        dest: &str,
        owner: Option<(u32, u32)>,
        mode: Option<u32>,
    ) -> Result<Vec<(String, u32, u64)>, String> {
        let context = BuildContext::from_dir(ctx).unwrap();
        let mut srcs = Vec::new();
        for s in sources {
            srcs.extend(context.select(s)?.into_iter().map(Source::Tree));
        }
        let view = ImageMount::new(root, &[]).unwrap();
        let mut out = Vec::new();
        write_layer(&CopyPlan { sources: srcs, dest: dest.to_owned(), owner, mode }, &view, &mut out)?;
        Ok(entries(&out))
    }

    #[test]
    fn destination_rules_follow_docker() {
        let (_s, root, ctx) = setup();
        let names = |v: Vec<(String, u32, u64)>| v.into_iter().map(|e| e.0).collect::<Vec<_>>();
        assert_eq!(names(layer(&root, ctx.path(), &["a.txt"], "/x/", None, None).unwrap()), ["x/", "x/a.txt"]);
        assert_eq!(names(layer(&root, ctx.path(), &["a.txt"], "/x", None, None).unwrap()), ["x"]);
        // A directory copies its contents.
        assert_eq!(
            names(layer(&root, ctx.path(), &["dir"], "/d", None, None).unwrap()),
            ["d/", "d/sub/", "d/sub/b.txt"]
        );
        let err = layer(&root, ctx.path(), &["a.txt", "dir"], "/x", None, None).unwrap_err();
        assert!(err.contains("must be a directory and end with a /"), "{err}");
    }

    #[test]
    fn chown_and_chmod_apply_to_copied_entries_only() {
        let (_s, root, ctx) = setup();
        let e = layer(&root, ctx.path(), &["a.txt"], "/opt/app/", Some((1000, 1000)), Some(0o600)).unwrap();
        assert_eq!(e[0], ("opt/".to_owned(), 0o755, 0), "created parents stay root-owned");
        assert_eq!(e[2], ("opt/app/a.txt".to_owned(), 0o600, 1000));
    }

    #[test]
    fn content_hash_sees_contents_and_modes_not_mtimes() {
        let (_s, _root, ctx) = setup();
        let hash = || {
            let c = BuildContext::from_dir(ctx.path()).unwrap();
            content_hash(&c.select("dir").unwrap().into_iter().map(Source::Tree).collect::<Vec<_>>()).unwrap()
        };
        let first = hash();
        let f = ctx.path().join("dir/sub/b.txt");
        fs::write(&f, "b").unwrap();
        assert_eq!(hash(), first, "rewriting the same bytes is not a change");
        fs::set_permissions(&f, fs::Permissions::from_mode(0o600)).unwrap();
        assert_ne!(hash(), first, "a mode change is a change");
        fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).unwrap();
        fs::write(&f, "c").unwrap();
        assert_ne!(hash(), first);
    }

    #[test]
    fn add_refuses_archive_entries_that_climb_out() {
        let (_s, root, ctx) = setup();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        let name = b"../escape";
        h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name);
        h.set_cksum();
        b.append(&h, &b"x"[..]).unwrap();
        let archive = ctx.path().join("evil.tar");
        fs::write(&archive, b.into_inner().unwrap()).unwrap();
        assert_eq!(archive_kind(&archive).unwrap(), Some("tar"));
        let view = ImageMount::new(&root, &[]).unwrap();
        let plan = CopyPlan { sources: vec![Source::Archive(archive)], dest: "/x/".into(), owner: None, mode: None };
        let err = write_layer(&plan, &view, Vec::new()).unwrap_err();
        assert!(err.contains("outside"), "{err}");
    }
}
