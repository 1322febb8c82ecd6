//! `-v`/`--volume`, `--mount` and `--tmpfs` parsed into [`MountRequest`]s, which the runtime turns into OCI
//! mounts. docker's rules:
//! - `-v /path` is an anonymous volume; `-v NAME:/path[:opts]` a named volume (NAME must be a valid volume name,
//!   so a relative host path such as `./data` is refused with a hint); `-v /host:/path[:opts]` a bind mount
//!   whose source is **created** if missing. Options: `ro`/`rw`, `z`/`Z`, `nocopy` (volumes), propagation
//!   (`private`, `rprivate`, `shared`, `rshared`, `slave`, `rslave`; binds).
//! - `--mount type=bind|volume|tmpfs,source=…,target=…,readonly,…`: a bind source must **exist**; the default
//!   type is `volume`; an omitted volume source makes an anonymous volume.
//! - `--tmpfs /path[:opts]` with mount options (`size=64m`, `mode=1777`, `ro`, `noexec`, …).
//!
//! Targets must be absolute and cannot be `/`. Parsing is pure; [`MountRequest::ensure_bind_source`] touches the
//! host.

use std::fs;
use std::path::{Path, PathBuf};

/// Errors in mount specifications.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("invalid volume specification: '{spec}': {reason}")]
    Volume { spec: String, reason: String },
    #[error("invalid argument \"{spec}\" for \"--mount\" flag: {reason}")]
    Mount { spec: String, reason: String },
    #[error("invalid argument \"{spec}\" for \"--tmpfs\" flag: {reason}")]
    Tmpfs { spec: String, reason: String },
    #[error("invalid mount config for type \"bind\": bind source path does not exist: {0} (create it first, or use -v, which creates it)")]
    BindSourceMissing(PathBuf),
    #[error("cannot create bind source {path}: {message}")]
    BindSourceCreate { path: PathBuf, message: String },
}

pub type Result<T> = std::result::Result<T, Error>;

/// One mount a container asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountRequest {
    /// A named (`Some`) or anonymous (`None`) volume.
    Volume { name: Option<String>, target: String, read_only: bool, no_copy: bool },
    /// A host path. `create_source`: `-v` creates a missing source, `--mount` refuses it.
    Bind {
        source: PathBuf,
        target: String,
        read_only: bool,
        create_source: bool,
        /// `rprivate` unless given.
        propagation: Option<String>,
        /// `z` or `Z` (SELinux relabelling; accepted and ignored on hosts without SELinux).
        selinux: Option<String>,
    },
    /// A tmpfs; `options` are the remaining mount options (`noexec`, `nosuid`, …).
    Tmpfs { target: String, size: Option<u64>, mode: Option<u32>, read_only: bool, options: Vec<String> },
}

impl MountRequest {
    pub fn target(&self) -> &str {
        match self {
            MountRequest::Volume { target, .. }
            | MountRequest::Bind { target, .. }
            | MountRequest::Tmpfs { target, .. } => target,
        }
    }

    pub fn read_only(&self) -> bool {
        match self {
            MountRequest::Volume { read_only, .. }
            | MountRequest::Bind { read_only, .. }
            | MountRequest::Tmpfs { read_only, .. } => *read_only,
        }
    }

    /// For a bind mount: creates a missing source directory (`-v`) or reports it (`--mount`). Others: no-op.
    pub fn ensure_bind_source(&self) -> Result<()> {
        let MountRequest::Bind { source, create_source, .. } = self else { return Ok(()) };
        if fs::symlink_metadata(source).is_ok() {
            return Ok(());
        }
        if !create_source {
            return Err(Error::BindSourceMissing(source.clone()));
        }
        fs::create_dir_all(source).map_err(|e| Error::BindSourceCreate { path: source.clone(), message: e.to_string() })
    }
}

const PROPAGATIONS: [&str; 6] = ["private", "rprivate", "shared", "rshared", "slave", "rslave"];

fn check_target(target: &str) -> std::result::Result<(), String> {
    if !target.starts_with('/') {
        return Err(format!("invalid mount path: '{target}' mount path must be absolute"));
    }
    if Path::new(target).components().count() == 1 {
        return Err("invalid specification: destination can't be '/'".to_owned());
    }
    Ok(())
}

