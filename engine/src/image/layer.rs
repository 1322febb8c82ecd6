//! Unpacking layer tars into directories, safely, in overlayfs format.
//!
//! A layer tar is untrusted input. Every entry is placed with [`resolve_in_root`], which follows symlinks the way
//! the container will see them — absolute targets and `..` are clamped at the layer directory — so no entry,
//! hard link or symlink can make us write outside the target. Entry names that climb above the root (`../x`)
//! are refused and the whole layer fails: the caller unpacks into a staging directory, so the store is unchanged.
//!
//! OCI whiteouts become overlayfs ones: `.wh.NAME` → a `0:0` character device `NAME`, `.wh..wh..opq` → the
//! `trusted.overlay.opaque=y` xattr on its directory. Other `.wh..wh.` entries (aufs bookkeeping) are dropped.
//! Owners, modes, mtimes, device nodes, FIFOs, hard links and `SCHILY.xattr.*` extended attributes are kept.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, Gid, Uid};

pub const WHITEOUT_PREFIX: &str = ".wh.";
pub const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";
const MAX_SYMLINKS: usize = 255;

/// Why a layer could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("layer entry `{0}` points outside the layer (refusing a path with `..` above its root)")]
    Escape(String),
    #[error("layer entry `{entry}`: hard link target `{target}` does not exist in this layer")]
    MissingLinkTarget { entry: String, target: String },
    #[error("layer entry `{0}`: too many levels of symbolic links")]
    SymlinkLoop(String),
    #[error("unsupported layer compression: {0} (use an uncompressed or gzip-compressed tar)")]
    Compression(&'static str),
    #[error("corrupt or truncated layer tar: {0}")]
    Corrupt(io::Error),
    #[error("cannot write layer entry `{entry}`: {source}")]
    Write { entry: String, source: io::Error },
}

pub type Result<T> = std::result::Result<T, Error>;

/// What a layer held, for sizes shown by `images` and `history`.
#[derive(Debug, Default, Clone, Copy)]
pub struct UnpackStats {
    pub entries: u64,
    pub bytes: u64,
}

/// Wraps `reader` in a decompressor chosen by sniffing its first bytes (tar or gzip).
pub fn decompressed<'a, R: Read + 'a>(reader: R) -> Result<Box<dyn Read + 'a>> {
    let mut reader = BufReader::with_capacity(256 * 1024, reader);
    let head = reader.fill_buf().map_err(Error::Corrupt)?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(reader)))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Err(Error::Compression("zstd"))
    } else if head.starts_with(b"BZh") {
        Err(Error::Compression("bzip2"))
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Err(Error::Compression("xz"))
    } else {
        Ok(Box::new(reader))
    }
}

/// Unpacks the (uncompressed) layer tar stream `reader` into the existing directory `dest`, OCI whiteouts
/// becoming overlay ones.
pub fn unpack(reader: impl Read, dest: &Path) -> Result<UnpackStats> {
    unpack_into(reader, dest, Whiteouts::Apply)
}

