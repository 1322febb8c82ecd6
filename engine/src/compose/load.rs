//! Loading a compose project: finding the files (`compose.yaml`, `docker-compose.yml`, their `.override`
//! siblings, or every `-f`), the project name (`-p` → `COMPOSE_PROJECT_NAME` → top-level `name:` → the project
//! directory's name), the environment (process environment over `.env` or `--env-file`), interpolation per file,
//! `include`, the Compose Specification's merge rules across files, `extends` (same file or another), profiles,
//! and finally the typed model.
//!
//! Every error names the file, line and column and the key path; several problems are reported together.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use super::interpolate::{interpolate_tree, Lookup};
use super::model::{normalize, project_from_tree, Diagnostic, Project};
use super::node::{self, Key, Node, Pos, Value};

/// File names searched for, in docker compose's order of preference.
pub const DEFAULT_FILES: &[&str] = &["compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml"];

/// What the command line says about the project.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `-f` files in order; empty means search the working directory and its parents.
    pub files: Vec<PathBuf>,
    /// `-p`.
    pub project_name: Option<String>,
    /// `--project-directory`; default: the directory of the first file.
    pub project_directory: Option<PathBuf>,
    /// `--env-file` (several allowed); default `.env` in the project directory when present.
    pub env_files: Vec<PathBuf>,
    /// `--profile`; `COMPOSE_PROFILES` adds to it.
    pub profiles: Vec<String>,
    /// The process environment (taken from `std::env` by [`LoadOptions::from_process`]).
    pub environment: BTreeMap<String, String>,
    /// Where to start looking for a compose file when `files` is empty.
    pub working_dir: PathBuf,
}

impl LoadOptions {
    /// Options with the process environment and current directory filled in.
    pub fn from_process() -> LoadOptions {
        LoadOptions {
            environment: std::env::vars().collect(),
            working_dir: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
            ..LoadOptions::default()
        }
    }
}

/// A located problem in a compose file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocatedDiagnostic {
    pub file: PathBuf,
    pub line: u64,
    pub column: u64,
    pub path: String,
    pub message: String,
}

impl fmt::Display for LocatedDiagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Why a project could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("no configuration file provided: not found (looked for {} in {} and its parents)", DEFAULT_FILES.join(", "), .0.display())]
    NotFound(PathBuf),
    #[error("cannot read {}: {source}", .path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<LocatedDiagnostic>),
    #[error("invalid project name {0:?}: it must contain only lowercase letters, digits, dashes and underscores, and start with a letter or digit")]
    ProjectName(String),
}

impl LoadError {
    fn one(file: &Path, pos: Pos, path: &str, message: impl Into<String>) -> LoadError {
        LoadError::Invalid(vec![LocatedDiagnostic {
            file: file.to_path_buf(),
            line: pos.line,
            column: pos.column,
            path: path.to_string(),
            message: message.into(),
        }])
    }
}

/// Files read so far, indexed by the `file` number stored in each node's position.
struct Files {
    paths: Vec<PathBuf>,
}

impl Files {
    fn locate(&self, d: Diagnostic) -> LocatedDiagnostic {
        let file = self.paths.get(d.pos.file as usize).cloned().unwrap_or_default();
        LocatedDiagnostic { file, line: d.pos.line, column: d.pos.column, path: d.path, message: d.message }
    }
}

/// Loads, merges and checks a project. Warnings (unset variables, unsupported keys) are in `Project::warnings`.
pub fn load(options: &LoadOptions) -> Result<Project, LoadError> {
    let files =
        if options.files.is_empty() { find_default_files(&options.working_dir)? } else { absolute_files(options) };
    let project_dir = match &options.project_directory {
        Some(dir) => absolute(&options.working_dir, dir),
        None => files[0].parent().map(Path::to_path_buf).unwrap_or_else(|| options.working_dir.clone()),
    };
    let env = environment(options, &project_dir)?;
    let mut read = Files { paths: Vec::new() };
    let mut unset = BTreeSet::new();
    let mut merged: Option<Node> = None;
    for file in &files {
        let mut tree = read_file(file, &mut read, &env, &mut unset)?;
        resolve_includes(&mut tree, file, &project_dir, &mut read, &env, &mut unset, 0)?;
        merged = Some(match merged {
            None => tree,
            Some(base) => merge(base, tree, ""),
        });
    }
    let mut tree = merged.unwrap_or_else(|| Node::new(Value::Map(Vec::new())));
    resolve_extends(&mut tree, &files[0], &mut read, &env, &mut unset)?;

    let name = project_name(options, &env, &tree, &project_dir)?;
    let profiles = active_profiles(options, &env);
    let disabled = apply_profiles(&mut tree, &profiles);

    match project_from_tree(&tree, &name, &project_dir, &env) {
        Ok(mut project) => {
            project.warnings.splice(
                0..0,
                unset.iter().map(|v| format!("the {v:?} variable is not set; defaulting to a blank string")),
            );
            project.disabled_services = disabled;
            project.resolved = Some(tree);
            Ok(project)
        }
        Err((diagnostics, _)) => Err(LoadError::Invalid(diagnostics.into_iter().map(|d| read.locate(d)).collect())),
    }
}

