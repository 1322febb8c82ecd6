//! A step's environment, in CircleCI's order — each layer overrides the ones before it:
//!
//! 1. CircleCI's built-in variables ([`builtins`]: `CI`, `CIRCLECI`, `CIRCLE_SHA1`, `CIRCLE_BRANCH`, …);
//! 2. project variables (`runner exec -e K=V` and `--env-file F`, in the order given);
//! 3. the job's `environment` (its executor's, overridden by the job's own — merged by processing);
//! 4. the step's `environment`.
//!
//! The primary image's own `ENV` and the image entry's `environment` are the container's, under all of these.

use std::collections::BTreeMap;
use std::path::Path;

use super::error::ExecError;

/// What the built-in variables describe: the pipeline, the job and the project.
#[derive(Debug, Clone, Default)]
pub struct BuildInfo {
    pub job: String,
    pub branch: String,
    pub tag: Option<String>,
    pub revision: String,
    pub build_num: u64,
    pub repository_url: String,
    pub project_username: String,
    pub project_reponame: String,
    pub workflow_id: String,
    pub pipeline_id: String,
    /// As the job writes it (`~/project`): CircleCI does not expand the `~`.
    pub working_directory: String,
    pub node_index: u32,
    pub node_total: u32,
}

/// CircleCI's built-in variables for `info`, in a fixed order.
pub fn builtins(info: &BuildInfo) -> Vec<(String, String)> {
    let mut v: Vec<(&str, String)> = vec![
        ("CI", "true".into()),
        ("CIRCLECI", "true".into()),
        ("CIRCLE_BRANCH", info.branch.clone()),
        ("CIRCLE_SHA1", info.revision.clone()),
        ("CIRCLE_JOB", info.job.clone()),
        ("CIRCLE_BUILD_NUM", info.build_num.to_string()),
        ("CIRCLE_WORKFLOW_ID", info.workflow_id.clone()),
        ("CIRCLE_PIPELINE_ID", info.pipeline_id.clone()),
        ("CIRCLE_REPOSITORY_URL", info.repository_url.clone()),
        ("CIRCLE_PROJECT_USERNAME", info.project_username.clone()),
        ("CIRCLE_PROJECT_REPONAME", info.project_reponame.clone()),
        ("CIRCLE_WORKING_DIRECTORY", info.working_directory.clone()),
        ("CIRCLE_NODE_INDEX", info.node_index.to_string()),
        ("CIRCLE_NODE_TOTAL", info.node_total.to_string()),
    ];
    if let Some(tag) = &info.tag {
        v.push(("CIRCLE_TAG", tag.clone()));
    }
    v.into_iter().map(|(k, val)| (k.to_owned(), val)).collect()
}

/// Layers merged in order, later layers winning; the result keeps first-appearance order.
pub fn merge<'a>(layers: impl IntoIterator<Item = &'a [(String, String)]>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for layer in layers {
        for (k, v) in layer {
            match out.iter_mut().find(|(key, _)| key == k) {
                Some(slot) => slot.1 = v.clone(),
                None => out.push((k.clone(), v.clone())),
            }
        }
    }
    out
}

/// A `BTreeMap` of variables as a layer.
pub fn layer(map: &BTreeMap<String, String>) -> Vec<(String, String)> {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// One `-e` value: `KEY=VALUE`, or `KEY` (taken from this process's environment, as docker does; an error if
/// unset).
pub fn parse_assignment(text: &str) -> Result<(String, String), ExecError> {
    let (k, v) = match text.split_once('=') {
        Some((k, v)) => (k.to_owned(), v.to_owned()),
        None => match std::env::var(text) {
            Ok(v) => (text.to_owned(), v),
            Err(_) => {
                return Err(ExecError::BadVariable {
                    origin: "-e".into(),
                    text: text.into(),
                    hint: "use KEY=VALUE, or export KEY first".into(),
                })
            }
        },
    };
    check_name(&k, "-e", text)?;
    Ok((k, v))
}

/// An `--env-file`: `KEY=VALUE` lines; blank lines and lines starting with `#` are skipped.
pub fn read_env_file(path: &Path) -> Result<Vec<(String, String)>, ExecError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| ExecError::Io { context: format!("cannot read env file {}", path.display()), source })?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let origin = format!("{}:{}", path.display(), n + 1);
        let Some((k, v)) = line.split_once('=') else {
            return Err(ExecError::BadVariable { origin, text: line.into(), hint: "write KEY=VALUE".into() });
        };
        check_name(k.trim(), &origin, line)?;
        out.push((k.trim().to_owned(), v.to_owned()));
    }
    Ok(out)
}

fn check_name(name: &str, origin: &str, text: &str) -> Result<(), ExecError> {
    let ok = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(ExecError::BadVariable {
            origin: origin.into(),
            text: text.into(),
            hint: format!("`{name}` is not a variable name (letters, digits and _, not starting with a digit)"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(k: &str, v: &str) -> (String, String) {
        (k.to_owned(), v.to_owned())
    }

    #[test]
    fn later_layers_win_and_order_is_kept() {
        let builtins = builtins(&BuildInfo { job: "build".into(), ..BuildInfo::default() });
        let project = [kv("CIRCLE_JOB", "p"), kv("A", "project")];
        let job = [kv("A", "job"), kv("B", "job")];
        let step = [kv("B", "step")];
        let env = merge([&builtins[..], &project[..], &job[..], &step[..]]);
        let get = |k: &str| env.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
        assert_eq!(get("CIRCLE_JOB"), Some("p"));
        assert_eq!(get("A"), Some("job"));
        assert_eq!(get("B"), Some("step"));
        assert_eq!(get("CI"), Some("true"));
        assert_eq!(env[0].0, "CI");
    }

    #[test]
    fn env_file_errors_name_the_line() {
        let dir = tempfile::tempdir().expect("temp dir");
        let f = dir.path().join("vars");
        std::fs::write(&f, "# comment\nA=1\n\nnot a pair\n").expect("write");
        let e = read_env_file(&f).expect_err("line 4 is bad").to_string();
        assert!(e.contains(&format!("{}:4", f.display())), "{e}");
        std::fs::write(&f, "A=1\nB=x=y\n").expect("write");
        assert_eq!(read_env_file(&f).expect("valid"), vec![kv("A", "1"), kv("B", "x=y")]);
        assert!(parse_assignment("1X=2").is_err());
    }
}
