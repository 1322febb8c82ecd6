//! `RUN --mount=type=…,target=…` specifications, parsed with BuildKit's rules (`instructions/commands_runmount.go`).
//! Values are kept unexpanded: the executor expands `source`, `target`, `id` and `env` with the stage's
//! variables before use; `from` may not contain variables (BuildKit's rule: define an alias stage instead).
//! Whether a mount type is supported is the executor's decision (e.g. `cache` may be reported unsupported).

use std::fmt;

/// The kind of a `RUN --mount`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountType {
    Bind,
    Cache,
    Tmpfs,
    Secret,
    Ssh,
}

impl fmt::Display for MountType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MountType::Bind => "bind",
            MountType::Cache => "cache",
            MountType::Tmpfs => "tmpfs",
            MountType::Secret => "secret",
            MountType::Ssh => "ssh",
        })
    }
}

/// `sharing=` of a cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheSharing {
    Shared,
    Private,
    Locked,
}

/// One `--mount` of a `RUN`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub kind: MountType,
    /// A stage name or index, or an image, to mount from (bind and cache mounts).
    pub from: Option<String>,
    pub source: Option<String>,
    pub target: Option<String>,
    /// Explicit `ro`/`rw`, or the default: read-only except for cache and tmpfs mounts.
    pub read_only: bool,
    /// `id=` (cache id, secret id).
    pub id: Option<String>,
    pub sharing: Option<CacheSharing>,
    /// Secret / ssh mounts: fail when the secret is missing.
    pub required: bool,
    /// tmpfs `size=` in bytes.
    pub size: Option<u64>,
    /// File mode (octal in the Dockerfile) for secret, ssh and cache mounts.
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// Secret mounts: expose the secret as this environment variable.
    pub env: Option<String>,
}

const KEYS: &[&str] = &[
    "type",
    "from",
    "source",
    "target",
    "readonly",
    "id",
    "sharing",
    "required",
    "size",
    "mode",
    "uid",
    "gid",
    "src",
    "dst",
    "destination",
    "ro",
    "rw",
    "readwrite",
    "env",
];