fn absolute(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        normalize(p)
    } else {
        normalize(&base.join(p))
    }
}

fn absolute_files(options: &LoadOptions) -> Vec<PathBuf> {
    options
        .files
        .iter()
        .map(|f| if f == Path::new("-") { f.clone() } else { absolute(&options.working_dir, f) })
        .collect()
}

/// The first default file found in `dir` or a parent, plus its `.override` sibling when present.
fn find_default_files(dir: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let mut current = Some(dir);
    while let Some(d) = current {
        for name in DEFAULT_FILES {
            let candidate = d.join(name);
            if candidate.is_file() {
                let mut files = vec![candidate.clone()];
                let stem = name.rsplit_once('.').map_or(*name, |(s, _)| s);
                for ext in ["yaml", "yml"] {
                    let over = d.join(format!("{stem}.override.{ext}"));
                    if over.is_file() {
                        files.push(over);
                        break;
                    }
                }
                return Ok(files);
            }
        }
        current = d.parent();
    }
    Err(LoadError::NotFound(dir.to_path_buf()))
}

/// The interpolation environment: `.env` (or `--env-file`s) under the process environment.
fn environment(options: &LoadOptions, project_dir: &Path) -> Result<BTreeMap<String, String>, LoadError> {
    let mut env = BTreeMap::new();
    let explicit = !options.env_files.is_empty();
    let files: Vec<PathBuf> = if explicit {
        options.env_files.iter().map(|f| absolute(&options.working_dir, f)).collect()
    } else {
        vec![project_dir.join(".env")]
    };
    let process: HashMap<String, String> = options.environment.clone().into_iter().collect();
    for file in files {
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => continue,
            Err(source) => return Err(LoadError::Read { path: file, source }),
        };
        let vars = super::env_file::parse(&text, &process).map_err(|e| {
            LoadError::Invalid(vec![LocatedDiagnostic {
                file: file.clone(),
                line: e.line as u64,
                column: 1,
                path: String::new(),
                message: e.message,
            }])
        })?;
        env.extend(vars);
    }
    env.extend(options.environment.clone());
    Ok(env)
}

fn read_file(
    file: &Path,
    read: &mut Files,
    env: &BTreeMap<String, String>,
    unset: &mut BTreeSet<String>,
) -> Result<Node, LoadError> {
    let text = if file == Path::new("-") {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .map_err(|source| LoadError::Read { path: file.to_path_buf(), source })?;
        s
    } else {
        std::fs::read_to_string(file).map_err(|source| LoadError::Read { path: file.to_path_buf(), source })?
    };
    let index = read.paths.len() as u32;
    read.paths.push(file.to_path_buf());
    let mut tree = node::parse(&text).map_err(|e| LoadError::one(file, e.pos, "", e.message))?;
    set_file(&mut tree, index);
    if tree.as_map().is_none() {
        return Err(LoadError::one(file, tree.pos, "", format!("top-level must be a mapping, found {}", tree.kind())));
    }
    // `x-` extension fields are only anchors' homes: drop them before interpolation looks at them.
    if let Some(map) = tree.as_map_mut() {
        map.retain(|(k, _)| !k.name.starts_with("x-"));
    }
    interpolate_tree(&mut tree, "", env as &dyn Lookup, unset)
        .map_err(|e| LoadError::one(file, e.node.pos, &e.path, e.error.to_string()))?;
    normalize_services(&mut tree);
    Ok(tree)
}

