//! `GET /api/v1/openapi.json`: the OpenAPI 3 document of the whole HTTP API, written by hand here (a derive crate
//! such as utoipa would annotate every handler and add a proc-macro dependency tree to a 2-core build for one
//! document). A test reads every `.route(…)` of the API's source files and checks the document against them both
//! ways, so a route cannot be added without its entry.

use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/openapi.json", get(openapi))
}

async fn openapi() -> Response {
    Json(document()).into_response()
}

/// Who may call an operation.
#[derive(Clone, Copy)]
enum Auth {
    Public,
    Admin,
    Runner,
    /// GitHub's signature header.
    Signature,
}

/// One operation: `(method, path, tag, auth, summary, extra)`; `extra` is merged into the operation (request
/// body, query parameters, responses beyond the defaults).
type Op = (&'static str, &'static str, &'static str, Auth, &'static str, Value);

fn operations() -> Vec<Op> {
    let scope_body = json!({"requestBody": {"required": false, "content": {"application/json": {"schema": {
        "type": "object", "properties": {"scope": {"type": "string", "enum": ["workflow", "failed"]}}}}}},
        "responses": {"201": {"description": "the workflows created, each with `rerun_of`"},
                      "409": {"$ref": "#/components/responses/Problem"}}});
    let value_body = json!({"requestBody": {"required": true, "content": {"application/json": {"schema": {
        "type": "object", "required": ["value"], "properties": {"value": {"type": "string"}}}}}},
        "responses": {"204": {"description": "stored (encrypted)"}}});
    let deleted = json!({"responses": {"204": {"description": "deleted"}}});
    let range = json!({"parameters": [
        {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0}},
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 0}}]});
    use Auth::*;
    vec![
        ("get", "/api/v1/openapi.json", "meta", Public, "This document", json!({})),
        ("get", "/api/v1/projects", "projects", Admin, "List projects", json!({})),
        ("get", "/api/v1/projects/{project}", "projects", Admin, "A project (slug with `%2F`, or ID)", json!({})),
        (
            "patch",
            "/api/v1/projects/{project}",
            "projects",
            Admin,
            "Change the project's options (absent fields stay); answers the project",
            json!({"requestBody": {"required": true, "content": {"application/json": {"schema": {
                "type": "object", "additionalProperties": false, "properties": {
                    "auto_cancel_redundant": {"type": "boolean", "description":
                        "a new pipeline on a branch other than the default cancels the branch's older ones"},
                    "max_concurrent_jobs": {"type": "integer", "minimum": 1, "nullable": true, "description":
                        "at most this many of the project's jobs run at once; null: no limit"}}}}}}}),
        ),
        (
            "get",
            "/api/v1/projects/{project}/schedules",
            "schedules",
            Admin,
            "The project's schedules (cron, UTC) with their next tick",
            json!({}),
        ),
        (
            "post",
            "/api/v1/projects/{project}/schedules",
            "schedules",
            Admin,
            "Add a schedule",
            json!({"requestBody": {"required": true, "content": {"application/json": {"schema": schedule_schema(true)}}},
                "responses": {"201": {"description": "the schedule"}, "409": {"$ref": "#/components/responses/Problem"}}}),
        ),
        ("get", "/api/v1/projects/{project}/schedules/{name}", "schedules", Admin, "One schedule", json!({})),
        (
            "patch",
            "/api/v1/projects/{project}/schedules/{name}",
            "schedules",
            Admin,
            "Change a schedule's cron, branch or workflow (absent fields stay; `workflow: null` runs every workflow)",
            json!({"requestBody": {"required": true, "content": {"application/json": {"schema": schedule_schema(false)}}}}),
        ),
        (
            "delete",
            "/api/v1/projects/{project}/schedules/{name}",
            "schedules",
            Admin,
            "Delete a schedule",
            deleted.clone(),
        ),
        (
            "get",
            "/api/v1/runners",
            "runners",
            Admin,
            "Registered runners: labels, resource classes, last contact, online, the jobs they hold",
            json!({}),
        ),
        (
            "get",
            "/api/v1/projects/{project}/pipelines",
            "pipelines",
            Admin,
            "A page of the project's pipelines, newest first; `next_before` starts the next page",
            json!({"parameters": [
                {"name": "before", "in": "query", "schema": {"type": "integer", "minimum": 1}},
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100}}]}),
        ),
        ("get", "/api/v1/projects/{project}/env-vars", "env-vars", Admin, "Variable names and masked hints", json!({})),
        ("put", "/api/v1/projects/{project}/env-vars/{name}", "env-vars", Admin, "Set a variable", value_body.clone()),
        (
            "delete",
            "/api/v1/projects/{project}/env-vars/{name}",
            "env-vars",
            Admin,
            "Delete a variable",
            deleted.clone(),
        ),
        ("get", "/api/v1/pipelines/{pipeline_id}", "pipelines", Admin, "A pipeline with workflows and jobs", json!({})),
        (
            "post",
            "/api/v1/pipelines/{pipeline_id}/rerun",
            "pipelines",
            Admin,
            "Rerun its workflows",
            scope_body.clone(),
        ),
        ("post", "/api/v1/workflows/{workflow_id}/rerun", "pipelines", Admin, "Rerun a finished workflow", scope_body),
        ("get", "/api/v1/jobs/{job_id}", "jobs", Admin, "A job with its steps and test result counts", json!({})),
        ("post", "/api/v1/jobs/{job_id}/approve", "jobs", Admin, "Approve an approval job on hold", json!({})),
        ("post", "/api/v1/jobs/{job_id}/cancel", "jobs", Admin, "Cancel a job", json!({})),
        (
            "get",
            "/api/v1/jobs/{job_id}/steps/{step}/log",
            "logs",
            Admin,
            "Bytes of a step's log (headers x-log-offset, x-log-total-bytes, x-log-complete)",
            json!({"parameters": range["parameters"], "responses": {"200": {"description": "the bytes",
                "content": {"text/plain": {"schema": {"type": "string"}}}}}}),
        ),
        (
            "get",
            "/api/v1/jobs/{job_id}/steps/{step}/log/follow",
            "logs",
            Admin,
            "A step's log as server-sent events (`log`, then `end` when the step ends)",
            json!({"parameters": [range["parameters"][0]], "responses": {"200": {"description": "the events",
                "content": {"text/event-stream": {"schema": {"type": "string"}}}}}}),
        ),
        ("get", "/api/v1/jobs/{job_id}/artifacts", "artifacts", Admin, "The current attempt's artifacts", json!({})),
        (
            "get",
            "/api/v1/jobs/{job_id}/artifacts/{path}",
            "artifacts",
            Admin,
            "Download an artifact",
            json!({"responses": {"200": {"description": "the bytes",
                "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}}),
        ),
        ("get", "/api/v1/contexts", "contexts", Admin, "List contexts", json!({})),
        (
            "post",
            "/api/v1/contexts",
            "contexts",
            Admin,
            "Create a context",
            json!({"requestBody": {"required": true, "content": {"application/json": {"schema": {
                "type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}}}},
                "responses": {"201": {"description": "created"}, "409": {"$ref": "#/components/responses/Problem"}}}),
        ),
        (
            "delete",
            "/api/v1/contexts/{context}",
            "contexts",
            Admin,
            "Delete a context and its variables",
            deleted.clone(),
        ),
        ("get", "/api/v1/contexts/{context}/env-vars", "contexts", Admin, "Variable names and masked hints", json!({})),
        ("put", "/api/v1/contexts/{context}/env-vars/{name}", "contexts", Admin, "Set a variable", value_body),
        ("delete", "/api/v1/contexts/{context}/env-vars/{name}", "contexts", Admin, "Delete a variable", deleted),
        (
            "post",
            "/api/v1/runners/register",
            "runner protocol",
            Public,
            "Register with a registration token",
            json!({}),
        ),
        ("post", "/api/v1/runners/lease", "runner protocol", Runner, "Long-poll for a job (≤ 30 s)", json!({})),
        ("post", "/api/v1/jobs/{job_id}/heartbeat", "runner protocol", Runner, "Extend the lease", json!({})),
        ("post", "/api/v1/jobs/{job_id}/events", "runner protocol", Runner, "Step events and log chunks", json!({})),
        ("post", "/api/v1/jobs/{job_id}/test-results", "runner protocol", Runner, "Test results", json!({})),
        ("put", "/api/v1/jobs/{job_id}/artifacts/{path}", "runner protocol", Runner, "Upload an artifact", json!({})),
        ("put", "/api/v1/jobs/{job_id}/workspace", "runner protocol", Runner, "Persist a workspace layer", json!({})),
        ("get", "/api/v1/jobs/{job_id}/workspace", "runner protocol", Runner, "Layers to attach", json!({})),
        ("get", "/api/v1/workspace-layers/{layer_id}", "runner protocol", Runner, "A layer's bytes", json!({})),
        ("post", "/api/v1/jobs/{job_id}/complete", "runner protocol", Runner, "The job's result", json!({})),
        ("post", "/webhooks/github", "webhooks", Signature, "A GitHub webhook delivery", json!({})),
    ]
}

/// A schedule's body: `POST` requires `cron` and `branch` and may name it; `PATCH` changes any but the name.
fn schedule_schema(new: bool) -> Value {
    let mut schema = json!({"type": "object", "additionalProperties": false, "properties": {
        "cron": {"type": "string", "description": "CircleCI's 5 fields, UTC (`0 3 * * *`)"},
        "branch": {"type": "string"},
        "workflow": {"type": "string", "nullable": true, "description": "only this workflow; null: every one"}}});
    if new {
        schema["required"] = json!(["cron", "branch"]);
        schema["properties"]["name"] = json!({"type": "string", "description": "default: cron, branch, workflow"});
    }
    schema
}

/// The `{name}` parameters of a path.
fn path_parameters(path: &str) -> Vec<Value> {
    path.split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect()
}

/// The whole document.
pub fn document() -> Value {
    let mut paths = serde_json::Map::new();
    for (method, path, tag, auth, summary, extra) in operations() {
        let mut op = json!({
            "tags": [tag],
            "summary": summary,
            "responses": {
                "200": {"description": "success"},
                "400": {"$ref": "#/components/responses/Problem"},
                "401": {"$ref": "#/components/responses/Problem"},
                "403": {"$ref": "#/components/responses/Problem"},
                "404": {"$ref": "#/components/responses/Problem"},
                "405": {"$ref": "#/components/responses/Problem"},
            },
        });
        let security = match auth {
            Auth::Public => json!([]),
            Auth::Admin => json!([{"adminToken": []}]),
            Auth::Runner => json!([{"runnerToken": []}]),
            Auth::Signature => json!([{"githubSignature": []}]),
        };
        op["security"] = security;
        let mut parameters = path_parameters(path);
        if let Some(Value::Array(more)) = extra.get("parameters") {
            parameters.extend(more.iter().cloned());
        }
        if !parameters.is_empty() {
            op["parameters"] = Value::Array(parameters);
        }
        if let Some(body) = extra.get("requestBody") {
            op["requestBody"] = body.clone();
        }
        if let (Some(Value::Object(more)), Some(Value::Object(responses))) =
            (extra.get("responses"), op.get_mut("responses"))
        {
            for (code, response) in more {
                responses.insert(code.clone(), response.clone());
            }
        }
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        entry[method] = op;
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Drydock coordinator API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Projects, pipelines, jobs, logs, artifacts, variables and contexts for people and \
                tools (admin token: `coordinator token create --admin`); the runner protocol \
                (docs/runner-protocol.md); GitHub webhooks. Errors are JSON problems `{\"error\", \"message\"}`.",
        },
        "paths": Value::Object(paths),
        "components": {
            "securitySchemes": {
                "adminToken": {"type": "http", "scheme": "bearer", "description": "an admin token (`dra_…`)"},
                "runnerToken": {"type": "http", "scheme": "bearer", "description": "a runner's own token (`drt_…`)"},
                "githubSignature": {"type": "apiKey", "in": "header", "name": "X-Hub-Signature-256"},
            },
            "responses": {
                "Problem": {"description": "a problem", "content": {"application/json": {"schema": {
                    "$ref": "#/components/schemas/Problem"}}}},
            },
            "schemas": {
                "Problem": {"type": "object", "required": ["error", "message"], "properties": {
                    "error": {"type": "string", "description": "a code: not_found, forbidden, bad_request, …"},
                    "message": {"type": "string", "description": "what went wrong and what to do"}}},
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    /// `(method, path)` of every `.route("PATH", method(…).method(…))` in `source`, with axum's `{*rest}`
    /// written as OpenAPI's `{rest}`.
    fn routes_in(source: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (i, _) in source.match_indices(".route(\"") {
            let rest = &source[i + 8..];
            let Some(end) = rest.find('"') else { continue };
            let path = rest[..end].replace("{*", "{");
            // The method routers run to the end of the `.route(…)` call: the next `.route(` or the end of the
            // builder chain.
            let tail = &rest[end..];
            let stop = [tail.find(".route("), tail.find("\n}")].into_iter().flatten().min().unwrap_or(tail.len());
            for method in ["get", "post", "put", "delete", "patch"] {
                let call = format!("{method}(");
                let found = tail[..stop]
                    .match_indices(&call)
                    .any(|(j, _)| j == 0 || !tail[..j].ends_with(|c: char| c.is_alphanumeric() || c == '_'));
                if found {
                    out.push((method.to_string(), path.clone()));
                }
            }
        }
        out
    }

    #[test]
    fn every_route_of_the_router_is_in_the_document_and_nothing_else() {
        let sources = [
            include_str!("runners.rs"),
            include_str!("jobs.rs"),
            include_str!("pipelines.rs"),
            include_str!("projects.rs"),
            include_str!("contexts.rs"),
            include_str!("logs.rs"),
            include_str!("schedules.rs"),
            include_str!("runner_list.rs"),
            include_str!("webhooks.rs"),
            include_str!("openapi.rs"),
        ];
        // This file's own test text mentions `.route("` too: only its `routes()` counts.
        let routed: BTreeSet<(String, String)> =
            sources.iter().map(|s| s.split("#[cfg(test)]").next().unwrap_or(s)).flat_map(routes_in).collect();
        assert!(routed.len() > 30, "the route scan found too few routes: {routed:?}");
        let doc = super::document();
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            for method in item.as_object().into_iter().flatten().map(|(m, _)| m) {
                documented.insert((method.clone(), path.clone()));
            }
        }
        let missing: Vec<_> = routed.difference(&documented).collect();
        let stale: Vec<_> = documented.difference(&routed).collect();
        assert!(missing.is_empty(), "routes missing from the OpenAPI document: {missing:?}");
        assert!(stale.is_empty(), "documented routes the router does not have: {stale:?}");
    }

    #[test]
    fn path_parameters_are_declared() {
        let doc = super::document();
        let op = &doc["paths"]["/api/v1/jobs/{job_id}/steps/{step}/log"]["get"];
        let names: Vec<&str> =
            op["parameters"].as_array().into_iter().flatten().filter_map(|p| p["name"].as_str()).collect();
        assert_eq!(names, ["job_id", "step", "offset", "limit"]);
    }
}