/// Unpacks a plain tar of files (`docker cp` into a container) into the existing directory `dest`: a
/// `.wh.NAME` entry is a file of that name, never an instruction to delete `NAME`.
pub fn unpack_files(reader: impl Read, dest: &Path) -> Result<UnpackStats> {
    unpack_into(reader, dest, Whiteouts::AreFiles)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Whiteouts {
    Apply,
    AreFiles,
}

fn unpack_into(reader: impl Read, dest: &Path, whiteouts: Whiteouts) -> Result<UnpackStats> {
    let mut archive = tar::Archive::new(reader);
    let mut stats = UnpackStats::default();
    let mut dir_times: Vec<(PathBuf, i64)> = Vec::new();
    for entry in archive.entries().map_err(Error::Corrupt)? {
        let mut entry = entry.map_err(Error::Corrupt)?;
        let raw_path = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw_path).into_owned();
        let rel = clean_relative(OsStr::from_bytes(&raw_path)).ok_or_else(|| Error::Escape(name.clone()))?;
        stats.entries += 1;
        let Some(file_name) = rel.file_name().map(OsStr::to_os_string) else {
            continue; // the root itself (`./`): nothing to create
        };
        let parent = resolve_in_root(dest, rel.parent().unwrap_or(Path::new("")), &name)?;
        let io_err = |source: io::Error| Error::Write { entry: name.clone(), source };
        fs::create_dir_all(&parent).map_err(io_err)?;
        // `create_dir_all` may have made directories: make sure none of them is a symlink out (they cannot be,
        // `resolve_in_root` followed every existing one), then work relative to the resolved parent.
        let file_name_bytes = file_name.as_bytes();
        if whiteouts == Whiteouts::AreFiles {
            // Plain files: fall through to the entry kinds below.
        } else if file_name_bytes == OPAQUE_WHITEOUT.as_bytes() {
            xattr_set(&parent, "trusted.overlay.opaque", b"y").map_err(io_err)?;
            continue;
        } else if let Some(hidden) = file_name_bytes.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            if hidden.starts_with(WHITEOUT_PREFIX.as_bytes()) {
                continue; // aufs metadata such as .wh..wh.plnk
            }
            let target = parent.join(OsStr::from_bytes(hidden));
            remove_existing(&target, false).map_err(io_err)?;
            mknod(&target, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0)).map_err(|e| io_err(e.into()))?;
            continue;
        }
        let target = parent.join(&file_name);
        let header = entry.header().clone();
        let kind = header.entry_type();
        let mode = header.mode().unwrap_or(0o644) & 0o7777;
        let is_dir = kind.is_dir();
        remove_existing(&target, is_dir).map_err(io_err)?;
        match kind {
            tar::EntryType::Directory => {
                if !target.is_dir() {
                    fs::create_dir(&target).map_err(io_err)?;
                }
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .mode(0o600)
                    .open(&target)
                    .map_err(io_err)?;
                let expected = entry.size();
                let copied = io::copy(&mut entry, &mut file).map_err(Error::Corrupt)?;
                if copied != expected {
                    return Err(Error::Corrupt(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("`{name}` holds {copied} of its {expected} bytes"),
                    )));
                }
                stats.bytes += copied;
            }
            tar::EntryType::Symlink => {
                let link =
                    entry.link_name_bytes().ok_or_else(|| Error::Corrupt(invalid_data("symlink without target")))?;
                symlink(OsStr::from_bytes(&link), &target).map_err(io_err)?;
            }
            tar::EntryType::Link => {
                let link =
                    entry.link_name_bytes().ok_or_else(|| Error::Corrupt(invalid_data("hard link without target")))?;
                let link_name = String::from_utf8_lossy(&link).into_owned();
                let link_rel = clean_relative(OsStr::from_bytes(&link)).ok_or_else(|| Error::Escape(name.clone()))?;
                let link_parent = resolve_in_root(dest, link_rel.parent().unwrap_or(Path::new("")), &name)?;
                let source = link_parent.join(link_rel.file_name().unwrap_or_default());
                if fs::symlink_metadata(&source).is_err() {
                    return Err(Error::MissingLinkTarget { entry: name, target: link_name });
                }
                fs::hard_link(&source, &target).map_err(io_err)?;
                continue; // a hard link shares the metadata of its target
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let flag = match kind {
                    tar::EntryType::Char => SFlag::S_IFCHR,
                    tar::EntryType::Block => SFlag::S_IFBLK,
                    _ => SFlag::S_IFIFO,
                };
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                mknod(&target, flag, Mode::from_bits_truncate(mode), makedev(major.into(), minor.into()))
                    .map_err(|e| io_err(e.into()))?;
            }
            // PAX and GNU long-name headers are consumed by the tar crate; anything else is skipped.
            _ => continue,
        }
        // Blank numeric fields read as 0, as Go's archive/tar (and so docker) reads them.
        let uid = header.uid().unwrap_or(0);
        let gid = header.gid().unwrap_or(0);
        fchownat(
            None,
            &target,
            Some(Uid::from_raw(uid as u32)),
            Some(Gid::from_raw(gid as u32)),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| io_err(e.into()))?;
        if kind != tar::EntryType::Symlink {
            fs::set_permissions(&target, fs::Permissions::from_mode(mode)).map_err(io_err)?;
        }
        if let Ok(Some(exts)) = entry.pax_extensions() {
            for ext in exts.flatten() {
                if let Some(attr) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") {
                    let attr = String::from_utf8_lossy(attr).into_owned();
                    // Best effort, as docker: a filesystem without user xattrs must not fail the layer.
                    let _ = xattr_set_nofollow(&target, &attr, ext.value_bytes());
                }
            }
        }
        let mtime = header.mtime().unwrap_or(0) as i64;
        if is_dir {
            dir_times.push((target, mtime));
        } else {
            set_mtime(&target, mtime);
        }
    }
    // Directory mtimes last: creating entries inside them would change them again.
    for (dir, mtime) in dir_times.into_iter().rev() {
        set_mtime(&dir, mtime);
    }
    Ok(stats)
}