fn set_file(node: &mut Node, index: u32) {
    node.pos.file = index;
    match &mut node.value {
        Value::Seq(items) => items.iter_mut().for_each(|n| set_file(n, index)),
        Value::Map(entries) => {
            for (k, v) in entries.iter_mut() {
                k.pos.file = index;
                set_file(v, index);
            }
        }
        _ => {}
    }
}

/// `include:` — each entry is another compose file (relative to the including one) whose resources join the
/// project; a resource defined in both is an error, as the specification requires.
fn resolve_includes(
    tree: &mut Node,
    file: &Path,
    project_dir: &Path,
    read: &mut Files,
    env: &BTreeMap<String, String>,
    unset: &mut BTreeSet<String>,
    depth: usize,
) -> Result<(), LoadError> {
    let Some(include) = tree.remove("include") else { return Ok(()) };
    if depth > 10 {
        return Err(LoadError::one(file, include.pos, "include", "include nesting deeper than 10 levels (a cycle?)"));
    }
    let base = file.parent().unwrap_or(project_dir);
    let entries: Vec<Node> = match &include.value {
        Value::Seq(items) => items.clone(),
        _ => return Err(LoadError::one(file, include.pos, "include", "include must be a list")),
    };
    for (i, entry) in entries.iter().enumerate() {
        let path = format!("include[{i}]");
        let paths: Vec<String> = match &entry.value {
            Value::Str(s) => vec![s.clone()],
            Value::Map(_) => match entry.get("path") {
                Some(Node { value: Value::Str(s), .. }) => vec![s.clone()],
                Some(Node { value: Value::Seq(items), .. }) => items.iter().filter_map(Node::scalar_text).collect(),
                _ => return Err(LoadError::one(file, entry.pos, &path, "include entry needs a `path`")),
            },
            _ => return Err(LoadError::one(file, entry.pos, &path, "include entry must be a path or a mapping")),
        };
        let mut included: Option<Node> = None;
        for p in paths {
            let target = absolute(base, Path::new(&p));
            let mut sub = read_file(&target, read, env, unset)?;
            resolve_includes(&mut sub, &target, project_dir, read, env, unset, depth + 1)?;
            rebase_relative_paths(&mut sub, target.parent().unwrap_or(base), project_dir);
            included = Some(match included {
                None => sub,
                Some(b) => merge(b, sub, ""),
            });
        }
        let Some(included) = included else { continue };
        for section in ["services", "networks", "volumes"] {
            let Some(items) = included.get(section).and_then(Node::as_map) else { continue };
            if tree.get(section).is_none() {
                tree.insert(section, Node { pos: include.pos, value: Value::Map(Vec::new()) });
            }
            let Some(target) = tree.get_mut(section).and_then(Node::as_map_mut) else { continue };
            for (k, v) in items {
                if let Some((existing, _)) = target.iter().find(|(ek, _)| ek.name == k.name) {
                    let existing_pos = existing.pos;
                    return Err(LoadError::one(
                        read.paths.get(existing_pos.file as usize).map_or(file, |p| p.as_path()),
                        existing_pos,
                        &format!("{section}.{}", k.name),
                        format!(
                            "{} `{}` is also defined by the included {}",
                            section.trim_end_matches('s'),
                            k.name,
                            entry_label(entry)
                        ),
                    ));
                }
                target.push((k.clone(), v.clone()));
            }
        }
    }
    Ok(())
}

fn entry_label(entry: &Node) -> String {
    entry.scalar_text().or_else(|| entry.get("path").and_then(Node::scalar_text)).unwrap_or_else(|| "file".into())
}

/// Relative build contexts, bind sources and env files in an included (or extended) file are relative to that
/// file, not to the including project: make them relative to the project directory by making them absolute.
fn rebase_relative_paths(tree: &mut Node, from: &Path, project_dir: &Path) {
    if from == project_dir {
        return;
    }
    let Some(services) = tree.get_mut("services").and_then(Node::as_map_mut) else { return };
    for (_, service) in services.iter_mut() {
        rebase_service(service, from);
    }
}

