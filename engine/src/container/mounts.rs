//! A container's mounts: `-v`, `--mount`, `--tmpfs`, `--volumes-from` and the image's `VOLUME`s resolved at
//! create into [`MountPoint`]s (named volumes created on first use, anonymous ones made for the container, `-v`
//! bind sources created), prepared at each start (a new volume is filled with the image's content at its
//! destination — see [`crate::volume::copy_up`]), turned into OCI mounts for the runtime spec ([`super::spec`]),
//! shown by `inspect`, and — anonymous volumes only — removed by `rm -v` and `--rm`.
//!
//! Docker's rules: a destination is mounted once ("Duplicate mount point"); an image `VOLUME` that a flag already
//! covers gets no anonymous volume; `--volumes-from CTR[:ro|:rw]` takes the other container's volumes and binds
//! (not its tmpfs) with their own mode unless `:ro`/`:rw` says otherwise, and they are not anonymous for the new
//! container (its `rm -v` leaves them); mounts are made parents first ([`sort_parents_first`]), so a volume on
//! `/etc` does not hide the container's `/etc/hosts`.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::{json, Value};

use super::store::{Container, ContainerStore, MountKind, MountPoint};
use super::{Error, Result};
use crate::volume::{mount, MountRequest, VolumeStore};

/// The mount flags of `create`/`run`, as given.
#[derive(Debug, Clone, Copy, Default)]
pub struct MountFlags<'a> {
    pub volumes: &'a [String],
    pub mounts: &'a [String],
    pub tmpfs: &'a [String],
    pub volumes_from: &'a [String],
}

/// What a container asks for before anything is created.
enum Planned {
    Request(MountRequest),
    Inherited(MountPoint),
}

impl Planned {
    fn destination(&self) -> &str {
        match self {
            Planned::Request(r) => r.target(),
            Planned::Inherited(m) => &m.destination,
        }
    }
}

/// Parses every mount flag (errors before anything is created), then creates what the mounts need: named
/// volumes (first use), anonymous volumes (`-v /path`, `--mount` without source, image `VOLUME`s not covered by
/// a flag) and missing `-v` bind sources. If a step fails, the anonymous volumes made so far are removed.
pub fn resolve<'a>(
    store: &ContainerStore,
    volumes: &VolumeStore,
    flags: &MountFlags<'_>,
    image_volumes: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<MountPoint>> {
    let mut planned = Vec::new();
    for v in flags.volumes {
        planned.push(Planned::Request(mount::parse_volume_flag(v)?));
    }
    for m in flags.mounts {
        planned.push(Planned::Request(mount::parse_mount_flag(m)?));
    }
    for t in flags.tmpfs {
        planned.push(Planned::Request(mount::parse_tmpfs_flag(t)?));
    }
    for from in flags.volumes_from {
        let (name, mode) = match from.rsplit_once(':') {
            Some((n, m @ ("ro" | "rw"))) => (n, Some(m == "rw")),
            Some(_) => {
                return Err(Error::InvalidInput {
                    what: "--volumes-from",
                    value: from.clone(),
                    hint: "use CONTAINER[:ro|:rw]".into(),
                })
            }
            None => (from.as_str(), None),
        };
        let other = store.resolve(name)?;
        for m in other.host_config.mount_points.iter().filter(|m| m.kind != MountKind::Tmpfs) {
            let mut m = m.clone();
            m.rw = mode.unwrap_or(m.rw);
            m.anonymous = false;
            planned.push(Planned::Inherited(m));
        }
    }
    let mut seen = BTreeSet::new();
    for p in &planned {
        let dest = clean(p.destination());
        if !seen.insert(dest.clone()) {
            return Err(Error::InvalidInput {
                what: "mount",
                value: dest,
                hint: "Duplicate mount point: mount each container path once".into(),
            });
        }
    }
    for target in image_volumes {
        if seen.insert(clean(target)) {
            planned.push(Planned::Request(MountRequest::Volume {
                name: None,
                target: target.to_owned(),
                read_only: false,
                no_copy: false,
            }));
        }
    }

    let mut out: Vec<MountPoint> = Vec::new();
    for p in planned {
        match create(volumes, p) {
            Ok(m) => out.push(m),
            Err(e) => {
                for m in out.iter().filter(|m| m.anonymous) {
                    let _ = volumes.remove(&m.name, true, &|_| None);
                }
                return Err(e);
            }
        }
    }
    Ok(out)
}