impl Mount {
    /// Parses the value of one `--mount=` flag (comma-separated `key=value` fields, CSV quoting allowed).
    pub fn parse(spec: &str) -> Result<Mount, String> {
        let fields = csv_fields(spec).map_err(|e| format!("failed to parse csv mounts: {e}"))?;
        let mut m = Mount {
            kind: MountType::Bind,
            from: None,
            source: None,
            target: None,
            read_only: true,
            id: None,
            sharing: None,
            required: false,
            size: None,
            mode: None,
            uid: None,
            gid: None,
            env: None,
        };
        let mut ro_explicit = None;
        for field in fields {
            let (key, value) = match field.split_once('=') {
                Some((k, v)) => (k.to_lowercase(), Some(v.to_string())),
                None => (field.to_lowercase(), None),
            };
            let Some(value) = value else {
                match key.as_str() {
                    "readonly" | "ro" => ro_explicit = Some(true),
                    "readwrite" | "rw" => ro_explicit = Some(false),
                    "required" if matches!(m.kind, MountType::Secret | MountType::Ssh) => m.required = true,
                    "required" => return Err(format!("unexpected key '{key}' for mount type '{}'", m.kind)),
                    _ => return Err(format!("invalid field '{field}' must be a key=value pair")),
                }
                continue;
            };
            let parse_bool = |v: &str| parse_go_bool(v).ok_or_else(|| format!("invalid value for {key}: {v}"));
            match key.as_str() {
                "type" => {
                    m.kind = match value.to_lowercase().as_str() {
                        "bind" => MountType::Bind,
                        "cache" => MountType::Cache,
                        "tmpfs" => MountType::Tmpfs,
                        "secret" => MountType::Secret,
                        "ssh" => MountType::Ssh,
                        _ => {
                            return Err(format!(
                                "unsupported mount type {value:?} (use bind, cache, tmpfs, secret or ssh)"
                            ))
                        }
                    }
                }
                "from" => {
                    if value.find('$').is_some_and(|i| i != value.len() - 1) {
                        return Err("'from' doesn't support variable expansion, define alias stage instead".into());
                    }
                    m.from = Some(value);
                }
                "source" | "src" => m.source = Some(value),
                "target" | "dst" | "destination" => m.target = Some(value),
                "readonly" | "ro" => ro_explicit = Some(parse_bool(&value)?),
                "readwrite" | "rw" => ro_explicit = Some(!parse_bool(&value)?),
                "required" if matches!(m.kind, MountType::Secret | MountType::Ssh) => m.required = parse_bool(&value)?,
                "size" if m.kind == MountType::Tmpfs => {
                    m.size = Some(ram_in_bytes(&value).ok_or_else(|| format!("invalid value for {key}: {value}"))?)
                }
                "required" | "size" => return Err(format!("unexpected key '{key}' for mount type '{}'", m.kind)),
                "id" => m.id = Some(value),
                "sharing" => {
                    m.sharing = Some(match value.to_lowercase().as_str() {
                        "shared" => CacheSharing::Shared,
                        "private" => CacheSharing::Private,
                        "locked" => CacheSharing::Locked,
                        _ => {
                            return Err(format!("unsupported sharing value {value:?} (use shared, private or locked)"))
                        }
                    })
                }
                "mode" => {
                    m.mode =
                        Some(u32::from_str_radix(&value, 8).map_err(|_| format!("invalid value {value} for mode"))?)
                }
                "uid" => m.uid = Some(value.parse().map_err(|_| format!("invalid value {value} for uid"))?),
                "gid" => m.gid = Some(value.parse().map_err(|_| format!("invalid value {value} for gid"))?),
                "env" => m.env = Some(value),
                _ => {
                    let mut message = format!("unexpected key '{key}' in '{field}'");
                    message.push_str(&crate::build::error::did_you_mean(&crate::build::error::suggest(
                        &key,
                        KEYS.iter().copied(),
                        true,
                    )));
                    return Err(message);
                }
            }
        }
        if !matches!(m.kind, MountType::Secret | MountType::Ssh | MountType::Cache) {
            for (name, set) in [("mode", m.mode.is_some()), ("uid", m.uid.is_some()), ("gid", m.gid.is_some())] {
                if set {
                    return Err(format!("{name} not allowed for {:?} type mounts", m.kind.to_string()));
                }
            }
        }
        m.read_only = ro_explicit.unwrap_or(!matches!(m.kind, MountType::Cache | MountType::Tmpfs));
        if m.kind == MountType::Secret {
            if m.from.is_some() {
                return Err("secret mount should not have a from".into());
            }
            if m.sharing.is_some() {
                return Err("secret mount should not define sharing".into());
            }
            if m.source.is_none() && m.target.is_none() && m.id.is_none() {
                return Err("invalid secret mount. one of source, target required".into());
            }
            if m.source.is_some() && m.id.is_some() {
                return Err("both source and id can't be set".into());
            }
        }
        if m.sharing.is_some() && m.kind != MountType::Cache {
            return Err(format!("invalid cache sharing set for {} mount", m.kind));
        }
        Ok(m)
    }
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// docker's `units.RAMInBytes`: `64m`, `1.5g`, `512kb`, `100` (binary multiples).
fn ram_in_bytes(v: &str) -> Option<u64> {
    let v = v.trim();
    let split = v.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(v.len());
    let (number, unit) = v.split_at(split);
    let number: f64 = number.parse().ok()?;
    let unit = unit.trim().to_lowercase();
    let unit = unit.strip_suffix("ib").or_else(|| unit.strip_suffix('b')).unwrap_or(&unit);
    let shift = match unit {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        "p" => 50,
        _ => return None,
    };
    let bytes = number * (1u64 << shift) as f64;
    (bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

/// Splits one CSV record (`a,"b,c",d`); quotes may wrap a field and `""` inside quotes is a quote.
fn csv_fields(spec: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = spec.chars().peekable();
    let mut at_field_start = true;
    while let Some(c) = chars.next() {
        match c {
            '"' if at_field_start => {
                loop {
                    match chars.next() {
                        None => return Err("extraneous or missing \" in quoted-field".into()),
                        Some('"') if chars.peek() == Some(&'"') => {
                            chars.next();
                            field.push('"');
                        }
                        Some('"') => break,
                        Some(c) => field.push(c),
                    }
                }
                if chars.peek().is_some_and(|c| *c != ',') {
                    return Err("extraneous or missing \" in quoted-field".into());
                }
                at_field_start = false;
            }
            ',' => {
                fields.push(std::mem::take(&mut field));
                at_field_start = true;
            }
            c => {
                field.push(c);
                at_field_start = false;
            }
        }
    }
    fields.push(field);
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_mount_defaults_to_read_write() {
        let m = Mount::parse("type=cache,target=/root/.cache,id=pip,sharing=locked,mode=0755").unwrap();
        assert_eq!(m.kind, MountType::Cache);
        assert_eq!(m.target.as_deref(), Some("/root/.cache"));
        assert!(!m.read_only);
        assert_eq!(m.sharing, Some(CacheSharing::Locked));
        assert_eq!(m.mode, Some(0o755));
    }

    #[test]
    fn bind_mount_from_stage_is_read_only_unless_rw() {
        let m = Mount::parse("from=builder,source=/out,target=/in").unwrap();
        assert_eq!((m.kind, m.from.as_deref(), m.read_only), (MountType::Bind, Some("builder"), true));
        assert!(!Mount::parse("type=bind,target=/x,rw").unwrap().read_only);
        assert!(!Mount::parse("type=bind,target=/x,readonly=false").unwrap().read_only);
    }

    #[test]
    fn tmpfs_size_and_secret_rules() {
        assert_eq!(Mount::parse("type=tmpfs,target=/t,size=64m").unwrap().size, Some(64 << 20));
        assert!(Mount::parse("type=secret,id=tok,required").unwrap().required);
        assert_eq!(Mount::parse("type=secret").unwrap_err(), "invalid secret mount. one of source, target required");
        assert_eq!(Mount::parse("type=bind,size=1m").unwrap_err(), "unexpected key 'size' for mount type 'bind'");
        assert_eq!(Mount::parse("type=bind,uid=1").unwrap_err(), "uid not allowed for \"bind\" type mounts");
        assert_eq!(Mount::parse("type=bind,sharing=shared").unwrap_err(), "invalid cache sharing set for bind mount");
    }

    #[test]
    fn bad_fields_are_reported() {
        assert_eq!(
            Mount::parse("type=volume").unwrap_err(),
            "unsupported mount type \"volume\" (use bind, cache, tmpfs, secret or ssh)"
        );
        assert_eq!(
            Mount::parse("type=cache,taget=/x").unwrap_err(),
            "unexpected key 'taget' in 'taget=/x' (did you mean target?)"
        );
        assert_eq!(Mount::parse("foo").unwrap_err(), "invalid field 'foo' must be a key=value pair");
        assert_eq!(
            Mount::parse("from=$STAGE").unwrap_err(),
            "'from' doesn't support variable expansion, define alias stage instead"
        );
        assert_eq!(Mount::parse("type=cache,\"target=/a,b\"").unwrap().target.as_deref(), Some("/a,b"));
    }
}
