//! `network inspect`: docker's JSON for a network (Name, Id, Created, Scope, Driver, IPAM, Internal,
//! Containers, Options, Labels and the keys docker clients expect alongside them).

use serde_json::{json, Map, Value};

use super::Network;

/// docker's `network inspect` object.
pub fn inspect_json(n: &Network) -> Value {
    let config: Vec<Value> = match (n.subnet, n.gateway) {
        (Some(s), Some(g)) => vec![json!({ "Subnet": s.to_string(), "Gateway": g.to_string() })],
        _ => Vec::new(),
    };
    let mut containers = Map::new();
    for (id, e) in &n.endpoints {
        let prefix = n.subnet.map(|s| s.prefix()).unwrap_or(32);
        containers.insert(
            id.clone(),
            json!({
                "Name": e.container_name,
                "EndpointID": e.endpoint_id,
                "MacAddress": e.mac,
                "IPv4Address": format!("{}/{prefix}", e.address),
                "IPv6Address": "",
            }),
        );
    }
    json!({
        "Name": n.name,
        "Id": n.id,
        "Created": n.created,
        "Scope": "local",
        "Driver": n.driver,
        "EnableIPv6": false,
        "IPAM": { "Driver": "default", "Options": null, "Config": config },
        "Internal": n.internal,
        "Attachable": false,
        "Ingress": false,
        "ConfigFrom": { "Network": "" },
        "ConfigOnly": false,
        "Containers": containers,
        "Options": n.options,
        "Labels": n.labels,
    })
}