fn rebase_service(service: &mut Node, from: &Path) {
    let fix = |s: &str| -> Option<String> {
        (s.starts_with("./") || s.starts_with("../") || s == ".")
            .then(|| normalize(&from.join(s)).display().to_string())
    };
    match service.get_mut("build") {
        Some(Node { value: Value::Str(s), .. }) => {
            if let Some(f) = fix(s).or_else(|| {
                (!s.starts_with('/') && !s.contains("://")).then(|| normalize(&from.join(&*s)).display().to_string())
            }) {
                *s = f;
            }
        }
        Some(build) => {
            if let Some(Node { value: Value::Str(s), .. }) = build.get_mut("context") {
                if !s.starts_with('/') && !s.contains("://") {
                    *s = normalize(&from.join(&*s)).display().to_string();
                }
            }
        }
        None => {}
    }
    if let Some(volumes) = service.get_mut("volumes").and_then(|v| match &mut v.value {
        Value::Seq(items) => Some(items),
        _ => None,
    }) {
        for v in volumes.iter_mut() {
            match &mut v.value {
                Value::Str(s) => {
                    if let Some((src, rest)) = s.split_once(':') {
                        if let Some(f) = fix(src) {
                            *s = format!("{f}:{rest}");
                        }
                    }
                }
                Value::Map(_) => {
                    if let Some(Node { value: Value::Str(src), .. }) = v.get_mut("source") {
                        if let Some(f) = fix(src) {
                            *src = f;
                        }
                    }
                }
                _ => {}
            }
        }
    }
    match service.get_mut("env_file") {
        Some(Node { value: Value::Str(s), .. }) if !s.starts_with('/') => {
            *s = normalize(&from.join(&*s)).display().to_string();
        }
        Some(Node { value: Value::Seq(items), .. }) => {
            for item in items.iter_mut() {
                let target = match &mut item.value {
                    Value::Str(s) => Some(s),
                    Value::Map(_) => match item.get_mut("path") {
                        Some(Node { value: Value::Str(s), .. }) => Some(s),
                        _ => None,
                    },
                    _ => None,
                };
                if let Some(s) = target {
                    if !s.starts_with('/') {
                        *s = normalize(&from.join(&*s)).display().to_string();
                    }
                }
            }
        }
        _ => {}
    }
}

/// List forms that merge as mappings are turned into mappings first, so two files can be merged key by key.
fn normalize_services(tree: &mut Node) {
    let Some(services) = tree.get_mut("services").and_then(Node::as_map_mut) else { return };
    for (_, service) in services.iter_mut() {
        normalize_service(service);
    }
}

fn normalize_service(service: &mut Node) {
    for key in ["environment", "labels", "annotations", "sysctls"] {
        if let Some(node) = service.get_mut(key) {
            list_to_map(node, '=', false);
        }
    }
    if let Some(node) = service.get_mut("build").and_then(|b| b.get_mut("args")) {
        list_to_map(node, '=', false);
    }
    if let Some(node) = service.get_mut("depends_on") {
        if let Value::Seq(items) = &node.value {
            let entries = items
                .iter()
                .filter_map(|i| {
                    let name = i.scalar_text()?;
                    let cond = Node { pos: i.pos, value: Value::Str("service_started".into()) };
                    let body = Node {
                        pos: i.pos,
                        value: Value::Map(vec![(Key { pos: i.pos, name: "condition".into() }, cond)]),
                    };
                    Some((Key { pos: i.pos, name }, body))
                })
                .collect();
            node.value = Value::Map(entries);
        }
    }
    if let Some(node) = service.get_mut("networks") {
        if let Value::Seq(items) = &node.value {
            let entries = items
                .iter()
                .filter_map(|i| {
                    Some((Key { pos: i.pos, name: i.scalar_text()? }, Node { pos: i.pos, value: Value::Null }))
                })
                .collect();
            node.value = Value::Map(entries);
        }
    }
}

fn list_to_map(node: &mut Node, sep: char, _keep_null: bool) {
    let Value::Seq(items) = &node.value else { return };
    let mut entries: Vec<(Key, Node)> = Vec::new();
    for item in items {
        let Some(text) = item.scalar_text() else { return };
        let (k, v) = match text.split_once(sep) {
            Some((k, v)) => (k.to_string(), Node { pos: item.pos, value: Value::Str(v.to_string()) }),
            None => (text, Node { pos: item.pos, value: Value::Null }),
        };
        if let Some(slot) = entries.iter_mut().find(|(ek, _)| ek.name == k) {
            slot.1 = v;
        } else {
            entries.push((Key { pos: item.pos, name: k }, v));
        }
    }
    node.value = Value::Map(entries);
}

