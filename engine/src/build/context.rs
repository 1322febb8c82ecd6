//! The build context: a directory, or a tar read from stdin (`engine build -`) unpacked into a staging
//! directory, listed once with [`walk_context`] so `.dockerignore` decides what `COPY`/`ADD` can see; and the
//! selection of `COPY`/`ADD` sources in it (and in `--from` images) by Go's `filepath.Match` globs, as docker
//! selects them.

use std::collections::HashSet;
use std::fs;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use crate::build::dockerignore::{walk_context, ContextEntry, EntryKind, IgnoreMatcher};
use crate::build::image_mount::resolve_parents;
use crate::build::{Error, Result};
use crate::root::Root;

/// The files a build may copy from.
pub struct BuildContext {
    dir: PathBuf,
    /// Every path `.dockerignore` lets through, relative, `/`-separated, parents before children.
    entries: Vec<ContextEntry>,
    _staging: Option<tempfile::TempDir>,
}

/// One selected source: a file, symlink or directory, named by its last component at the destination.
#[derive(Debug, Clone)]
pub struct Selected {
    /// The name it gets under a directory destination.
    pub name: String,
    pub host: PathBuf,
    pub kind: EntryKind,
    /// For a directory: its contents as (path relative to it, host path, kind), parents first.
    pub children: Vec<(String, PathBuf, EntryKind)>,
}

impl BuildContext {
    /// The context directory `dir`, filtered by its `.dockerignore`.
    pub fn from_dir(dir: &Path) -> Result<BuildContext> {
        let matcher = IgnoreMatcher::from_file(&dir.join(".dockerignore"))?;
        let entries = walk_context(dir, &matcher)?;
        Ok(BuildContext { dir: dir.to_path_buf(), entries, _staging: None })
    }

    /// A context sent as a tar (plain or gzip) on `input`, unpacked under the root's `tmp/`.
    pub fn from_tar(root: &Root, input: impl Read) -> Result<BuildContext> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { path, source }
        };
        let staging = root.staging_dir("build-context").map_err(io(&root.tmp_dir()))?;
        let dir = staging.path().join("context");
        fs::create_dir(&dir).map_err(io(&dir))?;
        let reader = crate::image::layer::decompressed(input)
            .map_err(|e| Error::Io { path: PathBuf::from("-"), source: std::io::Error::other(e.to_string()) })?;
        // `unpack` skips entries that would land outside `dir` (`..`, absolute paths).
        tar::Archive::new(reader).unpack(&dir).map_err(io(Path::new("the context tar on stdin")))?;
        let mut context = BuildContext::from_dir(&dir)?;
        context._staging = Some(staging);
        Ok(context)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Selects `pattern` (relative to the context root; a leading `/` is ignored) among the files
    /// `.dockerignore` lets through. A pattern that matches nothing is an error naming it.
    pub fn select(&self, pattern: &str) -> std::result::Result<Vec<Selected>, String> {
        let clean = clean(pattern);
        let mut out = Vec::new();
        if clean == "." {
            out.push(self.selected(".", "."));
            return Ok(out);
        }
        let wanted: Vec<&str> = clean.split('/').collect();
        for entry in &self.entries {
            let parts: Vec<&str> = entry.path.split('/').collect();
            let matches = if has_glob(&clean) {
                parts.len() == wanted.len() && wanted.iter().zip(&parts).all(|(p, n)| glob_match(p, n))
            } else {
                entry.path == clean
            };
            if matches {
                out.push(self.selected(&entry.path, parts.last().copied().unwrap_or(".")));
            }
        }
        if out.is_empty() {
            return Err(format!(
                "file not found in build context or excluded by .dockerignore: stat {clean}: file does not exist"
            ));
        }
        Ok(out)
    }

    fn selected(&self, rel: &str, name: &str) -> Selected {
        let host = if rel == "." { self.dir.clone() } else { self.dir.join(rel) };
        let kind = if rel == "." {
            EntryKind::Dir
        } else {
            self.entries.iter().find(|e| e.path == rel).map_or(EntryKind::File, |e| e.kind)
        };
        let mut children = Vec::new();
        if kind == EntryKind::Dir {
            let prefix = if rel == "." { String::new() } else { format!("{rel}/") };
            for e in self.entries.iter().filter(|e| e.path.starts_with(&prefix)) {
                children.push((e.path[prefix.len()..].to_owned(), self.dir.join(&e.path), e.kind));
            }
        }
        Selected { name: name.to_owned(), host, kind, children }
    }
}

