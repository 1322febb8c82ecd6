//! Copy-up: docker fills a new, empty volume with what the image has at the mount path the first time the volume
//! is mounted there, keeping owners, modes, times, symlinks, hard links and special files. Drydock does it when
//! the volume is empty *and* has never been populated (a volume someone emptied on purpose stays empty), unless
//! the mount says `nocopy`.
//!
//! The copy is made in a staging directory under `<root>/tmp/` without the lock (it may be large), then moved
//! into `_data` entry by entry under the root lock after checking again that nobody populated it meanwhile. The
//! volume's root directory takes the owner and mode of the image directory, as docker does.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::{lchown, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use nix::sys::stat::{mknod, utimensat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;

use super::{io_err, is_empty_dir, Result, Volume, VolumeStore};

impl VolumeStore {
    /// Copies the directory `from` (the image's content at the mount target, already resolved inside the
    /// container's root filesystem) into `volume` if it is empty and was never populated. Returns whether it
    /// copied. A missing `from` copies nothing.
    pub fn copy_up(&self, volume: &Volume, from: &Path) -> Result<bool> {
        let fresh = self.get(&volume.name)?;
        if fresh.populated || !is_empty_dir(&fresh.mountpoint) || !from.is_dir() {
            return Ok(false);
        }
        // No dash in the prefix: `Root::clean_tmp` reads the owner's pid from the second dash-separated field.
        let staging = self.root.staging_dir("copyup").map_err(io_err("cannot create a staging directory"))?;
        let stage = staging.path().join("data");
        fs::create_dir(&stage).map_err(io_err("cannot create a staging directory"))?;
        let mut links = HashMap::new();
        copy_children(from, &stage, &mut links).map_err(io_err(format!(
            "cannot copy {} into volume {}",
            from.display(),
            volume.name
        )))?;

        let lock = self.root.lock()?;
        let mut fresh = self.get(&volume.name)?;
        if fresh.populated || !is_empty_dir(&fresh.mountpoint) {
            return Ok(false);
        }
        let data = &fresh.mountpoint;
        for entry in fs::read_dir(&stage).map_err(io_err("cannot read the staging directory"))?.flatten() {
            let to = data.join(entry.file_name());
            fs::rename(entry.path(), &to).map_err(io_err(format!("cannot move into {}", to.display())))?;
        }
        copy_metadata(from, data).map_err(io_err(format!("cannot set owner and mode of {}", data.display())))?;
        fresh.populated = true;
        self.save(&fresh, &lock)?;
        Ok(true)
    }
}

/// Copies the entries of directory `from` into the existing directory `to`.
fn copy_children(from: &Path, to: &Path, links: &mut HashMap<(u64, u64), std::path::PathBuf>) -> io::Result<()> {
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        copy_entry(&entry.path(), &to.join(entry.file_name()), links)?;
    }
    Ok(())
}

fn copy_entry(from: &Path, to: &Path, links: &mut HashMap<(u64, u64), std::path::PathBuf>) -> io::Result<()> {
    let meta = fs::symlink_metadata(from)?;
    let ft = meta.file_type();
    if !ft.is_dir() && meta.nlink() > 1 {
        if let Some(first) = links.get(&(meta.dev(), meta.ino())) {
            return fs::hard_link(first, to);
        }
        links.insert((meta.dev(), meta.ino()), to.to_path_buf());
    }
    if ft.is_dir() {
        fs::create_dir(to)?;
        copy_children(from, to, links)?;
    } else if ft.is_symlink() {
        std::os::unix::fs::symlink(fs::read_link(from)?, to)?;
    } else if ft.is_file() {
        fs::copy(from, to)?;
    } else {
        let kind = if ft.is_fifo() {
            SFlag::S_IFIFO
        } else if ft.is_char_device() {
            SFlag::S_IFCHR
        } else if ft.is_block_device() {
            SFlag::S_IFBLK
        } else {
            // Sockets mean nothing outside the process that made them.
            return Ok(());
        };
        mknod(to, kind, Mode::from_bits_truncate(meta.mode()), meta.rdev()).map_err(io::Error::from)?;
    }
    copy_metadata(from, to)
}

/// Owner, mode (after the owner: chown clears set-id bits) and times of `from` onto `to`, without following a
/// symlink.
fn copy_metadata(from: &Path, to: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(from)?;
    lchown(to, Some(meta.uid()), Some(meta.gid()))?;
    if !meta.file_type().is_symlink() {
        fs::set_permissions(to, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    }
    let atime = TimeSpec::new(meta.atime(), meta.atime_nsec());
    let mtime = TimeSpec::new(meta.mtime(), meta.mtime_nsec());
    utimensat(None, to, &atime, &mtime, UtimensatFlags::NoFollowSymlink).map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn a_new_volume_is_filled_once_with_owners_and_modes() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let root = crate::root::Root::open(&tmp.path().join("root"))?;
        let store = VolumeStore::open(&root)?;
        let image = tmp.path().join("image/etc/app");
        fs::create_dir_all(image.join("conf.d"))?;
        fs::write(image.join("app.conf"), "x=1\n")?;
        fs::set_permissions(image.join("app.conf"), fs::Permissions::from_mode(0o640))?;
        fs::hard_link(image.join("app.conf"), image.join("conf.d/link.conf"))?;
        std::os::unix::fs::symlink("app.conf", image.join("current"))?;
        fs::set_permissions(&image, fs::Permissions::from_mode(0o750))?;
        let uid_gid = nix::unistd::geteuid().is_root().then_some((1234, 4321));
        if let Some((u, g)) = uid_gid {
            lchown(image.join("app.conf"), Some(u), Some(g))?;
        }

        let v = store.create(Some("conf"), BTreeMap::new(), BTreeMap::new())?;
        assert!(store.copy_up(&v, &image)?, "an empty new volume is filled");
        let data = &v.mountpoint;
        assert_eq!(fs::read_to_string(data.join("app.conf"))?, "x=1\n");
        assert_eq!(fs::metadata(data.join("app.conf"))?.mode() & 0o7777, 0o640);
        assert_eq!(fs::metadata(data)?.mode() & 0o7777, 0o750, "the volume root takes the image dir's mode");
        assert_eq!(fs::read_link(data.join("current"))?, Path::new("app.conf"));
        assert_eq!(fs::metadata(data.join("conf.d/link.conf"))?.ino(), fs::metadata(data.join("app.conf"))?.ino());
        if let Some((u, g)) = uid_gid {
            let m = fs::metadata(data.join("app.conf"))?;
            assert_eq!((m.uid(), m.gid()), (u, g));
        }
        assert!(store.get("conf")?.populated);

        // Emptied by a container: never filled again.
        fs::remove_dir_all(data)?;
        fs::create_dir(data)?;
        assert!(!store.copy_up(&v, &image)?);
        assert!(is_empty_dir(data));

        // A volume that already has content is left alone.
        let w = store.create(Some("busy"), BTreeMap::new(), BTreeMap::new())?;
        fs::write(w.mountpoint.join("mine"), "keep")?;
        assert!(!store.copy_up(&w, &image)?);
        assert!(!w.mountpoint.join("app.conf").exists());

        // Nothing at the path in the image: nothing copied, and a later mount with content may still fill it.
        let e = store.create(Some("later"), BTreeMap::new(), BTreeMap::new())?;
        assert!(!store.copy_up(&e, &tmp.path().join("image/missing"))?);
        assert!(store.copy_up(&e, &image)?);
        Ok(())
    }
}
