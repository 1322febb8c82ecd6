//! `save_cache` / `restore_cache` against a local cache store: `<data-dir>/caches/<hex of the key>/`, holding one
//! tar per saved path (as `engine cp` writes them) and a `paths.json` naming where each goes back. Keys are
//! immutable (saving an existing key is skipped, as on CircleCI); a cache is written under a temporary name
//! and renamed into place, so a failed save leaves nothing half-written. Restoring tries each key in order:
//! an exact match, else the newest cache whose key starts with it. The file names are the keys' hex, which
//! keeps prefix order, so a prefix lookup is a file-name prefix match.
//!
//! Key templates: `{{ checksum "FILE" }}` (base64 SHA-256 of FILE in the primary container, relative to the
//! working directory), `{{ .Branch }}`, `{{ .Revision }}`, `{{ .BuildNum }}`, `{{ .Environment.NAME }}`,
//! `{{ epoch }}`, `{{ arch }}`.

use std::io::Read;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use engine::container::ContainerStore;
use sha2::{Digest, Sha256};

use super::error::ExecError;

/// The longest key the store takes: its hex must fit a file name (255 bytes).
pub const MAX_KEY_LEN: usize = 120;

/// What key templates can refer to.
pub struct KeyContext<'a> {
    pub store: &'a ContainerStore,
    pub container: &'a str,
    pub working_dir: &'a str,
    pub home: &'a str,
    pub branch: &'a str,
    pub revision: &'a str,
    pub build_num: u64,
    pub env: &'a [(String, String)],
}

fn bad_key(key: &str, hint: impl Into<String>) -> ExecError {
    ExecError::CacheKey { key: key.to_owned(), hint: hint.into() }
}

/// `template` with every `{{ … }}` replaced.
pub fn render_key(template: &str, ctx: &KeyContext) -> Result<String, ExecError> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            return Err(bad_key(template, "`{{` without its `}}`"));
        };
        let expr = after[..end].trim();
        out.push_str(&evaluate(template, expr, ctx)?);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn evaluate(template: &str, expr: &str, ctx: &KeyContext) -> Result<String, ExecError> {
    if let Some(arg) = expr.strip_prefix("checksum") {
        let file = arg.trim().trim_matches('"');
        if file.is_empty() {
            return Err(bad_key(template, "write {{ checksum \"FILE\" }}"));
        }
        return checksum(template, file, ctx);
    }
    if let Some(name) = expr.strip_prefix(".Environment.") {
        return Ok(ctx.env.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default());
    }
    Ok(match expr {
        ".Branch" => ctx.branch.to_owned(),
        ".Revision" => ctx.revision.to_owned(),
        ".BuildNum" => ctx.build_num.to_string(),
        "epoch" => {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs().to_string()
        }
        "arch" => format!("{}-{}", std::env::consts::OS, go_arch()),
        other => {
            return Err(bad_key(
                template,
                format!(
                    "unknown template `{other}` (use checksum \"FILE\", .Branch, .Revision, .BuildNum, .Environment.NAME, epoch or arch)"
                ),
            ))
        }
    })
}

/// The architecture as Go (and so CircleCI and OCI) names it.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn checksum(template: &str, file: &str, ctx: &KeyContext) -> Result<String, ExecError> {
    let path = super::job::expand_home(file, ctx.home, ctx.working_dir);
    let mut tar = Vec::new();
    engine::container::cp::archive(ctx.store, ctx.container, &path, &mut tar)
        .map_err(|e| bad_key(template, format!("cannot read {path} for its checksum: {e}")))?;
    let mut archive = tar::Archive::new(&tar[..]);
    let mut entries = archive.entries().map_err(|e| bad_key(template, format!("cannot read {path}: {e}")))?;
    let Some(Ok(mut entry)) = entries.next() else {
        return Err(bad_key(template, format!("cannot read {path}")));
    };
    if entry.header().entry_type().is_dir() {
        return Err(bad_key(template, format!("{path} is a directory: checksum takes a file")));
    }
    let mut bytes = Vec::new();
    entry.read_to_end(&mut bytes).map_err(|e| bad_key(template, format!("cannot read {path}: {e}")))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&bytes)))
}