/// A destination without trailing or doubled slashes, for comparisons.
fn clean(dest: &str) -> String {
    let parts: Vec<&str> = dest.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
    format!("/{}", parts.join("/"))
}

fn create(volumes: &VolumeStore, p: Planned) -> Result<MountPoint> {
    let req = match p {
        Planned::Inherited(m) => return Ok(m),
        Planned::Request(r) => r,
    };
    let point = |kind, name: String, source, destination: &str, rw, propagation: String| MountPoint {
        kind,
        name,
        source,
        destination: destination.to_owned(),
        rw,
        propagation,
        no_copy: false,
        anonymous: false,
        options: Vec::new(),
    };
    Ok(match &req {
        MountRequest::Volume { name, target, read_only, no_copy } => {
            let (volume, anonymous) = match name {
                Some(n) => (volumes.ensure(n)?, false),
                None => (volumes.create_anonymous()?, true),
            };
            let mut m = point(MountKind::Volume, volume.name, volume.mountpoint, target, !read_only, String::new());
            m.no_copy = *no_copy;
            m.anonymous = anonymous;
            m
        }
        MountRequest::Bind { source, target, read_only, propagation, .. } => {
            req.ensure_bind_source()?;
            let propagation = propagation.clone().unwrap_or_else(|| "rprivate".to_owned());
            point(MountKind::Bind, String::new(), source.clone(), target, !read_only, propagation)
        }
        MountRequest::Tmpfs { target, size, mode, read_only, options } => {
            let mut m = point(MountKind::Tmpfs, String::new(), Default::default(), target, !read_only, String::new());
            m.options = options.clone();
            if let Some(size) = size {
                m.options.push(format!("size={size}"));
            }
            if let Some(mode) = mode {
                m.options.push(format!("mode={mode:o}"));
            }
            m
        }
    })
}

/// Before each start, with the container's rootfs mounted at `rootfs`: fills each volume that was never
/// populated with what the image has at its destination (unless `nocopy`). A named volume removed while the
/// container was stopped is created again, as docker does.
pub fn prepare(volumes: &VolumeStore, points: &[MountPoint], rootfs: &Path) -> Result<()> {
    for m in points.iter().filter(|m| m.kind == MountKind::Volume) {
        let volume = if m.anonymous { volumes.get(&m.name)? } else { volumes.ensure(&m.name)? };
        if m.no_copy {
            continue;
        }
        let rel = Path::new(m.destination.trim_start_matches('/'));
        // Symlinks in the image resolve inside the rootfs; a path that cannot be resolved has nothing to copy.
        if let Ok(from) = crate::image::layer::resolve_in_root(rootfs, rel, &m.destination) {
            volumes.copy_up(&volume, &from)?;
        }
    }
    Ok(())
}

/// The OCI mounts of these mount points.
pub fn oci_mounts(points: &[MountPoint]) -> Vec<Value> {
    points
        .iter()
        .map(|m| match m.kind {
            MountKind::Bind | MountKind::Volume => {
                let propagation = if m.propagation.is_empty() { "rprivate" } else { m.propagation.as_str() };
                let mut options = vec!["rbind", propagation];
                if !m.rw {
                    options.push("ro");
                }
                json!({"destination": m.destination, "type": "bind", "source": m.source, "options": options})
            }
            MountKind::Tmpfs => {
                // docker's --tmpfs defaults: nosuid, nodev, noexec (unless `exec` is asked for).
                let mut options: Vec<String> = vec!["nosuid".into(), "nodev".into()];
                if !m.options.iter().any(|o| o == "exec" || o == "noexec") {
                    options.push("noexec".into());
                }
                options.extend(m.options.iter().cloned());
                if !m.rw {
                    options.push("ro".into());
                }
                json!({"destination": m.destination, "type": "tmpfs", "source": "tmpfs", "options": options})
            }
        })
        .collect()
}

/// Orders OCI mounts so that a parent directory is mounted before what is mounted inside it (by the number of
/// path components of the destination; equal depths keep their order).
pub fn sort_parents_first(mounts: &mut [Value]) {
    mounts.sort_by_key(|m| m["destination"].as_str().map_or(0, |d| d.split('/').filter(|p| !p.is_empty()).count()));
}