/// The Compose Specification's merge: mappings merge key by key, `command`/`entrypoint`/`healthcheck.test`
/// are replaced, `ports` and `volumes` merge by their unique key (volumes by target), other sequences append
/// (without duplicates), scalars are replaced.
pub fn merge(base: Node, over: Node, path: &str) -> Node {
    let replace = matches!(path.rsplit('.').next().unwrap_or_default(), "command" | "entrypoint" | "test")
        && path.starts_with("services.");
    match (base.value, over.value) {
        (Value::Map(mut base_entries), Value::Map(over_entries)) if !replace => {
            for (k, v) in over_entries {
                let child = if path.is_empty() { k.name.clone() } else { format!("{path}.{}", k.name) };
                if let Some(slot) = base_entries.iter_mut().find(|(bk, _)| bk.name == k.name) {
                    let old = std::mem::replace(&mut slot.1, Node::new(Value::Null));
                    slot.1 = merge(old, v, &child);
                } else {
                    base_entries.push((k, v));
                }
            }
            Node { pos: base.pos, value: Value::Map(base_entries) }
        }
        (Value::Seq(mut base_items), Value::Seq(over_items)) if !replace => {
            let field = path.rsplit('.').next().unwrap_or_default();
            let in_service = path.matches('.').count() == 2 && path.starts_with("services.");
            for item in over_items {
                let key = if in_service { unique_key(field, &item) } else { None };
                let existing = match &key {
                    Some(key) => base_items.iter().position(|b| unique_key(field, b).as_ref() == Some(key)),
                    None => base_items.iter().position(|b| b.to_json() == item.to_json()),
                };
                match existing {
                    Some(i) => base_items[i] = item,
                    None => base_items.push(item),
                }
            }
            Node { pos: base.pos, value: Value::Seq(base_items) }
        }
        (_, value) => Node { pos: over.pos, value },
    }
}

/// The identity of a `volumes` entry (its target) for merging; other sequences merge by equality.
fn unique_key(field: &str, item: &Node) -> Option<String> {
    match field {
        "volumes" => match &item.value {
            Value::Str(s) => {
                let parts: Vec<&str> = s.split(':').collect();
                Some(if parts.len() >= 2 { parts[1].to_string() } else { parts[0].to_string() })
            }
            Value::Map(_) => item.get("target").and_then(Node::scalar_text),
            _ => None,
        },
        _ => None,
    }
}