/// Parses one `-v`/`--volume` value.
pub fn parse_volume_flag(spec: &str) -> Result<MountRequest> {
    let bad = |reason: String| Error::Volume { spec: spec.to_owned(), reason };
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, target, mode) = match parts.as_slice() {
        [t] => (None, *t, None),
        [s, t] => (Some(*s), *t, None),
        [s, t, m] => (Some(*s), *t, Some(*m)),
        _ => return Err(bad("too many colons: use [SOURCE:]TARGET[:OPTIONS]".into())),
    };
    if target.is_empty() {
        return Err(bad("no target given: use [SOURCE:]TARGET[:OPTIONS]".into()));
    }
    check_target(target).map_err(bad)?;
    let (mut read_only, mut no_copy, mut propagation, mut selinux) = (None, false, None, None);
    for opt in mode.unwrap_or("").split(',').filter(|o| !o.is_empty()) {
        match opt {
            "ro" | "rw" if read_only.is_none() => read_only = Some(opt == "ro"),
            "z" | "Z" if selinux.is_none() => selinux = Some(opt.to_owned()),
            "nocopy" if !no_copy => no_copy = true,
            p if PROPAGATIONS.contains(&p) && propagation.is_none() => propagation = Some(p.to_owned()),
            _ => {
                return Err(bad(format!(
                    "invalid mode: {}: use ro or rw, z or Z, nocopy, and one propagation mode",
                    mode.unwrap_or("")
                )))
            }
        }
    }
    let read_only = read_only.unwrap_or(false);
    match source {
        None => Ok(MountRequest::Volume { name: None, target: target.to_owned(), read_only, no_copy }),
        Some("") => Err(bad("no source given before ':'".into())),
        Some(s) if s.starts_with('/') => {
            if no_copy {
                return Err(bad("invalid mode: nocopy applies to volumes, not to host paths".into()));
            }
            Ok(MountRequest::Bind {
                source: PathBuf::from(s),
                target: target.to_owned(),
                read_only,
                create_source: true,
                propagation,
                selinux,
            })
        }
        Some(name) => {
            if !super::valid_name(name) {
                return Err(bad(super::Error::InvalidName(name.to_owned()).to_string()));
            }
            if propagation.is_some() {
                return Err(bad("invalid mode: propagation applies to host paths, not to volumes".into()));
            }
            Ok(MountRequest::Volume { name: Some(name.to_owned()), target: target.to_owned(), read_only, no_copy })
        }
    }
}

/// Splits a `--mount` value on commas, honouring double quotes (docker reads it as one CSV record).
fn csv_fields(s: &str) -> Option<Vec<String>> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(String::new()),
            c => fields.last_mut()?.push(c),
        }
    }
    (!quoted).then_some(fields)
}

fn parse_bool(v: Option<&str>) -> Option<bool> {
    match v {
        None | Some("1" | "true" | "True" | "TRUE") => Some(true),
        Some("0" | "false" | "False" | "FALSE") => Some(false),
        _ => None,
    }
}