/// The relative, lexically clean form of a tar entry name; `None` if it climbs above the root.
pub fn clean_relative(name: &OsStr) -> Option<PathBuf> {
    let mut parts: Vec<&OsStr> = Vec::new();
    for c in Path::new(name).components() {
        match c {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::Normal(p) => parts.push(p),
        }
    }
    Some(parts.iter().collect())
}

/// True if acting on `root.join(rel)` from the host stays under `root`: `rel` is relative without `..`, and no
/// directory on the way (the last component excluded) is a symlink — one made by a container or an image could
/// point anywhere on the host. Parts that do not exist yet are fine.
pub fn parents_stay_in_root(root: &Path, rel: &Path) -> bool {
    let parts: Vec<Component<'_>> = rel.components().filter(|c| *c != Component::CurDir).collect();
    let mut cur = root.to_path_buf();
    for (i, c) in parts.iter().enumerate() {
        let Component::Normal(name) = c else { return false };
        if i + 1 == parts.len() {
            break;
        }
        cur.push(name);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => return false,
            Ok(_) => {}
            Err(_) => return true,
        }
    }
    true
}

/// Resolves `rel` (a directory path) inside `root`, following existing symlinks as the container would see them:
/// absolute targets restart at `root`, `..` never climbs above it. The result is always under `root`.
pub fn resolve_in_root(root: &Path, rel: &Path, entry: &str) -> Result<PathBuf> {
    let mut queue: VecDeque<OsString> = rel.components().map(|c| c.as_os_str().to_os_string()).collect();
    let mut resolved = PathBuf::from(root);
    let mut depth = 0usize;
    let mut links = 0usize;
    while let Some(part) = queue.pop_front() {
        match part.as_bytes() {
            b"" | b"." | b"/" => continue,
            b".." => {
                if depth > 0 {
                    resolved.pop();
                    depth -= 1;
                }
                continue;
            }
            _ => {}
        }
        let candidate = resolved.join(&part);
        match fs::symlink_metadata(&candidate) {
            Ok(meta) if meta.file_type().is_symlink() => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(Error::SymlinkLoop(entry.to_owned()));
                }
                let target =
                    fs::read_link(&candidate).map_err(|source| Error::Write { entry: entry.to_owned(), source })?;
                if target.is_absolute() {
                    resolved = PathBuf::from(root);
                    depth = 0;
                }
                for c in target.components().rev() {
                    queue.push_front(c.as_os_str().to_os_string());
                }
            }
            _ => {
                resolved = candidate;
                depth += 1;
            }
        }
    }
    Ok(resolved)
}