/// Selects `pattern` in a mounted image (`COPY --from`): no `.dockerignore`; symlinks in parent directories are
/// resolved inside the image.
pub fn select_in_tree(root: &Path, pattern: &str) -> std::result::Result<Vec<Selected>, String> {
    let clean = clean(pattern);
    let not_found = || format!("stat {clean}: file does not exist in the source image");
    let mut candidates: Vec<(String, PathBuf)> = vec![(String::new(), root.to_path_buf())];
    if clean != "." {
        for part in clean.split('/') {
            let mut next = Vec::new();
            for (rel, _) in &candidates {
                let child = |name: &str| if rel.is_empty() { name.to_owned() } else { format!("{rel}/{name}") };
                if has_glob(part) {
                    let dir = resolve_parents(root, &format!("{rel}/x"));
                    let Some(dir) = dir.parent() else { continue };
                    let Ok(rd) = fs::read_dir(dir) else { continue };
                    let mut names: Vec<String> =
                        rd.flatten().filter_map(|e| e.file_name().into_string().ok()).collect();
                    names.sort();
                    for n in names.into_iter().filter(|n| glob_match(part, n)) {
                        let rel = child(&n);
                        next.push((rel.clone(), resolve_parents(root, &rel)));
                    }
                } else {
                    let rel = child(part);
                    let host = resolve_parents(root, &rel);
                    if host.symlink_metadata().is_ok() {
                        next.push((rel, host));
                    }
                }
            }
            candidates = next;
        }
    }
    if candidates.is_empty() {
        return Err(not_found());
    }
    let empty = IgnoreMatcher::parse("", ".dockerignore").map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for (rel, host) in candidates {
        let meta = host.symlink_metadata().map_err(|_| not_found())?;
        let kind = kind_of(&meta.file_type());
        let children = if kind == EntryKind::Dir {
            walk_context(&host, &empty)
                .map_err(|e| e.to_string())?
                .into_iter()
                .map(|e| {
                    let h = host.join(&e.path);
                    (e.path, h, e.kind)
                })
                .collect()
        } else {
            Vec::new()
        };
        let name = rel.rsplit('/').next().filter(|n| !n.is_empty()).unwrap_or(".").to_owned();
        out.push(Selected { name, host, kind, children });
    }
    Ok(out)
}

/// The build context `dir` as a tar, in an unnamed temporary file rewound to its start: the entries `matcher`
/// keeps (symlinks stored as links, deterministic headers), then `extra` — a Dockerfile from outside the context
/// or from stdin — under its own name. What clients of an Engine API send to `POST /build` (the remote CLI's
/// `build`, compose's API backend). An entry that cannot be read is an error naming it, never a short tar.
pub fn tar_of(dir: &Path, matcher: &IgnoreMatcher, extra: Option<(&str, &[u8])>) -> Result<fs::File> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    let entries = walk_context(dir, matcher)?;
    let file = tempfile::tempfile().map_err(io(Path::new("a temporary file for the build context")))?;
    let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
    tar.follow_symlinks(false);
    tar.mode(tar::HeaderMode::Deterministic);
    for e in &entries {
        let path = dir.join(&e.path);
        match e.kind {
            EntryKind::Dir => tar.append_dir(&e.path, &path),
            EntryKind::File | EntryKind::Symlink => tar.append_path_with_name(&path, &e.path),
            EntryKind::Other => continue,
        }
        .map_err(io(&path))?;
    }
    if let Some((name, text)) = extra {
        let mut header = tar::Header::new_gnu();
        header.set_size(text.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, name, text).map_err(io(Path::new(name)))?;
    }
    let tmp = Path::new("the build context's temporary file");
    let mut file = tar.into_inner().map_err(io(tmp))?.into_inner().map_err(|e| io(tmp)(e.into_error()))?;
    file.flush().map_err(io(tmp))?;
    file.rewind().map_err(io(tmp))?;
    Ok(file)
}