/// Parses one `--mount` value.
pub fn parse_mount_flag(spec: &str) -> Result<MountRequest> {
    let bad = |reason: String| Error::Mount { spec: spec.to_owned(), reason };
    let fields = csv_fields(spec).ok_or_else(|| bad("unclosed double quote".into()))?;
    let mut kind = "volume".to_owned();
    let (mut source, mut target) = (None::<String>, None::<String>);
    let (mut read_only, mut no_copy) = (false, false);
    let (mut propagation, mut size, mut mode) = (None, None, None);
    let mut volume_opts = false;
    let mut bind_opts = false;
    let mut tmpfs_opts = false;
    for field in fields.iter().filter(|f| !f.is_empty()) {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.trim())),
            None => (field.trim().to_ascii_lowercase(), None),
        };
        let need = |v: Option<&str>| {
            v.map(str::to_owned).ok_or_else(|| bad(format!("invalid field '{field}' must be a key=value pair")))
        };
        match key.as_str() {
            "type" => kind = need(value)?,
            "source" | "src" => source = Some(need(value)?),
            "target" | "destination" | "dst" => target = Some(need(value)?),
            "readonly" | "ro" => {
                read_only =
                    parse_bool(value).ok_or_else(|| bad(format!("invalid value for {key}: {}", value.unwrap_or(""))))?
            }
            "volume-nocopy" => {
                no_copy = parse_bool(value)
                    .ok_or_else(|| bad(format!("invalid value for {key}: {}", value.unwrap_or(""))))?;
                volume_opts = true;
            }
            "volume-driver" => {
                if need(value)? != "local" {
                    return Err(bad("only the local volume driver exists".into()));
                }
                volume_opts = true;
            }
            "volume-label" | "volume-opt" => {
                need(value)?;
                volume_opts = true;
            }
            "bind-propagation" => {
                let p = need(value)?;
                if !PROPAGATIONS.contains(&p.as_str()) {
                    return Err(bad(format!("invalid propagation mode: {p}: use one of {}", PROPAGATIONS.join(", "))));
                }
                propagation = Some(p);
                bind_opts = true;
            }
            "tmpfs-size" => {
                let v = need(value)?;
                size = Some(
                    parse_size(&v)
                        .ok_or_else(|| bad(format!("invalid tmpfs-size `{v}`: use bytes or a size like 64m")))?,
                );
                tmpfs_opts = true;
            }
            "tmpfs-mode" => {
                let v = need(value)?;
                mode = Some(
                    u32::from_str_radix(&v, 8)
                        .map_err(|_| bad(format!("invalid tmpfs-mode `{v}`: use octal such as 1777")))?,
                );
                tmpfs_opts = true;
            }
            "consistency" => {
                need(value)?;
            }
            _ => return Err(bad(format!("unexpected key '{key}' in '{field}'"))),
        }
    }
    let target = target.ok_or_else(|| bad("target is required".into()))?;
    check_target(&target).map_err(bad)?;
    let wrong =
        |what: &str| bad(format!("invalid mount config for type \"{kind}\": field {what} must not be specified"));
    match kind.as_str() {
        "bind" => {
            if volume_opts {
                return Err(wrong("VolumeOptions"));
            }
            if tmpfs_opts {
                return Err(wrong("TmpfsOptions"));
            }
            let source = source
                .filter(|s| !s.is_empty())
                .ok_or_else(|| bad("invalid mount config for type \"bind\": field Source must not be empty".into()))?;
            if !source.starts_with('/') {
                return Err(bad(format!("invalid mount config for type \"bind\": invalid mount path: '{source}' mount path must be absolute")));
            }
            Ok(MountRequest::Bind {
                source: source.into(),
                target,
                read_only,
                create_source: false,
                propagation,
                selinux: None,
            })
        }
        "volume" => {
            if bind_opts {
                return Err(wrong("BindOptions"));
            }
            if tmpfs_opts {
                return Err(wrong("TmpfsOptions"));
            }
            let name = source.filter(|s| !s.is_empty());
            if let Some(n) = &name {
                if !super::valid_name(n) {
                    return Err(bad(super::Error::InvalidName(n.clone()).to_string()));
                }
            }
            Ok(MountRequest::Volume { name, target, read_only, no_copy })
        }
        "tmpfs" => {
            if source.is_some_and(|s| !s.is_empty()) {
                return Err(bad("invalid mount config for type \"tmpfs\": field Source must not be specified".into()));
            }
            if bind_opts {
                return Err(wrong("BindOptions"));
            }
            if volume_opts {
                return Err(wrong("VolumeOptions"));
            }
            Ok(MountRequest::Tmpfs { target, size, mode, read_only, options: Vec::new() })
        }
        other => Err(bad(format!("invalid mount type \"{other}\": use bind, volume or tmpfs"))),
    }
}

const TMPFS_FLAGS: [&str; 12] =
    ["rw", "ro", "exec", "noexec", "suid", "nosuid", "dev", "nodev", "atime", "noatime", "relatime", "strictatime"];

/// Parses one `--tmpfs` value.
pub fn parse_tmpfs_flag(spec: &str) -> Result<MountRequest> {
    let bad = |reason: String| Error::Tmpfs { spec: spec.to_owned(), reason };
    let (target, opts) = spec.split_once(':').unwrap_or((spec, ""));
    check_target(target).map_err(bad)?;
    let (mut size, mut mode, mut read_only, mut options) = (None, None, false, Vec::new());
    for opt in opts.split(',').filter(|o| !o.is_empty()) {
        match opt.split_once('=') {
            Some(("size", v)) => {
                size = Some(
                    parse_size(v).ok_or_else(|| bad(format!("invalid size `{v}`: use bytes or a size like 64m")))?,
                )
            }
            Some(("mode", v)) => {
                mode = Some(
                    u32::from_str_radix(v, 8)
                        .map_err(|_| bad(format!("invalid mode `{v}`: use octal such as 1777")))?,
                )
            }
            None if TMPFS_FLAGS.contains(&opt) => {
                if opt == "ro" || opt == "rw" {
                    read_only = opt == "ro";
                } else {
                    options.push(opt.to_owned());
                }
            }
            _ => return Err(bad(format!("unknown option `{opt}`: use size=, mode= or {}", TMPFS_FLAGS.join(", ")))),
        }
    }
    Ok(MountRequest::Tmpfs { target: target.to_owned(), size, mode, read_only, options })
}

