//! A read-only view of an image's file system for the builder: its unpacked layers mounted as one overlay (no
//! upper directory) under `tmp/`, unmounted when the guard drops. `COPY --from` reads its sources through it, and
//! `COPY`/`ADD`/`WORKDIR` look at the destination image through it (does the destination exist, is it a
//! directory, which uid does `--chown=name` mean) — overlay applies the layers' whiteouts and opaque directories,
//! so what the builder sees is exactly what a container would.

use std::fs;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::root::Root;

/// A mounted image file system (or an empty directory for an image without layers).
pub struct ImageMount {
    dir: tempfile::TempDir,
    mounted: bool,
}

impl ImageMount {
    /// Mounts `layers` (bottom first) read-only.
    pub fn new(root: &Root, layers: &[PathBuf]) -> std::io::Result<ImageMount> {
        let dir = root.staging_dir("build-view")?;
        let merged = dir.path().join("fs");
        let empty = dir.path().join("empty");
        fs::create_dir(&merged)?;
        fs::create_dir(&empty)?;
        if layers.is_empty() {
            return Ok(ImageMount { dir, mounted: false });
        }
        // Without an upper directory overlay wants at least two lower ones: an empty one goes at the bottom.
        let mut lower: Vec<String> = layers.iter().rev().map(|p| escape(p)).collect();
        lower.push(escape(&empty));
        let opts = format!("lowerdir={}", lower.join(":"));
        mount(Some("overlay"), &merged, Some("overlay"), MsFlags::MS_RDONLY, Some(opts.as_str()))
            .map_err(std::io::Error::from)?;
        Ok(ImageMount { dir, mounted: true })
    }

    /// The root of the image's file system.
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("fs")
    }

    /// `rel` (an absolute path inside the image) on the host, without following a final symlink; parent
    /// components that are symlinks are resolved inside the image.
    pub fn host_path(&self, rel: &str) -> PathBuf {
        resolve_parents(&self.path(), rel)
    }
}

impl Drop for ImageMount {
    fn drop(&mut self) {
        if self.mounted {
            let _ = umount2(&self.path(), MntFlags::MNT_DETACH);
        }
    }
}

fn escape(p: &Path) -> String {
    p.display().to_string().replace('\\', "\\\\").replace(':', "\\:").replace(',', "\\,")
}

/// Joins `rel` onto `root`, resolving symlinks met on the way inside `root` (absolute targets restart at
/// `root`, `..` stops there); the last component is not followed.
pub fn resolve_parents(root: &Path, rel: &str) -> PathBuf {
    let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
    let Some((last, parents)) = parts.split_last() else { return root.to_path_buf() };
    // The engine's own in-root resolution; on a link loop the root itself, never a path outside it.
    let resolve = |p: &[&str]| {
        crate::image::layer::resolve_in_root(root, Path::new(&p.join("/")), rel).unwrap_or_else(|_| root.to_path_buf())
    };
    if *last == ".." {
        return resolve(&parts);
    }
    resolve(parents).join(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_resolve_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("usr/lib")).unwrap();
        std::os::unix::fs::symlink("/usr/lib", root.join("lib")).unwrap();
        std::os::unix::fs::symlink("../../..", root.join("usr/up")).unwrap();
        assert_eq!(resolve_parents(root, "/lib/x"), root.join("usr/lib/x"));
        assert_eq!(resolve_parents(root, "/usr/up/etc/passwd"), root.join("etc/passwd"));
        assert_eq!(resolve_parents(root, "/lib"), root.join("lib"), "the last component is not followed");
        assert_eq!(resolve_parents(root, "/"), root.to_path_buf());
        assert_eq!(resolve_parents(root, "/.."), root.to_path_buf(), "`..` never climbs above the root");
        assert_eq!(resolve_parents(root, "/usr/../../../etc"), root.join("etc"));
    }
}