/// `extends: {service: NAME, file: PATH}` (or `extends: NAME`): the service starts from NAME's configuration —
/// itself possibly extending another — and its own keys merge on top. Cycles are an error.
fn resolve_extends(
    tree: &mut Node,
    first_file: &Path,
    read: &mut Files,
    env: &BTreeMap<String, String>,
    unset: &mut BTreeSet<String>,
) -> Result<(), LoadError> {
    let names: Vec<String> = tree
        .get("services")
        .and_then(Node::as_map)
        .map(|m| m.iter().map(|(k, _)| k.name.clone()).collect())
        .unwrap_or_default();
    for name in names {
        let mut chain = Vec::new();
        let resolved = extended_service(tree, &name, None, first_file, read, env, unset, &mut chain)?;
        if let Some(slot) = tree.get_mut("services").and_then(|s| s.get_mut(&name)) {
            *slot = resolved;
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn extended_service(
    tree: &Node,
    name: &str,
    file: Option<&Path>,
    first_file: &Path,
    read: &mut Files,
    env: &BTreeMap<String, String>,
    unset: &mut BTreeSet<String>,
    chain: &mut Vec<String>,
) -> Result<Node, LoadError> {
    let label = match file {
        Some(f) => format!("{}:{name}", f.display()),
        None => name.to_string(),
    };
    let here = file.unwrap_or(first_file);
    if chain.contains(&label) {
        chain.push(label);
        return Err(LoadError::one(
            here,
            Pos::default(),
            &format!("services.{name}.extends"),
            format!("circular extends: {}", chain.join(" -> ")),
        ));
    }
    chain.push(label);
    let Some(mut service) = tree.get("services").and_then(|s| s.get(name)).cloned() else {
        return Err(LoadError::one(
            here,
            Pos::default(),
            "services",
            format!("cannot extend service `{name}`: no such service"),
        ));
    };
    let Some(ext) = service.remove("extends") else { return Ok(service) };
    let path = format!("services.{name}.extends");
    let (base_name, base_file) = match &ext.value {
        Value::Str(s) => (s.clone(), None),
        Value::Map(_) => match ext.get("service").and_then(Node::scalar_text) {
            Some(s) => (s, ext.get("file").and_then(Node::scalar_text)),
            None => return Err(LoadError::one(here, ext.pos, &path, "extends needs a `service`")),
        },
        _ => return Err(LoadError::one(here, ext.pos, &path, "extends must be a service name or a mapping")),
    };
    let base = match base_file {
        None => {
            if tree.get("services").and_then(|s| s.get(&base_name)).is_none() {
                return Err(LoadError::one(
                    here,
                    ext.pos,
                    &path,
                    format!("cannot extend service `{base_name}`: no such service"),
                ));
            }
            extended_service(tree, &base_name, file, first_file, read, env, unset, chain)?
        }
        Some(f) => {
            let target = absolute(here.parent().unwrap_or(Path::new(".")), Path::new(&f));
            let mut other = read_file(&target, read, env, unset)?;
            rebase_relative_paths(
                &mut other,
                target.parent().unwrap_or(Path::new(".")),
                here.parent().unwrap_or(Path::new(".")),
            );
            if other.get("services").and_then(|s| s.get(&base_name)).is_none() {
                return Err(LoadError::one(
                    here,
                    ext.pos,
                    &path,
                    format!("cannot extend service `{base_name}`: not found in {}", target.display()),
                ));
            }
            extended_service(&other, &base_name, Some(&target), first_file, read, env, unset, chain)?
        }
    };
    // `depends_on` and `volumes_from` are never inherited (compose's rule), the rest merges.
    let mut base = base;
    base.remove("depends_on");
    base.remove("volumes_from");
    Ok(merge(base, service, &format!("services.{name}")))
}

fn project_name(
    options: &LoadOptions,
    env: &BTreeMap<String, String>,
    tree: &Node,
    project_dir: &Path,
) -> Result<String, LoadError> {
    if let Some(name) = &options.project_name {
        return valid_project_name(name);
    }
    if let Some(name) = env.get("COMPOSE_PROJECT_NAME").filter(|n| !n.is_empty()) {
        return valid_project_name(name);
    }
    if let Some(name) = tree.get("name").and_then(Node::scalar_text) {
        return valid_project_name(&name);
    }
    let dir = project_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "default".into());
    // A directory name is normalised rather than refused (docker compose does the same).
    let cleaned: String = dir
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_')
        .collect();
    let cleaned = cleaned.trim_start_matches(['-', '_']).to_string();
    if cleaned.is_empty() {
        return Err(LoadError::ProjectName(dir));
    }
    Ok(cleaned)
}

fn valid_project_name(name: &str) -> Result<String, LoadError> {
    let ok = name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(name.to_string())
    } else {
        Err(LoadError::ProjectName(name.to_string()))
    }
}

fn active_profiles(options: &LoadOptions, env: &BTreeMap<String, String>) -> Vec<String> {
    let mut profiles = options.profiles.clone();
    if let Some(list) = env.get("COMPOSE_PROFILES") {
        profiles.extend(list.split(',').map(str::trim).filter(|p| !p.is_empty()).map(String::from));
    }
    profiles
}

/// Removes services whose profiles are all inactive (a service without profiles is always on; `*` enables all).
fn apply_profiles(tree: &mut Node, active: &[String]) -> Vec<String> {
    let all = active.iter().any(|p| p == "*");
    let mut disabled = Vec::new();
    if let Some(services) = tree.get_mut("services").and_then(Node::as_map_mut) {
        services.retain(|(k, v)| {
            let profiles: Vec<String> = v
                .get("profiles")
                .and_then(Node::as_seq)
                .map(|s| s.iter().filter_map(Node::scalar_text).collect())
                .unwrap_or_default();
            let on = profiles.is_empty() || all || profiles.iter().any(|p| active.contains(p));
            if !on {
                disabled.push(k.name.clone());
            }
            on
        });
    }
    disabled
}
