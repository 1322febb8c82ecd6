//! Image and registry verbs over the API: `images`, `pull` (progress lines), `push`, `tag`, `rmi`, `history`,
//! `import`, `image inspect|prune`, `save`, `load`, `build` (the context is tarred here, honouring
//! `.dockerignore` with the builder's own matcher, and streamed to `POST /build`), `login` (`POST /auth`, then the
//! credentials are kept in this side's docker config and sent as `X-Registry-Auth` with pull and push).

use std::collections::BTreeMap;
use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use serde_json::{json, Value};

use engine::build::dockerignore::IgnoreMatcher;
use engine::client::{self, query, ApiClient, RequestBody};
use engine::humanize;
use engine::reference::Reference;
use engine::registry::auth::Credentials;
use engine::registry::credentials::CredentialStore;
use engine::registry::login;

use super::super::build::BuildArgs;
use super::super::image::{ImageCommand, ImageGroupCommand, ImagesArgs, RmiArgs};
use super::super::registry::{LoginArgs, RegistryCommand};
use super::super::{table, ExitError};

pub fn run(cmd: ImageCommand, client: &ApiClient) -> anyhow::Result<ExitCode> {
    match cmd {
        ImageCommand::Import(a) => import(a, client),
        ImageCommand::Images(a) => images(a, client),
        ImageCommand::Tag(a) => tag(&a.source, &a.target, client),
        ImageCommand::Rmi(a) => rmi(a, client),
        ImageCommand::History(a) => history(&a.image, a.quiet, a.no_trunc, client),
    }
}

