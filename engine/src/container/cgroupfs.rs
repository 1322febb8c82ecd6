//! The container's read-only view of the cgroup v1 hierarchies at `/sys/fs/cgroup`, prepared by the monitor on
//! the host and handed to libcontainer as one recursive bind mount.
//!
//! Why not the spec's `cgroup` mount: on a v1 (or hybrid) host, libcontainer emulates it inside the container
//! with a tmpfs plus one bind per hierarchy, each through its hardened mount path (about 70 system calls apiece:
//! over a third of the init process's work before `execve`), and it mounts them read-write whatever the spec
//! says — a root process in the container could raise its own memory or pids limit. Docker shows the same tree
//! read-only. Here the monitor builds that tree once on the host with plain `mount(2)` calls under
//! `<container>/cgroupfs`: a small tmpfs with one directory per hierarchy (named like the host's mount point,
//! `cpu`, `memory`, `systemd`…, plus the co-mount symlinks such as `cpuacct -> cpu,cpuacct`), each a read-only
//! bind of the container's own cgroup in that hierarchy, and the tmpfs itself remounted read-only. The spec then
//! carries one `rbind,rro` mount of it, which libcontainer makes with a single `open_tree`/`move_mount`.
//!
//! The container's cgroup in a hierarchy is `/drydock/<id>` for every hierarchy with a controller libcontainer
//! manages (it creates the directory too; we make it first, since a bind needs it to exist), and the monitor's
//! own cgroup for the others (named hierarchies such as `name=systemd`), as libcontainer's emulation binds them.
//! A cgroup v2 (unified) host keeps the spec's `cgroup` mount: libcontainer binds one cgroup2 directory there.
//!
//! The view lives as long as the container runs; [`unmount`] detaches it (with everything under it) before the
//! cgroups are removed.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use super::{io_err, spec, sys_err, Result};

/// The controllers libcontainer's v1 manager puts under the container's `cgroupsPath`.
const MANAGED: &[&str] = &[
    "cpu",
    "cpuacct",
    "cpuset",
    "devices",
    "hugetlb",
    "memory",
    "pids",
    "perf_event",
    "blkio",
    "net_prio",
    "net_cls",
    "freezer",
];

/// Where the view of container directory `dir` is mounted.
pub fn view_path(container_dir: &Path) -> PathBuf {
    container_dir.join("cgroupfs")
}

/// One v1 hierarchy as the container sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// The directory name under `/sys/fs/cgroup` (the host mount point's name: `cpu`, `cpu,cpuacct`, `systemd`).
    pub name: String,
    /// The host directory bound there: the container's cgroup in this hierarchy.
    pub source: PathBuf,
    /// True if libcontainer manages it (the directory is the container's `cgroupsPath`, created here).
    pub managed: bool,
    /// This process's own cgroup directory in the hierarchy.
    pub own: PathBuf,
}

/// The v1 hierarchies mounted under `/sys/fs/cgroup` and the container's cgroup in each, from this process's
/// `mountinfo` and `cgroup` files; empty on a cgroup v2 (unified) host.
pub fn hierarchies(mountinfo: &str, own_cgroups: &str, id: &str) -> Vec<Hierarchy> {
    let container = spec::cgroups_path(id);
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else { continue };
        let (Some(root), Some(point), Some(fstype), Some(super_opts)) =
            (fields.get(3), fields.get(4), fields.get(sep + 1), fields.get(sep + 3))
        else {
            continue;
        };
        let point = Path::new(*point);
        if *fstype != "cgroup" || point.parent() != Some(Path::new("/sys/fs/cgroup")) {
            continue;
        }
        let Some(name) = point.file_name().and_then(|n| n.to_str()) else { continue };
        let opts: Vec<&str> = super_opts.split(',').collect();
        // The line of /proc/self/cgroup whose controllers (or `name=`) are all options of this mount.
        let own = own_cgroups.lines().find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            let list: Vec<&str> = controllers.split(',').collect();
            (!controllers.is_empty() && list.iter().all(|c| opts.contains(c))).then_some((list, path))
        });
        let Some((controllers, path)) = own else { continue };
        let managed = controllers.iter().any(|c| MANAGED.contains(c));
        let under = |rel: &str| {
            let rel = rel.trim_start_matches('/');
            if rel.is_empty() {
                point.to_path_buf()
            } else {
                point.join(rel)
            }
        };
        // Relative to the mount's root (the hierarchy may be mounted from a sub-cgroup), by path components:
        // root `/init.scope` does not contain `/init.scope-x`. A mount that does not contain this process's
        // cgroup cannot show it: skip the hierarchy rather than bind a guessed path.
        let Some(rel) = Path::new(path).strip_prefix(root).ok().and_then(Path::to_str) else { continue };
        let own = under(rel);
        let source = if managed { under(&container) } else { own.clone() };
        out.push(Hierarchy { name: name.to_owned(), source, managed, own });
    }
    out
}

/// The v1 hierarchies of this host for container `id` (see [`hierarchies`]); empty on a cgroup v2 host or when
/// `/proc` cannot be read.
pub fn host_hierarchies(id: &str) -> Vec<Hierarchy> {
    if !host_is_v1() {
        return Vec::new();
    }
    match (fs::read_to_string("/proc/self/mountinfo"), fs::read_to_string("/proc/self/cgroup")) {
        (Ok(mountinfo), Ok(own)) => hierarchies(&mountinfo, &own, id),
        _ => Vec::new(),
    }
}

