//! `USER` / `-u` resolution as docker does it: `name`, `uid`, `name:group`, `uid:gid` looked up in the
//! container's own `/etc/passwd` and `/etc/group` (never the host's), giving uid, gid, supplementary groups and
//! `HOME`. Numeric ids need no entry; a name that is not found is an error.

use std::fs;
use std::path::Path;

use super::{Error, Result};
use crate::image::layer::resolve_in_root;

/// The user a container process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub home: String,
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

fn read_in_root(rootfs: &Path, file: &str) -> String {
    // Symlinks in the image resolve inside the rootfs, never to the host's files.
    resolve_in_root(rootfs, Path::new(file), file).ok().and_then(|p| fs::read_to_string(p).ok()).unwrap_or_default()
}

fn passwd(rootfs: &Path) -> Vec<PasswdEntry> {
    read_in_root(rootfs, "etc/passwd")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 7 {
                return None;
            }
            Some(PasswdEntry {
                name: f[0].to_owned(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f[5].to_owned(),
            })
        })
        .collect()
}

fn groups(rootfs: &Path) -> Vec<GroupEntry> {
    read_in_root(rootfs, "etc/group")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 4 {
                return None;
            }
            Some(GroupEntry {
                name: f[0].to_owned(),
                gid: f[2].parse().ok()?,
                members: f[3].split(',').filter(|m| !m.is_empty()).map(str::to_owned).collect(),
            })
        })
        .collect()
}

/// Resolves `spec` (`""` means root) against the rootfs at `rootfs`.
pub fn resolve(rootfs: &Path, spec: &str) -> Result<ExecUser> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let users = passwd(rootfs);
    let (uid, mut gid, home, name) = if user.is_empty() {
        let e = users.iter().find(|e| e.uid == 0);
        (0, e.map_or(0, |e| e.gid), e.map_or("/root".to_owned(), |e| e.home.clone()), e.map(|e| e.name.clone()))
    } else if let Ok(uid) = user.parse::<u32>() {
        let e = users.iter().find(|e| e.uid == uid);
        (uid, e.map_or(0, |e| e.gid), e.map_or("/".to_owned(), |e| e.home.clone()), e.map(|e| e.name.clone()))
    } else {
        let e = users.iter().find(|e| e.name == user).ok_or_else(|| Error::UnknownUser { user: user.to_owned() })?;
        (e.uid, e.gid, e.home.clone(), Some(e.name.clone()))
    };
    let all_groups = groups(rootfs);
    if let Some(g) = group.filter(|g| !g.is_empty()) {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => {
                all_groups.iter().find(|e| e.name == g).ok_or_else(|| Error::UnknownGroup { group: g.to_owned() })?.gid
            }
        };
    }
    // Supplementary groups come from group membership only when no explicit group was given (docker's rule).
    let additional_gids = match (&name, group) {
        (Some(n), None) => all_groups.iter().filter(|e| e.members.contains(n) && e.gid != gid).map(|e| e.gid).collect(),
        _ => Vec::new(),
    };
    let home = if home.is_empty() { "/".to_owned() } else { home };
    Ok(ExecUser { uid, gid, additional_gids, home })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rootfs() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let etc = t.path().join("etc");
        fs::create_dir_all(&etc).unwrap_or_else(|e| panic!("{e}"));
        fs::write(etc.join("passwd"), "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33::/var/www:/bin/false\n")
            .unwrap_or_else(|e| panic!("{e}"));
        fs::write(etc.join("group"), "root:x:0:\nwww:x:33:\nstaff:x:50:www\n").unwrap_or_else(|e| panic!("{e}"));
        t
    }

    #[test]
    fn names_and_numbers_resolve_like_docker() {
        let r = rootfs();
        assert_eq!(resolve(r.path(), "").ok().map(|u| (u.uid, u.home)), Some((0, "/root".to_owned())));
        let www = resolve(r.path(), "www").ok();
        assert_eq!(
            www.map(|u| (u.uid, u.gid, u.additional_gids, u.home)),
            Some((33, 33, vec![50], "/var/www".to_owned()))
        );
        assert_eq!(
            resolve(r.path(), "1000:staff").ok().map(|u| (u.uid, u.gid, u.home)),
            Some((1000, 50, "/".to_owned()))
        );
        assert_eq!(resolve(r.path(), "www:7").ok().map(|u| (u.gid, u.additional_gids)), Some((7, vec![])));
        assert!(matches!(resolve(r.path(), "nobody"), Err(Error::UnknownUser { .. })));
        assert!(matches!(resolve(r.path(), "0:nogroup"), Err(Error::UnknownGroup { .. })));
    }
}