pub fn run_group(cmd: ImageGroupCommand, client: &ApiClient) -> anyhow::Result<ExitCode> {
    match cmd {
        ImageGroupCommand::Import(a) => import(a, client),
        ImageGroupCommand::Ls(a) => images(a, client),
        ImageGroupCommand::Tag(a) => tag(&a.source, &a.target, client),
        ImageGroupCommand::Rm(a) => rmi(a, client),
        ImageGroupCommand::History(a) => history(&a.image, a.quiet, a.no_trunc, client),
        ImageGroupCommand::Inspect(a) => {
            let mut values = Vec::new();
            let mut missing = None;
            for name in &a.images {
                match super::optional(client.get_json::<Value>(&format!("/images/{name}/json")))? {
                    Some(v) => values.push(v),
                    None => missing = missing.or(Some(name.clone())),
                }
            }
            super::super::print_inspect(&values, a.format.as_deref())?;
            if let Some(name) = missing {
                return Err(ExitError { code: 1, message: format!("No such image: {name}") }.into());
            }
            Ok(ExitCode::SUCCESS)
        }
        ImageGroupCommand::Prune(a) => {
            let filters = if a.all { String::new() } else { r#"{"dangling":["true"]}"#.to_owned() };
            let v: Value =
                client.post_json::<Value, Value>(&format!("/images/prune{}", query(&[("filters", &filters)])), None)?;
            let mut out = io::stdout().lock();
            let deleted = v["ImagesDeleted"].as_array().cloned().unwrap_or_default();
            if !deleted.is_empty() {
                writeln!(out, "Deleted Images:")?;
                for d in deleted {
                    for (k, v) in d.as_object().into_iter().flatten() {
                        writeln!(out, "{}: {}", k.to_ascii_lowercase(), v.as_str().unwrap_or_default())?;
                    }
                }
                writeln!(out)?;
            }
            writeln!(out, "Total reclaimed space: {}", humanize::size(v["SpaceReclaimed"].as_u64().unwrap_or(0)))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub fn registry(cmd: RegistryCommand, client: &ApiClient) -> anyhow::Result<ExitCode> {
    match cmd {
        RegistryCommand::Pull(a) => {
            pull_image(&a.name, a.quiet, client, &mut io::stdout())?;
            Ok(ExitCode::SUCCESS)
        }
        RegistryCommand::Push(a) => push(&a.name, a.quiet, client),
        RegistryCommand::Login(a) => login_cmd(a, client),
        // Credentials live on this side: logging out is the local verb's work.
        RegistryCommand::Logout(a) => {
            let registry = login::normalise_registry(a.server.as_deref());
            match login::logout(&registry, &CredentialStore::default_location()) {
                Ok(()) => println!("Removing login credentials for {registry}"),
                Err(engine::registry::Error::NotLoggedIn(r)) => println!("Not logged in to {r}"),
                Err(e) => return Err(e.into()),
            }
            Ok(ExitCode::SUCCESS)
        }
        RegistryCommand::Save(a) => {
            let names: Vec<(&str, &str)> = a.images.iter().map(|n| ("names", n.as_str())).collect();
            let mut res = client.request(
                hyper::Method::GET,
                &format!("/images/get{}", query(&names)),
                &[],
                RequestBody::Empty,
            )?;
            match &a.output {
                Some(path) => {
                    let mut file = std::fs::File::create(path).with_context(|| format!("cannot create {path}"))?;
                    io::copy(&mut res, &mut file).with_context(|| format!("cannot write {path}"))?;
                }
                None => {
                    if io::stdout().is_terminal() {
                        anyhow::bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
                    }
                    io::copy(&mut res, &mut io::stdout().lock())?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        RegistryCommand::Load(a) => {
            let body: Box<dyn Read + Send> = match &a.input {
                Some(path) => Box::new(std::fs::File::open(path).with_context(|| format!("cannot open {path}"))?),
                None => Box::new(io::stdin()),
            };
            let q = query(&[("quiet", if a.quiet { "1" } else { "0" })]);
            let res = client.request(
                hyper::Method::POST,
                &format!("/images/load{q}"),
                &[("Content-Type", "application/x-tar".to_owned())],
                RequestBody::Reader(body),
            )?;
            print_progress(res.json_lines(), a.quiet, &mut io::stdout())?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The `X-Registry-Auth` header for the registry of `name`, from this side's docker config (what `login` saved).
fn auth_header(name: &str) -> anyhow::Result<Vec<(&'static str, String)>> {
    let Ok(reference) = Reference::parse(name) else { return Ok(Vec::new()) };
    let registry = login::normalise_registry(Some(&reference.registry));
    match CredentialStore::default_location().get(&registry) {
        Ok(Some(c)) => Ok(vec![("X-Registry-Auth", client::registry_auth(&c.username, &c.password, &registry))]),
        Ok(None) => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("cannot read the credentials for {registry}")),
    }
}

/// Prints docker's progress stream (`status`, `id`, `progress`, `stream`, `aux`); an `error` line ends it as an
/// error (exit 1, as the docker CLI).
fn print_progress(
    lines: impl Iterator<Item = client::Result<Value>>,
    quiet: bool,
    out: &mut dyn Write,
) -> anyhow::Result<Option<Value>> {
    let mut aux = None;
    // Each state of a layer is printed once (docker's non-terminal output), not every progress update.
    let mut seen = std::collections::HashSet::new();
    for line in lines {
        let v = line?;
        if let Some(e) = v["error"].as_str() {
            return Err(ExitError { code: 1, message: e.to_owned() }.into());
        }
        if v.get("aux").is_some() {
            aux = Some(v["aux"].clone());
        }
        if quiet {
            continue;
        }
        if let Some(s) = v["stream"].as_str() {
            write!(out, "{s}")?;
        } else if let Some(status) = v["status"].as_str() {
            match v["id"].as_str() {
                Some(id) if !seen.insert((id.to_owned(), status.to_owned())) => {}
                Some(id) => writeln!(out, "{id}: {status}")?,
                None => writeln!(out, "{status}")?,
            }
        }
        out.flush()?;
    }
    Ok(aux)
}

/// `POST /images/create?fromImage=&tag=` with the progress printed to `out` (stderr when `run` pulls).
pub fn pull_image(name: &str, quiet: bool, client: &ApiClient, out: &mut dyn Write) -> anyhow::Result<()> {
    let (image, tag) = match name.split_once('@') {
        Some((repo, digest)) => (repo.to_owned(), digest.to_owned()),
        None => match name.rsplit_once(':') {
            Some((repo, tag)) if !tag.contains('/') => (repo.to_owned(), tag.to_owned()),
            _ => (name.to_owned(), "latest".to_owned()),
        },
    };
    let headers = auth_header(name)?;
    let res = client.request(
        hyper::Method::POST,
        &format!("/images/create{}", query(&[("fromImage", &image), ("tag", &tag)])),
        &headers,
        RequestBody::Empty,
    )?;
    print_progress(res.json_lines(), quiet, out)?;
    Ok(())
}

fn push(name: &str, quiet: bool, client: &ApiClient) -> anyhow::Result<ExitCode> {
    let (repo, tag) = match name.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo.to_owned(), tag.to_owned()),
        _ => (name.to_owned(), String::new()),
    };
    let headers = auth_header(name)?;
    let q = if tag.is_empty() { String::new() } else { query(&[("tag", &tag)]) };
    let res = client.request(hyper::Method::POST, &format!("/images/{repo}/push{q}"), &headers, RequestBody::Empty)?;
    print_progress(res.json_lines(), quiet, &mut io::stdout())?;
    Ok(ExitCode::SUCCESS)
}

fn login_cmd(a: LoginArgs, client: &ApiClient) -> anyhow::Result<ExitCode> {
    let registry = login::normalise_registry(a.server.as_deref());
    let stdin = io::stdin();
    let username = match a.username {
        Some(u) => u,
        None if stdin.is_terminal() && !a.password_stdin => super::super::registry::prompt("Username: ")?,
        None => anyhow::bail!("a user name is required: use -u USER"),
    };
    let password = if a.password_stdin {
        let mut p = String::new();
        io::stdin().lock().read_to_string(&mut p).context("cannot read the password from standard input")?;
        p.trim_end_matches(['\n', '\r']).to_owned()
    } else if let Some(p) = a.password {
        eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
        p
    } else if stdin.is_terminal() {
        super::super::registry::prompt_hidden("Password: ")?
    } else {
        anyhow::bail!("a password is required: use --password-stdin (or -p)")
    };
    if password.is_empty() {
        anyhow::bail!("the password is empty: give one with --password-stdin or -p");
    }
    let body = json!({"username": username, "password": password, "serveraddress": registry});
    let v: Value = client.post_json("/auth", Some(&body)).with_context(|| format!("cannot log in to {registry}"))?;
    CredentialStore::default_location()
        .set(&registry, &Credentials { username, password })
        .with_context(|| format!("the server accepted the login to {registry}, but it cannot be saved here"))?;
    println!("{}", v["Status"].as_str().unwrap_or("Login Succeeded"));
    Ok(ExitCode::SUCCESS)
}

fn images(a: ImagesArgs, client: &ApiClient) -> anyhow::Result<ExitCode> {
    let filters = match &a.repository {
        Some(r) => json!({"reference": [r]}).to_string(),
        None => String::new(),
    };
    let rows: Vec<Value> = client.get_json(&format!(
        "/images/json{}",
        query(&[("all", if a.all { "1" } else { "0" }), ("filters", &filters)])
    ))?;
    let short = |id: &str| {
        let id = id.trim_start_matches("sha256:");
        if a.no_trunc {
            format!("sha256:{id}")
        } else {
            id[..12.min(id.len())].to_owned()
        }
    };
    if a.quiet {
        let mut out = io::stdout().lock();
        let mut seen = std::collections::BTreeSet::new();
        for r in &rows {
            let id = short(r["Id"].as_str().unwrap_or_default());
            if seen.insert(id.clone()) {
                writeln!(out, "{id}")?;
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut cells = Vec::new();
    for r in &rows {
        let id = short(r["Id"].as_str().unwrap_or_default());
        let created = chrono::DateTime::from_timestamp(r["Created"].as_i64().unwrap_or(0), 0)
            .map(|t| humanize::since(&t.to_rfc3339()))
            .unwrap_or_default();
        let size = humanize::size(r["Size"].as_u64().unwrap_or(0));
        let tags: Vec<String> =
            r["RepoTags"].as_array().into_iter().flatten().filter_map(|t| t.as_str().map(str::to_owned)).collect();
        if tags.is_empty() {
            cells.push(vec!["<none>".into(), "<none>".into(), id.clone(), created.clone(), size.clone()]);
        }
        for t in tags {
            let (repo, tag) =
                t.rsplit_once(':').map_or((t.clone(), "<none>".to_owned()), |(r, t)| (r.to_owned(), t.to_owned()));
            cells.push(vec![repo, tag, id.clone(), created.clone(), size.clone()]);
        }
    }
    table::print(&["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"], &cells)?;
    Ok(ExitCode::SUCCESS)
}

fn tag(source: &str, target: &str, client: &ApiClient) -> anyhow::Result<ExitCode> {
    let (repo, tag) = match target.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo.to_owned(), tag.to_owned()),
        _ => (target.to_owned(), "latest".to_owned()),
    };
    client.post::<Value>(&format!("/images/{source}/tag{}", query(&[("repo", &repo), ("tag", &tag)])), None)?;
    Ok(ExitCode::SUCCESS)
}

fn rmi(a: RmiArgs, client: &ApiClient) -> anyhow::Result<ExitCode> {
    let mut first_err = None;
    for name in &a.images {
        match client.delete(&format!("/images/{name}{}", query(&[("force", if a.force { "1" } else { "0" })]))) {
            Ok(v) => {
                for item in v.as_array().into_iter().flatten() {
                    for (k, v) in item.as_object().into_iter().flatten() {
                        println!("{}: {}", k, v.as_str().unwrap_or_default());
                    }
                }
            }
            Err(e) if first_err.is_none() => first_err = Some(e),
            Err(e) => eprintln!("Error response from daemon: {e}"),
        }
    }
    match first_err {
        Some(e) => Err(e.into()),
        None => Ok(ExitCode::SUCCESS),
    }
}

fn history(name: &str, quiet: bool, no_trunc: bool, client: &ApiClient) -> anyhow::Result<ExitCode> {
    let rows: Vec<Value> = client.get_json(&format!("/images/{name}/history"))?;
    let short = |id: &str| {
        if id.is_empty() || id == "<missing>" {
            "<missing>".to_owned()
        } else if no_trunc {
            id.to_owned()
        } else {
            id.trim_start_matches("sha256:").chars().take(12).collect()
        }
    };
    if quiet {
        for r in &rows {
            println!("{}", short(r["Id"].as_str().unwrap_or_default()));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let created = chrono::DateTime::from_timestamp(r["Created"].as_i64().unwrap_or(0), 0)
                .map(|t| humanize::since(&t.to_rfc3339()))
                .unwrap_or_default();
            let mut by = r["CreatedBy"].as_str().unwrap_or_default().to_owned();
            if !no_trunc && by.chars().count() > 45 {
                by = format!("{}…", by.chars().take(44).collect::<String>());
            }
            vec![
                short(r["Id"].as_str().unwrap_or_default()),
                created,
                by,
                humanize::size(r["Size"].as_u64().unwrap_or(0)),
                r["Comment"].as_str().unwrap_or_default().to_owned(),
            ]
        })
        .collect();
    table::print(&["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"], &cells)?;
    Ok(ExitCode::SUCCESS)
}

/// `import` over the API: the tar (a file, or stdin with `-`) is the body of `POST /images/create?fromSrc=-`;
/// the server answers the new image's ID, printed as the local `import` prints it.
fn import(a: super::super::image::ImportArgs, client: &ApiClient) -> anyhow::Result<ExitCode> {
    let body: Box<dyn Read + Send> = if a.file == "-" {
        Box::new(io::stdin())
    } else {
        Box::new(std::fs::File::open(&a.file).with_context(|| format!("cannot open {}", a.file))?)
    };
    let mut pairs: Vec<(&str, &str)> = vec![("fromSrc", "-")];
    if let Some(name) = &a.name {
        pairs.push(("repo", name));
    }
    if let Some(m) = &a.message {
        pairs.push(("message", m));
    }
    pairs.extend(a.changes.iter().map(|c| ("changes", c.as_str())));
    let res = client.request(
        hyper::Method::POST,
        &format!("/images/create{}", query(&pairs)),
        &[("Content-Type", "application/x-tar".to_owned())],
        RequestBody::Reader(body),
    )?;
    print_progress(res.json_lines(), false, &mut io::stdout())?;
    Ok(ExitCode::SUCCESS)
}

/// `build` over the API: the context directory tarred with `.dockerignore` applied (the Dockerfile and
/// `.dockerignore` are always sent), streamed to `POST /build`; the builder's lines are printed as they come,
/// an error line exits 1.
pub fn build(a: BuildArgs, client: &ApiClient) -> anyhow::Result<ExitCode> {
    build_inner(a, client).map_err(|e| match e.downcast::<ExitError>() {
        Ok(x) => x.into(),
        Err(e) => ExitError { code: 1, message: super::super::chain(&e) }.into(),
    })
}

fn build_inner(a: BuildArgs, client: &ApiClient) -> anyhow::Result<ExitCode> {
    let (context, dockerfile): (Box<dyn Read + Send>, Option<String>) = if a.context == "-" {
        // `-` is a tar (plain or gzip) or a lone Dockerfile, which docker sends as a one-file context.
        let bytes = super::super::build::read_stdin()?;
        if a.file.as_deref() == Some("-") {
            anyhow::bail!("invalid argument: can't use stdin for both build context and dockerfile");
        }
        if super::super::build::is_archive(&bytes) {
            (Box::new(io::Cursor::new(bytes)), a.file.clone())
        } else {
            let mut tar = tar::Builder::new(Vec::new());
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append_data(&mut header, "Dockerfile", bytes.as_slice())?;
            (Box::new(io::Cursor::new(tar.into_inner()?)), Some("Dockerfile".to_owned()))
        }
    } else {
        let dir = Path::new(&a.context);
        if !dir.is_dir() {
            anyhow::bail!("unable to prepare context: path {:?} not found (give a directory or -)", a.context);
        }
        let (tar, name) = context_tar(dir, a.file.as_deref())?;
        (Box::new(tar), Some(name))
    };
    let mut pairs: Vec<(&str, String)> = a.tags.iter().map(|t| ("t", t.clone())).collect();
    if let Some(d) = dockerfile {
        pairs.push(("dockerfile", d));
    }
    let mut build_args = BTreeMap::new();
    for arg in &a.build_args {
        match arg.split_once('=') {
            Some((k, v)) => {
                build_args.insert(k.to_owned(), v.to_owned());
            }
            None => {
                if let Ok(v) = std::env::var(arg) {
                    build_args.insert(arg.clone(), v);
                }
            }
        }
    }
    if !build_args.is_empty() {
        pairs.push(("buildargs", serde_json::to_string(&build_args)?));
    }
    let labels: BTreeMap<&str, &str> = a.labels.iter().map(|l| l.split_once('=').unwrap_or((l.as_str(), ""))).collect();
    if !labels.is_empty() {
        pairs.push(("labels", serde_json::to_string(&labels)?));
    }
    if let Some(t) = &a.target {
        pairs.push(("target", t.clone()));
    }
    if a.no_cache {
        pairs.push(("nocache", "1".into()));
    }
    if a.pull {
        pairs.push(("pull", "1".into()));
    }
    if a.quiet {
        pairs.push(("q", "1".into()));
    }
    if let Some(n) = &a.network {
        pairs.push(("networkmode", n.clone()));
    }
    let borrowed: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let res = client.request(
        hyper::Method::POST,
        &format!("/build{}", query(&borrowed)),
        &[("Content-Type", "application/x-tar".to_owned())],
        RequestBody::Reader(context),
    )?;
    let aux = print_progress(res.json_lines(), a.quiet, &mut io::stdout())?;
    let id = aux.as_ref().and_then(|v| v["ID"].as_str()).unwrap_or_default().to_owned();
    if a.quiet && !id.is_empty() {
        println!("{id}");
    }
    if let Some(path) = &a.iidfile {
        std::fs::write(path, &id).with_context(|| format!("cannot write --iidfile {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Tars the build context `dir` into an unnamed temporary file, honouring its `.dockerignore` (the builder's
/// matcher, so the server sees exactly the files a local build would). Returns the tar and the Dockerfile's
/// name inside it: `-f` inside the context keeps its relative path; a Dockerfile outside it is added under
/// a name of its own, as the docker CLI does.
fn context_tar(dir: &Path, file: Option<&str>) -> anyhow::Result<(std::fs::File, String)> {
    let (dockerfile_path, mut name) = match file {
        None => (dir.join("Dockerfile"), "Dockerfile".to_owned()),
        Some("-") => (PathBuf::from("-"), String::new()),
        Some(f) => {
            let p = PathBuf::from(f);
            let abs = if p.is_absolute() { p } else { std::env::current_dir()?.join(p) };
            let inside = abs
                .canonicalize()
                .ok()
                .zip(dir.canonicalize().ok())
                .and_then(|(a, d)| a.strip_prefix(&d).ok().map(|r| r.to_string_lossy().into_owned()));
            match inside {
                Some(rel) => (abs, rel),
                None => (abs, String::new()),
            }
        }
    };
    let matcher =
        IgnoreMatcher::from_file(&dir.join(".dockerignore"))?.keep(if name.is_empty() { "Dockerfile" } else { &name });
    let outside = if name.is_empty() {
        name = ".drydock-dockerfile".to_owned();
        Some(if dockerfile_path == Path::new("-") {
            super::super::build::read_stdin()?
        } else {
            std::fs::read(&dockerfile_path)
                .with_context(|| format!("cannot read the Dockerfile {}", dockerfile_path.display()))?
        })
    } else {
        None
    };
    let file = engine::build::context::tar_of(dir, &matcher, outside.as_deref().map(|t| (name.as_str(), t)))?;
    Ok((file, name))
}
