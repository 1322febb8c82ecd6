//! System endpoints: `/_ping` (what clients use to negotiate the API version), `/version` and `/info`.

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::{blocking, ApiResult, ApiState, Json, API_VERSION, MIN_API_VERSION};
use crate::container::ContainerStore;
use crate::image::ImageStore;

/// `GET|HEAD /_ping`: `OK`, with the headers clients read (`Api-Version` is added to every response).
pub async fn ping() -> Response {
    let mut res = "OK".into_response();
    let h = res.headers_mut();
    h.insert("Builder-Version", HeaderValue::from_static("1"));
    h.insert("Docker-Experimental", HeaderValue::from_static("false"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, no-store, must-revalidate"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    res
}

fn kernel_version() -> String {
    nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default()
}

/// `GET /version`.
pub async fn version() -> Json<Value> {
    let version = env!("CARGO_PKG_VERSION");
    Json(json!({
        "Platform": { "Name": "Drydock Engine" },
        "Components": [{
            "Name": "Engine",
            "Version": version,
            "Details": {
                "ApiVersion": API_VERSION,
                "MinAPIVersion": MIN_API_VERSION,
                "Os": "linux",
                "Arch": "amd64",
                "KernelVersion": kernel_version(),
            },
        }],
        "Version": version,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": "",
        "Os": "linux",
        "Arch": "amd64",
        "KernelVersion": kernel_version(),
        "BuildTime": "",
    }))
}

/// `GET /info`: counts from the stores (containers within the server's scope) and facts about the host.
pub async fn info(State(state): State<ApiState>) -> ApiResult<Json<Value>> {
    let root = state.root.clone();
    let scope = state.scope.clone();
    let (containers, images) = blocking(move || {
        let mut containers = ContainerStore::open(&root).list()?;
        containers.retain(|(c, _)| super::in_scope(scope.as_ref(), &c.config.labels));
        let images = ImageStore::open(&root)?.list()?.len();
        Ok((containers, images))
    })
    .await?;
    let count = |f: &dyn Fn(&crate::container::State) -> bool| containers.iter().filter(|(_, s)| f(s)).count();
    let running = count(&|s| s.is_running() && s.status != crate::container::Status::Paused);
    let paused = count(&|s| s.status == crate::container::Status::Paused);
    let hostname = nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_default();
    let ncpu = std::thread::available_parallelism().map(usize::from).unwrap_or(1);
    let mem_total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines().find_map(|l| l.strip_prefix("MemTotal:").map(|v| v.trim().trim_end_matches(" kB").to_owned()))
        })
        .and_then(|kb| kb.trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024);
    Ok(Json(json!({
        "ID": "",
        "Containers": containers.len(),
        "ContainersRunning": running,
        "ContainersPaused": paused,
        "ContainersStopped": containers.len() - running - paused,
        "Images": images,
        "Driver": "overlay2",
        "DriverStatus": [],
        "Plugins": { "Volume": ["local"], "Network": ["bridge", "host", "null"], "Log": ["json-file"] },
        "DockerRootDir": state.root.path(),
        "MemoryLimit": true,
        "SwapLimit": false,
        "CpuCfsPeriod": true,
        "CpuCfsQuota": true,
        "PidsLimit": true,
        "IPv4Forwarding": true,
        "Debug": false,
        "NFd": 0,
        "NGoroutines": 0,
        "SystemTime": crate::image::now_rfc3339(),
        "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": "1",
        "KernelVersion": kernel_version(),
        "OperatingSystem": "linux",
        "OSType": "linux",
        "Architecture": "x86_64",
        "NCPU": ncpu,
        "MemTotal": mem_total,
        "Name": hostname,
        "Labels": [],
        "ExperimentalBuild": false,
        "ServerVersion": env!("CARGO_PKG_VERSION"),
        "Runtimes": { "libcontainer": { "path": "libcontainer (in-process)" } },
        "DefaultRuntime": "libcontainer",
        "Swarm": { "LocalNodeState": "inactive", "ControlAvailable": false, "NodeID": "", "NodeAddr": "" },
        "SecurityOptions": ["name=seccomp,profile=builtin"],
        "Warnings": [],
    })))
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct AuthBody {
    username: String,
    password: String,
    serveraddress: String,
}

/// `POST /auth`: checks the credentials against the registry (`docker login`); 200 `{"Status": "Login
/// Succeeded"}`, 401 when the registry refuses them. The client keeps the credentials and sends them with each
/// pull and push (`X-Registry-Auth`); the server stores nothing.
pub async fn auth(body: axum::body::Body) -> ApiResult<Json<Value>> {
    let body: AuthBody = super::parse_json(&super::read_body(body).await?)?;
    let registry = crate::registry::login::normalise_registry(Some(&body.serveraddress));
    blocking(move || {
        let scratch =
            tempfile::tempdir().map_err(|e| super::ApiError::internal(format!("cannot check the login: {e}")))?;
        let store = crate::registry::credentials::CredentialStore::at(scratch.path().join("config.json"));
        let credentials = crate::registry::auth::Credentials { username: body.username, password: body.password };
        let options = crate::registry::RegistryOptions::from_flags_and_env(&[]);
        crate::registry::login::login(&registry, credentials, &options, &store)?;
        Ok(Json(json!({ "Status": "Login Succeeded", "IdentityToken": "" })))
    })
    .await
}
