//! Network endpoints: list, inspect, create, remove, prune, connect, disconnect — docker's JSON mapped onto
//! [`crate::network::NetworkStore`] and [`crate::container::network`], as `engine network …` does.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};

use super::containers::parse_filters;
use super::{blocking, in_scope, parse_json, read_body, ApiError, ApiResult, ApiState, Json, Query, Scope};
use crate::container::ContainerStore;
use crate::network::create::CreateOptions;
use crate::network::inspect::inspect_json;
use crate::network::{Error as NetworkError, Network, NetworkStore};

/// Resolves a network, as 404 when it is out of this server's scope (built-in networks are in every scope).
fn scoped_network(scope: Option<&Scope>, store: &NetworkStore, name: &str) -> ApiResult<Network> {
    let n = store.resolve(name)?;
    if !n.builtin && !in_scope(scope, &n.labels) {
        return Err(NetworkError::NotFound(name.to_owned()).into());
    }
    Ok(n)
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct CreateBody {
    name: Option<String>,
    driver: Option<String>,
    internal: Option<bool>,
    #[serde(rename = "IPAM")]
    ipam: Option<IpamBody>,
    options: Option<BTreeMap<String, String>>,
    labels: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct IpamBody {
    config: Option<Vec<IpamConfigBody>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct IpamConfigBody {
    subnet: Option<String>,
    gateway: Option<String>,
}

fn create_options(body: CreateBody) -> ApiResult<CreateOptions> {
    let name = body.name.filter(|n| !n.is_empty()).ok_or_else(|| ApiError::bad_request("Name is required"))?;
    let mut configs = body.ipam.and_then(|i| i.config).unwrap_or_default().into_iter();
    let first = configs.next().unwrap_or_default();
    if configs.next().is_some() {
        return Err(ApiError::bad_request("IPAM.Config: only one subnet per network is supported"));
    }
    Ok(CreateOptions {
        name,
        driver: body.driver.filter(|d| !d.is_empty()),
        subnet: first.subnet.filter(|s| !s.is_empty()),
        gateway: first.gateway.filter(|g| !g.is_empty()),
        internal: body.internal.unwrap_or(false),
        labels: body.labels.unwrap_or_default(),
        options: body.options.unwrap_or_default(),
    })
}

/// `GET /networks?filters=` (`name`, `id`, `driver` and `label` filters).
pub async fn list(State(state): State<ApiState>, q: Query) -> ApiResult<Json<Value>> {
    let filters = parse_filters(q.get("filters"))?;
    let root = state.root.clone();
    let scope = state.scope.clone();
    blocking(move || {
        let networks = NetworkStore::open(&root)?.list()?;
        let out: Vec<Value> = networks
            .iter()
            .filter(|n| n.builtin || in_scope(scope.as_ref(), &n.labels))
            .filter(|n| {
                filters.iter().all(|f| match f.split_once('=') {
                    Some(("name", v)) => n.name.contains(v),
                    Some(("id", v)) => n.id.starts_with(v),
                    Some(("driver", v)) => n.driver == v,
                    Some(("label", v)) => match v.split_once('=') {
                        Some((k, val)) => n.labels.get(k).is_some_and(|x| x == val),
                        None => n.labels.contains_key(v),
                    },
                    _ => true,
                })
            })
            .map(inspect_json)
            .collect();
        Ok(Json(Value::Array(out)))
    })
    .await
}

/// `GET /networks/{id}`.
pub async fn inspect(State(state): State<ApiState>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    let root = state.root.clone();
    let scope = state.scope.clone();
    blocking(move || Ok(Json(inspect_json(&scoped_network(scope.as_ref(), &NetworkStore::open(&root)?, &name)?)))).await
}

/// `POST /networks/create`: 201 `{"Id", "Warning"}`.
pub async fn create(State(state): State<ApiState>, body: Body) -> ApiResult<Response> {
    let mut opts = create_options(parse_json(&read_body(body).await?)?)?;
    if let Some(scope) = &state.scope {
        opts.labels.insert(scope.key.clone(), scope.value.clone());
    }
    let root = state.root.clone();
    let id = blocking(move || Ok(NetworkStore::open(&root)?.create(&opts)?.id)).await?;
    Ok((StatusCode::CREATED, Json(json!({ "Id": id, "Warning": "" }))).into_response())
}

/// `DELETE /networks/{id}`: 204.
pub async fn remove(State(state): State<ApiState>, Path(name): Path<String>) -> ApiResult<StatusCode> {
    let root = state.root.clone();
    let scope = state.scope.clone();
    blocking(move || {
        let store = NetworkStore::open(&root)?;
        let n = scoped_network(scope.as_ref(), &store, &name)?;
        store.remove(&n.id)?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

/// `POST /networks/prune`: `{"NetworksDeleted": [...]}`.
pub async fn prune(State(state): State<ApiState>) -> ApiResult<Json<Value>> {
    let root = state.root.clone();
    let scope = state.scope.clone();
    blocking(move || {
        let store = NetworkStore::open(&root)?;
        let Some(scope) = scope else { return Ok(Json(json!({ "NetworksDeleted": store.prune()? }))) };
        let mut deleted = Vec::new();
        for n in store.list()? {
            if !n.builtin && scope.holds(&n.labels) && n.endpoints.is_empty() {
                store.remove(&n.id)?;
                deleted.push(n.name);
            }
        }
        Ok(Json(json!({ "NetworksDeleted": deleted })))
    })
    .await
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ConnectBody {
    container: Option<String>,
    endpoint_config: Option<EndpointConfigBody>,
    force: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct EndpointConfigBody {
    aliases: Option<Vec<String>>,
    #[serde(rename = "IPAMConfig")]
    ipam_config: Option<EndpointIpamBody>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct EndpointIpamBody {
    #[serde(rename = "IPv4Address")]
    ipv4_address: Option<String>,
}

/// `POST /networks/{id}/connect` and `/disconnect` with `{"Container": …}`: 200.
pub async fn connect_or_disconnect(
    State(state): State<ApiState>,
    Path((network, verb)): Path<(String, String)>,
    body: Body,
) -> ApiResult<StatusCode> {
    let connect = match verb.as_str() {
        "connect" => true,
        "disconnect" => false,
        other => return Err(ApiError::not_found(format!("page not found: POST /networks/{network}/{other}"))),
    };
    let body: ConnectBody = parse_json(&read_body(body).await?)?;
    let container =
        body.container.filter(|c| !c.is_empty()).ok_or_else(|| ApiError::bad_request("Container is required"))?;
    let endpoint = body.endpoint_config.unwrap_or_default();
    let ip = match endpoint.ipam_config.and_then(|i| i.ipv4_address).filter(|a| !a.is_empty()) {
        None => None,
        Some(a) => Some(a.parse().map_err(|_| {
            ApiError::bad_request(format!("EndpointConfig.IPAMConfig.IPv4Address: invalid address `{a}`"))
        })?),
    };
    let root = state.root.clone();
    let scope = state.scope.clone();
    blocking(move || {
        let store = ContainerStore::open(&root);
        let c = super::scoped_container(scope.as_ref(), &store, &container)?;
        scoped_network(scope.as_ref(), &NetworkStore::open(&root)?, &network)?;
        if connect {
            crate::container::network::connect(&store, &c.id, &network, endpoint.aliases.unwrap_or_default(), ip)?;
        } else {
            crate::container::network::disconnect(&store, &c.id, &network, body.force.unwrap_or(false))?;
        }
        Ok(StatusCode::OK)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_bodies_map_to_options() -> Result<(), String> {
        let o = create_options(
            parse_json(
                br#"{"Name":"n1","Driver":"bridge","IPAM":{"Config":[{"Subnet":"10.9.0.0/24"}]},"Labels":{"a":"b"}}"#,
            )
            .map_err(|e| e.message)?,
        )
        .map_err(|e| e.message)?;
        assert_eq!(
            (o.name.as_str(), o.subnet.as_deref(), o.labels.get("a").map(String::as_str)),
            ("n1", Some("10.9.0.0/24"), Some("b"))
        );
        assert!(create_options(CreateBody::default()).is_err_and(|e| e.message == "Name is required"));
        Ok(())
    }
}