/// The local cache store.
pub struct CacheStore {
    dir: PathBuf,
}

impl CacheStore {
    pub fn new(data_dir: &Path) -> CacheStore {
        CacheStore { dir: data_dir.join("caches") }
    }

    fn path_of(&self, key: &str) -> PathBuf {
        self.dir.join(hex::encode(key))
    }

    /// Saves `paths` of the container under `key`; returns false (nothing written) if the key exists.
    /// Paths that do not exist are left out and reported through `note`.
    pub fn save(
        &self,
        store: &ContainerStore,
        container: &str,
        key: &str,
        paths: &[String],
        note: &mut dyn FnMut(String),
    ) -> Result<bool, ExecError> {
        if key.len() > MAX_KEY_LEN {
            return Err(bad_key(key, format!("a key is at most {MAX_KEY_LEN} bytes here (its hex is a file name)")));
        }
        let target = self.path_of(key);
        if target.exists() {
            return Ok(false);
        }
        let io = |context: String| move |source| ExecError::Io { context, source };
        std::fs::create_dir_all(&self.dir).map_err(io(format!("cannot create {}", self.dir.display())))?;
        let staging = tempfile::Builder::new()
            .prefix(".saving-")
            .tempdir_in(&self.dir)
            .map_err(io(format!("cannot write in {}", self.dir.display())))?;
        let mut saved = Vec::new();
        for (n, path) in paths.iter().enumerate() {
            if engine::container::cp::stat(store, container, path)?.is_none() {
                note(format!("Warning: {path} does not exist, not saved\n"));
                continue;
            }
            let file = staging.path().join(format!("{n}.tar"));
            let out = std::fs::File::create(&file).map_err(io(format!("cannot write {}", file.display())))?;
            engine::container::cp::archive(store, container, path, std::io::BufWriter::new(out))?;
            let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
            note(format!("Saving {path} ({size} bytes)\n"));
            saved.push(serde_json::json!({ "path": path, "file": format!("{n}.tar") }));
        }
        let manifest = serde_json::json!({ "key": key, "paths": saved });
        let manifest_path = staging.path().join("paths.json");
        std::fs::write(&manifest_path, manifest.to_string())
            .map_err(io(format!("cannot write {}", manifest_path.display())))?;
        let staged = staging.keep();
        if let Err(e) = std::fs::rename(&staged, &target) {
            let _ = std::fs::remove_dir_all(&staged);
            // Another job saved the same key meanwhile: keys are immutable, theirs stands.
            if target.exists() {
                return Ok(false);
            }
            return Err(ExecError::Io { context: format!("cannot store cache {}", target.display()), source: e });
        }
        Ok(true)
    }