/// docker's RAMInBytes: a number with an optional `b`, `k`, `m`, `g`, `t` suffix (binary units, `kb`/`kib`
/// accepted).
pub fn parse_size(s: &str) -> Option<u64> {
    let lower = s.trim().to_ascii_lowercase();
    let digits_end = lower.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(lower.len());
    let (num, unit) = lower.split_at(digits_end);
    let n: f64 = num.parse().ok()?;
    let mult: u64 = match unit.trim_end_matches("ib").trim_end_matches('b') {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => return None,
    };
    (n >= 0.0).then_some((n * mult as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vol(name: Option<&str>, target: &str, read_only: bool, no_copy: bool) -> MountRequest {
        MountRequest::Volume { name: name.map(str::to_owned), target: target.to_owned(), read_only, no_copy }
    }

    fn bind(source: &str, target: &str, read_only: bool, create_source: bool) -> MountRequest {
        MountRequest::Bind {
            source: source.into(),
            target: target.to_owned(),
            read_only,
            create_source,
            propagation: None,
            selinux: None,
        }
    }

    #[test]
    fn volume_flags_parse_like_docker() {
        let table: Vec<(&str, MountRequest)> = vec![
            ("/data", vol(None, "/data", false, false)),
            ("cache:/var/cache", vol(Some("cache"), "/var/cache", false, false)),
            ("cache:/var/cache:ro", vol(Some("cache"), "/var/cache", true, false)),
            ("cache:/var/cache:rw,nocopy", vol(Some("cache"), "/var/cache", false, true)),
            ("/srv/app:/app", bind("/srv/app", "/app", false, true)),
            ("/srv/app:/app:ro", bind("/srv/app", "/app", true, true)),
            (
                "/srv/app:/app:ro,Z,rslave",
                MountRequest::Bind {
                    source: "/srv/app".into(),
                    target: "/app".into(),
                    read_only: true,
                    create_source: true,
                    propagation: Some("rslave".into()),
                    selinux: Some("Z".into()),
                },
            ),
        ];
        for (spec, expected) in table {
            assert_eq!(parse_volume_flag(spec), Ok(expected), "{spec}");
        }
    }

    #[test]
    fn bad_volume_flags_say_why() {
        for (spec, message) in [
            ("data", "invalid volume specification: 'data': invalid mount path: 'data' mount path must be absolute"),
            ("./data:/data", "includes invalid characters for a local volume name"),
            ("./data:/data", "If you intended to pass a host directory, use absolute path"),
            ("/a:/", "destination can't be '/'"),
            ("/a:rel", "invalid mount path: 'rel' mount path must be absolute"),
            ("/a:/b:ro,rw", "invalid mode: ro,rw"),
            ("/a:/b:fast", "invalid mode: fast"),
            ("/a:/b:nocopy", "nocopy applies to volumes"),
            ("vol:/b:rshared", "propagation applies to host paths"),
            ("a:b:c:d", "too many colons"),
            (":/b", "no source given"),
        ] {
            match parse_volume_flag(spec) {
                Err(e) => assert!(e.to_string().contains(message), "{spec}: {e}"),
                Ok(m) => panic!("{spec} parsed: {m:?}"),
            }
        }
    }

    #[test]
    fn mount_flags_parse_like_docker() {
        let table: Vec<(&str, MountRequest)> = vec![
            ("type=bind,source=/srv,target=/app", bind("/srv", "/app", false, false)),
            ("type=bind,src=/srv,dst=/app,readonly", bind("/srv", "/app", true, false)),
            ("type=bind,src=/srv,destination=/app,ro=false", bind("/srv", "/app", false, false)),
            ("target=/data", vol(None, "/data", false, false)),
            ("type=volume,source=db,target=/var/lib/db,volume-nocopy", vol(Some("db"), "/var/lib/db", false, true)),
            ("\"type=volume\",\"source=db\",target=/x,readonly=1", vol(Some("db"), "/x", true, false)),
            (
                "type=tmpfs,target=/run,tmpfs-size=64m,tmpfs-mode=1770",
                MountRequest::Tmpfs {
                    target: "/run".into(),
                    size: Some(64 << 20),
                    mode: Some(0o1770),
                    read_only: false,
                    options: vec![],
                },
            ),
        ];
        for (spec, expected) in table {
            assert_eq!(parse_mount_flag(spec), Ok(expected), "{spec}");
        }
    }

    #[test]
    fn bad_mount_flags_say_why() {
        for (spec, message) in [
            ("type=bind,source=/srv", "target is required"),
            ("type=bind,target=/app", "field Source must not be empty"),
            ("type=bind,source=rel,target=/app", "'rel' mount path must be absolute"),
            ("type=bind,source=/srv,target=/app,volume-nocopy", "field VolumeOptions must not be specified"),
            ("type=volume,target=/app,bind-propagation=rshared", "field BindOptions must not be specified"),
            ("type=tmpfs,source=/x,target=/app", "field Source must not be specified"),
            ("type=tmpfs,target=/app,tmpfs-size=lots", "invalid tmpfs-size `lots`"),
            ("type=nfs,target=/app", "invalid mount type \"nfs\""),
            ("type=bind,source=/a,target=/b,colour=red", "unexpected key 'colour' in 'colour=red'"),
            ("type,target=/b", "invalid field 'type' must be a key=value pair"),
            ("type=volume,source=./v,target=/b", "includes invalid characters"),
            ("type=volume,target=/b,readonly=maybe", "invalid value for readonly: maybe"),
            ("type=\"bind,target=/b", "unclosed double quote"),
        ] {
            match parse_mount_flag(spec) {
                Err(e) => {
                    let s = e.to_string();
                    assert!(s.starts_with(&format!("invalid argument \"{spec}\" for \"--mount\" flag: ")), "{s}");
                    assert!(s.contains(message), "{spec}: {s}");
                }
                Ok(m) => panic!("{spec} parsed: {m:?}"),
            }
        }
    }

    #[test]
    fn tmpfs_flags_parse_and_fail_like_docker() {
        assert_eq!(
            parse_tmpfs_flag("/run:rw,noexec,nosuid,size=65536k,mode=1777"),
            Ok(MountRequest::Tmpfs {
                target: "/run".into(),
                size: Some(64 << 20),
                mode: Some(0o1777),
                read_only: false,
                options: vec!["noexec".into(), "nosuid".into()],
            })
        );
        assert_eq!(
            parse_tmpfs_flag("/tmp"),
            Ok(MountRequest::Tmpfs {
                target: "/tmp".into(),
                size: None,
                mode: None,
                read_only: false,
                options: vec![]
            })
        );
        for (spec, message) in [
            ("tmp", "mount path must be absolute"),
            ("/", "destination can't be '/'"),
            ("/t:size=big", "invalid size `big`"),
            ("/t:mode=999", "invalid mode `999`"),
            ("/t:exotic", "unknown option `exotic`"),
        ] {
            match parse_tmpfs_flag(spec) {
                Err(e) => assert!(e.to_string().contains(message), "{spec}: {e}"),
                Ok(m) => panic!("{spec} parsed: {m:?}"),
            }
        }
    }

    #[test]
    fn bind_sources_are_created_by_v_and_required_by_mount() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let missing = tmp.path().join("made/by/v");
        let spec = format!("{}:/data", missing.display());
        parse_volume_flag(&spec)?.ensure_bind_source()?;
        assert!(missing.is_dir(), "-v creates a missing host directory");
        let absent = tmp.path().join("absent");
        let m = parse_mount_flag(&format!("type=bind,source={},target=/data", absent.display()))?;
        let err = m.ensure_bind_source().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("bind source path does not exist"), "{err}");
        assert!(!absent.exists(), "--mount never creates it");
        Ok(())
    }

    #[test]
    fn sizes_use_binary_units() {
        assert_eq!(parse_size("1024"), Some(1024));
        assert_eq!(parse_size("64m"), Some(64 << 20));
        assert_eq!(parse_size("1.5g"), Some(3 << 29));
        assert_eq!(parse_size("2kb"), Some(2048));
        assert_eq!(parse_size("2KiB"), Some(2048));
        assert_eq!(parse_size("x"), None);
    }
}
