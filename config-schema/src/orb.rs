//! Registry orbs without the registry: Drydock runs offline, so an orb reference such as `circleci/node@5.1` is
//! looked up in a local orb directory (`<dir>/<namespace>/<name>.yml`, the orb's source as `circleci orb pack`
//! writes it; the version is not checked) and read like an inline orb. A reference that is not there is an
//! error naming the orb and the file that would satisfy it.

use std::path::{Path, PathBuf};

use crate::diagnostic::{join, Diagnostic, Report};
use crate::model::{InlineOrb, Orb};
use crate::{read, yaml, Options};
use std::collections::BTreeMap;

/// Orbs inside orbs inside orbs … are followed this deep (a local orb that imports itself stops here).
const MAX_DEPTH: usize = 8;

/// `<dir>/<namespace>/<name>.yml` for `namespace/name@version`.
pub fn local_orb_path(dir: &Path, reference: &str) -> Option<PathBuf> {
    let name = reference.split('@').next()?;
    let (namespace, orb) = name.split_once('/')?;
    Some(dir.join(namespace).join(format!("{orb}.yml")))
}

/// Fills `resolved` of every registry orb (nested ones too) from the local orb directory. Problems in the
/// configuration go to `report`; problems inside an orb file are returned with that file's name.
pub fn resolve(orbs: &mut BTreeMap<String, Orb>, options: &Options, report: &mut Report) -> Vec<Diagnostic> {
    let mut elsewhere = Vec::new();
    resolve_in(orbs, "orbs", options, report, &mut elsewhere, 0);
    elsewhere
}

fn resolve_in(
    orbs: &mut BTreeMap<String, Orb>,
    path: &str,
    options: &Options,
    report: &mut Report,
    elsewhere: &mut Vec<Diagnostic>,
    depth: usize,
) {
    for (name, orb) in orbs.iter_mut() {
        let p = join(path, name);
        match orb {
            Orb::Inline(inline) => resolve_in(&mut inline.orbs, &join(&p, "orbs"), options, report, elsewhere, depth),
            Orb::Registry { reference, pos, resolved } => {
                if !read::is_orb_reference(reference) {
                    continue; // already reported by `read`
                }
                let file = options.orb_dir.as_deref().and_then(|dir| local_orb_path(dir, reference));
                let Some(file) = file.filter(|f| f.is_file()) else {
                    let fix = match options.orb_dir.as_deref().and_then(|dir| local_orb_path(dir, reference)) {
                        Some(wanted) => format!("put its source at {}", wanted.display()),
                        None => format!(
                            "give a local orb directory (runner: `--orb-dir DIR` or DRYDOCK_ORB_DIR) holding {}",
                            local_orb_path(Path::new(""), reference)
                                .map(|f| f.display().to_string())
                                .unwrap_or_default()
                        ),
                    };
                    report.error(
                        *pos,
                        &p,
                        format!(
                            "orb `{name}` ({reference}) is in CircleCI's orb registry, which cannot be reached \
                             offline: inline it under `orbs:` or {fix}"
                        ),
                    );
                    continue;
                };
                if depth >= MAX_DEPTH {
                    report.error(
                        *pos,
                        &p,
                        format!("orb `{name}` ({reference}): orbs are nested more than {MAX_DEPTH} deep"),
                    );
                    continue;
                }
                let mut orb_report = Report::new(&file.display().to_string());
                let mut loaded = load(&file, reference, *pos, &mut orb_report);
                if let Some(o) = &mut loaded {
                    resolve_in(&mut o.orbs, "orbs", options, &mut orb_report, elsewhere, depth + 1);
                }
                elsewhere.extend(orb_report.finish().0);
                *resolved = loaded.map(Box::new);
            }
        }
    }
}

fn load(file: &Path, reference: &str, pos: crate::yaml::Pos, report: &mut Report) -> Option<InlineOrb> {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            report.error(Default::default(), "", format!("cannot read orb {reference}: {e}"));
            return None;
        }
    };
    let doc = match yaml::parse(&text) {
        Ok(d) => d,
        Err(e) => {
            report.error(e.pos, "", e.message);
            return None;
        }
    };
    if !doc.is_map() {
        let message = format!("an orb file is a map (commands, jobs, executors …), found {}", doc.kind());
        report.error(doc.pos, "", message);
        return None;
    }
    // Positions inside the orb are the orb file's; `pos` (where the config declares it) is the orb's own.
    let mut orb = read::inline_orb(&doc, pos, "", &format!("orb {reference}"), report);
    orb.file = Some(file.display().to_string());
    Some(orb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_orb_paths() {
        assert_eq!(
            local_orb_path(Path::new("/orbs"), "circleci/node@5.1"),
            Some(PathBuf::from("/orbs/circleci/node.yml"))
        );
        assert_eq!(local_orb_path(Path::new("/orbs"), "node"), None);
    }
}