pub fn kind_of(t: &fs::FileType) -> EntryKind {
    if t.is_symlink() {
        EntryKind::Symlink
    } else if t.is_dir() {
        EntryKind::Dir
    } else if t.is_file() {
        EntryKind::File
    } else {
        EntryKind::Other
    }
}

/// `pattern` without leading `/` or `./`, `.`/`..` components resolved (never above the root), `.` for the root.
fn clean(pattern: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for p in pattern.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        ".".to_owned()
    } else {
        parts.join("/")
    }
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Go's `filepath.Match` for one path component: `*`, `?`, `[a-z]`, `[^…]`, `\` escapes.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    match_from(&p, &n, &mut HashSet::new())
}

/// Matches suffix `p` against suffix `n`. `failed` remembers the (pattern, name) suffix pairs known not to match,
/// so patterns with many `*` (`*a*a*a*b`) cost at most |p|·|n| steps instead of exponential backtracking.
fn match_from(p: &[char], n: &[char], failed: &mut HashSet<(usize, usize)>) -> bool {
    if failed.contains(&(p.len(), n.len())) {
        return false;
    }
    let matched = match_step(p, n, failed);
    if !matched {
        failed.insert((p.len(), n.len()));
    }
    matched
}

fn match_step(p: &[char], n: &[char], failed: &mut HashSet<(usize, usize)>) -> bool {
    let Some((&first, rest)) = p.split_first() else { return n.is_empty() };
    match first {
        '*' => (0..=n.len()).any(|i| match_from(rest, &n[i..], failed)),
        '?' => !n.is_empty() && match_from(rest, &n[1..], failed),
        '\\' => match rest.split_first() {
            Some((&c, rest)) => n.first() == Some(&c) && match_from(rest, &n[1..], failed),
            None => false,
        },
        '[' => {
            let Some(&c) = n.first() else { return false };
            let Some(end) = rest.iter().position(|&x| x == ']') else { return false };
            let class = &rest[..end];
            let (negate, class) = match class.first() {
                Some('^') | Some('!') => (true, &class[1..]),
                _ => (false, class),
            };
            let mut hit = false;
            let mut i = 0;
            while i < class.len() {
                if i + 2 < class.len() && class[i + 1] == '-' {
                    hit |= class[i] <= c && c <= class[i + 2];
                    i += 3;
                } else {
                    hit |= class[i] == c;
                    i += 1;
                }
            }
            hit != negate && match_from(&rest[end + 1..], &n[1..], failed)
        }
        c => n.first() == Some(&c) && match_from(rest, &n[1..], failed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_follow_filepath_match() {
        assert!(glob_match("*.txt", "a.txt"));
        assert!(!glob_match("*.txt", "a.txt.bak"));
        assert!(glob_match("f?le[0-9]", "file7"));
        assert!(!glob_match("[^a]x", "ax"));
        assert!(glob_match("\\*", "*"));
        // Many stars against a long name that fails at the end: bounded work, not exponential backtracking.
        let hostile = format!("{}b", "*a".repeat(20));
        assert!(!glob_match(&hostile, &"a".repeat(200)));
        assert!(glob_match(&hostile, &format!("{}b", "a".repeat(200))));
    }

    #[test]
    fn patterns_are_cleaned() {
        assert_eq!(clean("/a/./b/../c/"), "a/c");
        assert_eq!(clean("../.."), ".");
        assert_eq!(clean("./"), ".");
    }

    #[test]
    fn selection_respects_dockerignore() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("src/sub")).unwrap();
        fs::write(dir.path().join("src/a.rs"), "a").unwrap();
        fs::write(dir.path().join("src/sub/b.rs"), "b").unwrap();
        fs::write(dir.path().join("secret.key"), "k").unwrap();
        fs::write(dir.path().join(".dockerignore"), "*.key\n").unwrap();
        let c = BuildContext::from_dir(dir.path()).unwrap();
        assert!(c.select("secret.key").unwrap_err().contains("secret.key"));
        let src = c.select("src").unwrap();
        let names: Vec<&str> = src[0].children.iter().map(|c| c.0.as_str()).collect();
        assert_eq!(names, ["a.rs", "sub", "sub/b.rs"]);
        assert_eq!(c.select("src/*.rs").unwrap().len(), 1);
    }
}