/// docker's `Mounts` in `inspect`.
pub fn inspect_json(points: &[MountPoint]) -> Vec<Value> {
    points
        .iter()
        .map(|m| match m.kind {
            MountKind::Volume => json!({
                "Type": "volume", "Name": m.name, "Source": m.source, "Destination": m.destination,
                "Driver": "local", "Mode": if m.rw { "z" } else { "ro" }, "RW": m.rw, "Propagation": "",
            }),
            MountKind::Bind => json!({
                "Type": "bind", "Source": m.source, "Destination": m.destination, "Mode": if m.rw { "" } else { "ro" },
                "RW": m.rw, "Propagation": m.propagation,
            }),
            MountKind::Tmpfs => json!({
                "Type": "tmpfs", "Source": "", "Destination": m.destination, "Mode": m.options.join(","),
                "RW": m.rw, "Propagation": "",
            }),
        })
        .collect()
}

/// `rm -v` and `--rm`: removes the container's anonymous volumes that no other container mounts (with
/// `--volumes-from`). Call after the container left the store. Returns the first error after trying all.
pub fn remove_anonymous(store: &ContainerStore, volumes: &VolumeStore, c: &Container) -> Result<()> {
    let anonymous: Vec<&MountPoint> = c.host_config.mount_points.iter().filter(|m| m.anonymous).collect();
    if anonymous.is_empty() {
        return Ok(());
    }
    let mut used = BTreeSet::new();
    for id in store.ids()?.iter().filter(|id| **id != c.id) {
        if let Ok(other) = store.load(id) {
            used.extend(other.host_config.mount_points.into_iter().map(|m| m.name));
        }
    }
    let mut first_error = None;
    for m in anonymous.into_iter().filter(|m| !used.contains(&m.name)) {
        match volumes.remove(&m.name, true, &|_| None) {
            Ok(()) | Err(crate::volume::Error::NotFound(_)) => {}
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    first_error.map_or(Ok(()), |e| Err(e.into()))
}

/// (volume name, container ID) for every volume a container mounts (for `volume rm` and `volume prune`).
pub fn volume_users(store: &ContainerStore) -> Result<Vec<(String, String)>> {
    let mut users = Vec::new();
    for id in store.ids()? {
        let Ok(c) = store.load(&id) else { continue };
        for m in c.host_config.mount_points.iter().filter(|m| m.kind == MountKind::Volume) {
            users.push((m.name.clone(), id.clone()));
        }
    }
    Ok(users)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_compare_cleaned() {
        assert_eq!(clean("/data/"), "/data");
        assert_eq!(clean("//a/./b"), "/a/b");
    }

    #[test]
    fn parents_are_mounted_first() {
        let mut mounts = vec![
            json!({"destination": "/etc/hosts"}),
            json!({"destination": "/etc"}),
            json!({"destination": "/data/x"}),
            json!({"destination": "/var"}),
        ];
        sort_parents_first(&mut mounts);
        let order: Vec<&str> = mounts.iter().filter_map(|m| m["destination"].as_str()).collect();
        assert_eq!(order, ["/etc", "/var", "/etc/hosts", "/data/x"]);
    }

    #[test]
    fn read_only_volumes_and_tmpfs_become_oci_mounts() {
        let m = MountPoint {
            kind: MountKind::Volume,
            name: "data".into(),
            source: "/r/volumes/data/_data".into(),
            destination: "/data".into(),
            rw: false,
            propagation: String::new(),
            no_copy: false,
            anonymous: false,
            options: vec![],
        };
        let t = MountPoint {
            kind: MountKind::Tmpfs,
            source: Default::default(),
            destination: "/run".into(),
            rw: true,
            options: vec!["size=1024".into(), "exec".into()],
            ..m.clone()
        };
        let mounts = oci_mounts(&[m, t]);
        assert_eq!(mounts[0]["options"], json!(["rbind", "rprivate", "ro"]));
        assert_eq!(mounts[0]["source"], "/r/volumes/data/_data");
        assert_eq!(mounts[1]["type"], "tmpfs");
        assert_eq!(mounts[1]["options"], json!(["nosuid", "nodev", "size=1024", "exec"]));
    }
}