/// Clears the way for a new entry at `path`: a later tar entry replaces an earlier one, except that a directory
/// over an existing directory merges into it.
fn remove_existing(path: &Path, new_is_dir: bool) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => {
            if new_is_dir {
                Ok(())
            } else {
                fs::remove_dir_all(path)
            }
        }
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn set_mtime(path: &Path, secs: i64) {
    let ts = TimeSpec::new(secs, 0);
    // Best effort: mtimes are informational and some entries (sockets, devices on odd filesystems) refuse them.
    let _ = nix::sys::stat::utimensat(None, path, &ts, &ts, nix::sys::stat::UtimensatFlags::NoFollowSymlink);
}

fn invalid_data(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_owned())
}

fn c_path(path: &Path) -> io::Result<std::ffi::CString> {
    std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| invalid_data("path contains NUL"))
}

fn xattr_set(path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    let p = c_path(path)?;
    let n = std::ffi::CString::new(name).map_err(|_| invalid_data("xattr name contains NUL"))?;
    // SAFETY: both strings are NUL-terminated and live across the call; value points to value.len() bytes.
    let rc = unsafe { libc::setxattr(p.as_ptr(), n.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn xattr_set_nofollow(path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    let p = c_path(path)?;
    let n = std::ffi::CString::new(name).map_err(|_| invalid_data("xattr name contains NUL"))?;
    // SAFETY: as in `xattr_set`.
    let rc = unsafe { libc::lsetxattr(p.as_ptr(), n.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Reads an extended attribute without following symlinks; `None` when it is not set.
pub fn xattr_get(path: &Path, name: &str) -> Option<Vec<u8>> {
    let p = c_path(path).ok()?;
    let n = std::ffi::CString::new(name).ok()?;
    let mut buf = vec![0u8; 256];
    // SAFETY: buf is valid for buf.len() bytes; strings are NUL-terminated.
    let rc = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if rc < 0 {
        return None;
    }
    buf.truncate(rc as usize);
    Some(buf)
}

/// Total size in bytes of the regular files under `dir` (hard links counted once per name, as `du --apparent`).
pub fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) if m.is_file() => total += m.len(),
                _ => {}
            }
        }
    }
    total
}

/// Opens a blob for unpacking.
pub fn open_blob(path: &Path) -> io::Result<File> {
    File::open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_with(entries: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, data, link) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_size(data.len() as u64);
            h.set_mode(0o755);
            // Write raw names so hostile ones (`..`, absolute) reach the unpacker unchanged.
            let gnu = h.as_gnu_mut().expect("gnu header");
            gnu.name[..name.len()].copy_from_slice(name.as_bytes());
            if let Some(l) = link {
                gnu.linkname[..l.len()].copy_from_slice(l.as_bytes());
            }
            h.set_cksum();
            b.append(&h, *data).expect("append");
        }
        b.into_inner().expect("finish")
    }

    #[test]
    fn refuses_parent_escapes() {
        let dir = tempfile::tempdir().expect("tmp");
        let tar = tar_with(&[("../evil", tar::EntryType::Regular, b"x", None)]);
        assert!(matches!(unpack(&tar[..], dir.path()), Err(Error::Escape(_))));
        assert!(!dir.path().parent().expect("parent").join("evil").exists());
    }

    #[test]
    fn writes_through_symlinks_stay_inside() {
        let outer = tempfile::tempdir().expect("tmp");
        let dest = outer.path().join("layer");
        fs::create_dir(&dest).expect("mkdir");
        let outside = outer.path().join("outside");
        fs::create_dir(&outside).expect("mkdir");
        let abs = outside.to_string_lossy().into_owned();
        let tar = tar_with(&[
            ("abs", tar::EntryType::Symlink, b"", Some(&abs)),
            ("abs/pwned", tar::EntryType::Regular, b"x", None),
            ("rel", tar::EntryType::Symlink, b"", Some("../../../outside")),
            ("rel/pwned2", tar::EntryType::Regular, b"x", None),
            ("/absolute-name", tar::EntryType::Regular, b"y", None),
        ]);
        unpack(&tar[..], &dest).expect("unpacks inside");
        assert!(!outside.join("pwned").exists());
        assert!(!outside.join("pwned2").exists());
        assert!(dest.join(abs.trim_start_matches('/')).join("pwned").exists());
        assert!(dest.join("outside/pwned2").exists());
        assert!(dest.join("absolute-name").exists());
    }

    #[test]
    fn hard_links_must_exist_inside() {
        let dir = tempfile::tempdir().expect("tmp");
        let tar = tar_with(&[("link", tar::EntryType::Link, b"", Some("/etc/passwd"))]);
        assert!(matches!(unpack(&tar[..], dir.path()), Err(Error::MissingLinkTarget { .. })));
        let tar =
            tar_with(&[("a", tar::EntryType::Regular, b"data", None), ("b", tar::EntryType::Link, b"", Some("a"))]);
        let dir = tempfile::tempdir().expect("tmp");
        unpack(&tar[..], dir.path()).expect("unpacks");
        assert_eq!(fs::read(dir.path().join("b")).ok().as_deref(), Some(&b"data"[..]));
    }

    #[test]
    fn whiteouts_become_overlay_format() {
        let dir = tempfile::tempdir().expect("tmp");
        let tar = tar_with(&[
            ("d/", tar::EntryType::Directory, b"", None),
            ("d/.wh..wh..opq", tar::EntryType::Regular, b"", None),
            ("d/.wh.gone", tar::EntryType::Regular, b"", None),
        ]);
        unpack(&tar[..], dir.path()).expect("unpacks");
        use std::os::unix::fs::FileTypeExt;
        let meta = fs::symlink_metadata(dir.path().join("d/gone")).expect("whiteout exists");
        assert!(meta.file_type().is_char_device());
        assert_eq!(xattr_get(&dir.path().join("d"), "trusted.overlay.opaque").as_deref(), Some(&b"y"[..]));
    }

    /// `docker cp` of a tar holding `.wh.passwd` must copy that file, not delete `passwd` (it did).
    #[test]
    fn plain_file_tars_keep_whiteout_names_as_files() {
        let dir = tempfile::tempdir().expect("tmp");
        fs::write(dir.path().join("passwd"), "root:x:0:0").expect("write");
        let tar = tar_with(&[
            (".wh.passwd", tar::EntryType::Regular, b"mine", None),
            (".wh..wh..opq", tar::EntryType::Regular, b"", None),
        ]);
        unpack_files(&tar[..], dir.path()).expect("unpacks");
        assert_eq!(fs::read_to_string(dir.path().join("passwd")).expect("still there"), "root:x:0:0");
        assert_eq!(fs::read_to_string(dir.path().join(".wh.passwd")).expect("copied"), "mine");
        assert!(dir.path().join(".wh..wh..opq").is_file());
        assert_eq!(xattr_get(dir.path(), "trusted.overlay.opaque"), None);
    }

    #[test]
    fn truncated_tar_is_an_error() {
        let tar = tar_with(&[("file", tar::EntryType::Regular, &[7u8; 4096], None)]);
        let dir = tempfile::tempdir().expect("tmp");
        assert!(unpack(&tar[..1000], dir.path()).is_err());
    }
}

#[cfg(test)]
mod stay_in_root_tests {
    use super::*;

    #[test]
    fn a_symlinked_parent_or_a_climb_leaves_the_root() -> io::Result<()> {
        let root = tempfile::tempdir()?;
        fs::create_dir_all(root.path().join("real/sub"))?;
        symlink("/etc", root.path().join("out"))?;
        assert!(parents_stay_in_root(root.path(), Path::new("real/sub/file")));
        assert!(parents_stay_in_root(root.path(), Path::new("not/yet/made")));
        // The last component may itself be a link: acting on it (removing, replacing) does not follow it.
        assert!(parents_stay_in_root(root.path(), Path::new("out")));
        assert!(!parents_stay_in_root(root.path(), Path::new("out/passwd")));
        assert!(!parents_stay_in_root(root.path(), Path::new("real/../../x")));
        assert!(!parents_stay_in_root(root.path(), Path::new("/etc/passwd")));
        Ok(())
    }
}