/// True if `/sys/fs/cgroup` holds v1 hierarchies (a tmpfs with one mount per hierarchy), not cgroup2.
fn host_is_v1() -> bool {
    nix::sys::statfs::statfs("/sys/fs/cgroup").is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC)
}

/// Builds the view of the hierarchies `list` (from [`host_hierarchies`]) under `container_dir` and returns its
/// path, or `None` when the list is empty (a cgroup v2 host: the spec keeps its `cgroup` mount there). Creates
/// the container's managed cgroup directories.
pub fn prepare(container_dir: &Path, list: &[Hierarchy]) -> Result<Option<PathBuf>> {
    if list.is_empty() {
        return Ok(None);
    }
    let view = view_path(container_dir);
    unmount(container_dir);
    fs::create_dir_all(&view).map_err(io_err(format!("cannot create {}", view.display())))?;
    let hardening = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(Some("tmpfs"), &view, Some("tmpfs"), hardening, Some("mode=755,size=64k"))
        .map_err(sys_err(format!("cannot mount a tmpfs on {}", view.display())))?;
    let built = populate(&view, list, hardening);
    if built.is_err() {
        unmount(container_dir);
    }
    built.map(|()| Some(view))
}

fn populate(view: &Path, list: &[Hierarchy], hardening: MsFlags) -> Result<()> {
    // Private: nothing mounted here propagates to or from the host's peers.
    mount(None::<&str>, view, None::<&str>, MsFlags::MS_PRIVATE, None::<&str>)
        .map_err(sys_err(format!("cannot make {} private", view.display())))?;
    for h in list {
        if h.managed {
            fs::create_dir_all(&h.source).map_err(io_err(format!("cannot create cgroup {}", h.source.display())))?;
        }
        let target = view.join(&h.name);
        fs::create_dir(&target).map_err(io_err(format!("cannot create {}", target.display())))?;
        mount(Some(&h.source), &target, None::<&str>, MsFlags::MS_BIND, None::<&str>).map_err(sys_err(format!(
            "cannot bind {} on {}",
            h.source.display(),
            target.display()
        )))?;
        let ro = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | hardening;
        mount(None::<&str>, &target, None::<&str>, ro, None::<&str>)
            .map_err(sys_err(format!("cannot make {} read-only", target.display())))?;
        // Co-mounted controllers (`cpu,cpuacct`) are also reachable by each name, as on the host.
        if h.name.contains(',') {
            for part in h.name.split(',').filter(|p| *p != h.name && !list.iter().any(|o| o.name == *p)) {
                let link = view.join(part);
                symlink(&h.name, &link).map_err(io_err(format!("cannot create {}", link.display())))?;
            }
        }
    }
    mount(None::<&str>, view, None::<&str>, MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | hardening, Some("mode=755"))
        .map_err(sys_err(format!("cannot make {} read-only", view.display())))
}

/// Detaches the view of `container_dir` and everything mounted in it (a no-op when there is none).
pub fn unmount(container_dir: &Path) {
    let _ = umount2(&view_path(container_dir), MntFlags::MNT_DETACH);
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
23 1 0:22 / /sys rw,nosuid - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 /init.scope /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 31 0:39 / /sys/fs/cgroup/rdma rw,relatime - cgroup cgroup rw,rdma
";
    const OWN: &str = "\
12:rdma:/
9:name=systemd:/init.scope/user
4:memory:/process_api/x
2:cpu,cpuacct:/
0::/
";

    #[test]
    fn managed_hierarchies_bind_the_container_cgroup_others_our_own() {
        let id = "c".repeat(64);
        let got = hierarchies(MOUNTINFO, OWN, &id);
        let h = |name: &str, source: String, managed, own: &str| Hierarchy {
            name: name.into(),
            source: source.into(),
            managed,
            own: own.into(),
        };
        assert_eq!(
            got,
            vec![
                h(
                    "cpu,cpuacct",
                    format!("/sys/fs/cgroup/cpu,cpuacct/drydock/{id}"),
                    true,
                    "/sys/fs/cgroup/cpu,cpuacct"
                ),
                h("memory", format!("/sys/fs/cgroup/memory/drydock/{id}"), true, "/sys/fs/cgroup/memory/process_api/x"),
                h("systemd", "/sys/fs/cgroup/systemd/user".into(), false, "/sys/fs/cgroup/systemd/user"),
                h("rdma", "/sys/fs/cgroup/rdma".into(), false, "/sys/fs/cgroup/rdma"),
            ]
        );
    }

    /// Mount root `/init.scope` does not contain cgroup `/init.scope-x` (a string prefix said it did, and the
    /// view bound `<mount>/-x`).
    #[test]
    fn a_cgroup_outside_the_mount_root_is_skipped() {
        let own = OWN.replace("/init.scope/user", "/init.scope-x");
        let got = hierarchies(MOUNTINFO, &own, "c");
        assert!(got.iter().all(|h| h.name != "systemd"), "{got:?}");
        assert!(got.iter().any(|h| h.name == "memory"), "{got:?}");
    }

    #[test]
    fn a_unified_host_has_no_v1_hierarchies() {
        let mountinfo = "31 23 0:28 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw\n";
        assert!(hierarchies(mountinfo, "0::/user.slice\n", "x").is_empty());
    }
}