    /// The cache for `key`: an exact match, else the newest whose key starts with it.
    pub fn find(&self, key: &str) -> Option<(String, PathBuf)> {
        // An empty key (a template that rendered to nothing) would be a prefix of every key: it finds nothing.
        if key.is_empty() {
            return None;
        }
        let exact = self.path_of(key);
        if exact.join("paths.json").is_file() {
            return Some((key.to_owned(), exact));
        }
        let prefix = hex::encode(key);
        let mut best: Option<(std::time::SystemTime, String, PathBuf)> = None;
        for entry in std::fs::read_dir(&self.dir).ok()?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with(&prefix) || !entry.path().join("paths.json").is_file() {
                continue;
            }
            let Ok(found) = hex::decode(&name).map(|b| String::from_utf8_lossy(&b).into_owned()) else { continue };
            let modified = entry.metadata().and_then(|m| m.modified()).unwrap_or(std::time::UNIX_EPOCH);
            if best.as_ref().is_none_or(|(t, _, _)| modified > *t) {
                best = Some((modified, found, entry.path()));
            }
        }
        best.map(|(_, k, p)| (k, p))
    }

    /// Copies cache `dir` back into the container, each path where it was saved from.
    pub fn restore(
        &self,
        store: &ContainerStore,
        container: &str,
        dir: &Path,
        note: &mut dyn FnMut(String),
    ) -> Result<(), ExecError> {
        let io = |context: String| move |source| ExecError::Io { context, source };
        let manifest_path = dir.join("paths.json");
        let text =
            std::fs::read_to_string(&manifest_path).map_err(io(format!("cannot read {}", manifest_path.display())))?;
        let manifest: serde_json::Value = serde_json::from_str(&text).map_err(|e| ExecError::Io {
            context: format!("cache {} is corrupt", manifest_path.display()),
            source: std::io::Error::other(e),
        })?;
        for entry in manifest["paths"].as_array().into_iter().flatten() {
            let (Some(path), Some(file)) = (entry["path"].as_str(), entry["file"].as_str()) else { continue };
            let parent = match path.trim_end_matches('/').rsplit_once('/') {
                Some(("", _)) | None => "/".to_owned(),
                Some((p, _)) => p.to_owned(),
            };
            let mkdir = engine::container::exec::ExecOptions {
                cmd: vec!["mkdir".into(), "-p".into(), parent.clone()],
                ..Default::default()
            };
            engine::container::exec::exec_captured(store, container, &mkdir, std::time::Duration::from_secs(60), 4096)?;
            let tar_path = dir.join(file);
            let tar = std::fs::File::open(&tar_path).map_err(io(format!("cannot read {}", tar_path.display())))?;
            engine::container::cp::extract(store, container, &parent, std::io::BufReader::new(tar))?;
            note(format!("Restored {path}\n"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_templates_render_and_mistakes_are_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = engine::root::Root::open(dir.path()).expect("root");
        let store = ContainerStore::open(&root);
        let env = [("LANG_V".to_owned(), "1.2".to_owned())];
        let ctx = KeyContext {
            store: &store,
            container: "none",
            working_dir: "/root/project",
            home: "/root",
            branch: "main",
            revision: "abc",
            build_num: 7,
            env: &env,
        };
        let key =
            render_key("v1-{{ .Branch }}-{{.Revision}}-{{ .BuildNum }}-{{ .Environment.LANG_V }}-{{ arch }}", &ctx);
        assert_eq!(key.expect("renders"), format!("v1-main-abc-7-1.2-{}-{}", std::env::consts::OS, go_arch()));
        let e = render_key("v1-{{ .Brnch }}", &ctx).expect_err("unknown").to_string();
        assert!(e.contains("unknown template `.Brnch`"), "{e}");
        assert!(render_key("v1-{{ .Branch ", &ctx).is_err());
        assert!(render_key("{{ checksum \"\" }}", &ctx).is_err());
    }

    #[test]
    fn prefix_lookup_takes_the_newest_matching_key() {
        let dir = tempfile::tempdir().expect("temp dir");
        let cache = CacheStore::new(dir.path());
        for (key, age) in [("deps-main-old", 100), ("deps-main-new", 10), ("deps-other-x", 0)] {
            let d = cache.path_of(key);
            std::fs::create_dir_all(&d).expect("mkdir");
            std::fs::write(d.join("paths.json"), "{}").expect("write");
            let t = std::time::SystemTime::now() - std::time::Duration::from_secs(age);
            std::fs::File::open(&d).and_then(|f| f.set_modified(t)).expect("mtime");
        }
        assert_eq!(cache.find("deps-main-").map(|(k, _)| k), Some("deps-main-new".into()));
        assert_eq!(cache.find("deps-main-old").map(|(k, _)| k), Some("deps-main-old".into()));
        assert_eq!(cache.find("deps-x"), None);
    }
}
