//! A JSON Schema (draft 7) of the configuration this crate accepts, built from the reader's own key tables
//! ([`crate::read`]'s `*_KEYS`), so editors can complete and check `.circleci/config.yml` with the keys the
//! validator knows — `runner config schema` prints it.
//!
//! Decision: build it from the key tables rather than derive it (schemars) from [`crate::model`]. The model is
//! what the reader makes of the YAML (positions, located YAML bodies for later substitution, resolved orbs,
//! shorthands folded into one form), not the YAML's own shape, so a derived schema would describe the wrong
//! thing. What the schema covers: every section and mapping the reader checks keys of (top level, orbs,
//! executors, commands, parameters, jobs, docker images, every built-in step and its arguments, workflows,
//! workflow jobs, filters, matrices, triggers), with `additionalProperties: false` wherever the reader reports an
//! unknown key (the top level excepted: other keys there hold anchors), and the shapes (map, list, string-or-map
//! step) around them. What it leaves to the validator: misspelt top-level sections,
//! value types inside those mappings (any of them may be a `<< parameters.x >>` template), references between
//! names, and everything processing checks.

use serde_json::{json, Map, Value};

use crate::read::{
    COMMAND_KEYS, DOCKER_KEYS, ENV_KEYS, EXECUTOR_KEYS, FILTERS_KEYS, FILTER_KEYS, JOB_KEYS, MATRIX_KEYS, ORB_KEYS,
    PARAMETER_KEYS, RUN_KEYS, SCHEDULE_KEYS, STEP_KEYS, TOP_KEYS, TRIGGER_KEYS, WORKFLOW_KEYS,
};

/// A job's or executor's keys: the environment ones (`docker`, `machine`, …) and `keys`.
fn with_env(keys: &[&'static str]) -> Vec<&'static str> {
    ENV_KEYS.iter().chain(keys).copied().collect()
}

/// The schema as JSON.
pub fn schema() -> Value {
    let mut defs = Map::new();
    let refer = |name: &str| json!({ "$ref": format!("#/definitions/{name}") });
    let map_of = |v: Value| json!({ "type": "object", "additionalProperties": v });
    let nullable_map_of = |v: Value| json!({ "type": ["object", "null"], "additionalProperties": v });

    // Keys whose values have a shape of their own; the rest take any value (templates included).
    let shaped = |keys: &[&str], shapes: &[(&str, Value)]| -> Value {
        let properties: Map<String, Value> = keys
            .iter()
            .map(|k| {
                let shape = shapes.iter().find(|(name, _)| name == k).map_or(json!({}), |(_, v)| v.clone());
                (k.to_string(), shape)
            })
            .collect();
        json!({ "type": "object", "properties": properties, "additionalProperties": false })
    };
    let env_shapes = || {
        vec![
            ("docker", json!({ "type": "array", "items": refer("docker_image") })),
            ("parameters", nullable_map_of(refer("parameter"))),
            ("steps", refer("steps")),
        ]
    };

    defs.insert("parameter".into(), shaped(PARAMETER_KEYS, &[]));
    defs.insert("docker_image".into(), shaped(DOCKER_KEYS, &[]));
    defs.insert("executor".into(), shaped(&with_env(EXECUTOR_KEYS), &env_shapes()));
    defs.insert("command".into(), shaped(COMMAND_KEYS, &env_shapes()));
    defs.insert("job".into(), shaped(&with_env(JOB_KEYS), &env_shapes()));

    // A step: a name (`checkout`, a command, a `<< parameters.steps >>` template) or a one-key map. Built-in
    // steps take their own arguments; commands (`greet`, `orb/command`) take whatever parameters they declare.
    let mut builtins = Map::new();
    let run = json!({ "oneOf": [{ "type": "string" }, shaped(RUN_KEYS, &[])] });
    builtins.insert("run".into(), run.clone());
    builtins.insert("deploy".into(), run);
    for (name, keys) in STEP_KEYS {
        let mut args = shaped(keys, &[("steps", refer("steps"))]);
        args["type"] = json!(["object", "null"]);
        builtins.insert(name.to_string(), args);
    }
    defs.insert(
        "step".into(),
        json!({ "oneOf": [
            { "type": "string" },
            { "type": "object", "minProperties": 1, "maxProperties": 1, "properties": builtins },
        ] }),
    );
    defs.insert("steps".into(), json!({ "type": ["array", "null"], "items": refer("step") }));

    defs.insert("filter".into(), shaped(FILTER_KEYS, &[]));
    defs.insert("filters".into(), shaped(FILTERS_KEYS, &[("branches", refer("filter")), ("tags", refer("filter"))]));
    defs.insert("matrix".into(), shaped(MATRIX_KEYS, &[("parameters", json!({ "type": "object" }))]));
    // A workflow job: a name, or a one-key map of the job's name to its settings and arguments. The settings'
    // own shapes are checked; other keys are the job's parameters.
    let workflow_job_settings = json!({
        "type": ["object", "null"],
        "properties": {
            "filters": refer("filters"),
            "matrix": refer("matrix"),
            "pre-steps": refer("steps"),
            "post-steps": refer("steps"),
        },
    });
    defs.insert(
        "workflow_job".into(),
        json!({ "oneOf": [
            { "type": "string" },
            { "type": "object", "minProperties": 1, "maxProperties": 1, "additionalProperties": workflow_job_settings },
        ] }),
    );
    let schedule = shaped(SCHEDULE_KEYS, &[("filters", refer("filters"))]);
    let trigger = shaped(TRIGGER_KEYS, &[("schedule", schedule)]);
    defs.insert(
        "workflow".into(),
        shaped(
            WORKFLOW_KEYS,
            &[
                ("jobs", json!({ "type": "array", "items": refer("workflow_job") })),
                ("triggers", json!({ "type": "array", "items": trigger })),
            ],
        ),
    );

    let sections = |orb: bool| -> Vec<(&'static str, Value)> {
        let mut v = vec![
            ("executors", nullable_map_of(refer("executor"))),
            ("commands", nullable_map_of(refer("command"))),
            ("jobs", nullable_map_of(refer("job"))),
            ("orbs", nullable_map_of(json!({ "oneOf": [{ "type": "string" }, refer("orb")] }))),
            ("parameters", nullable_map_of(refer("parameter"))),
        ];
        if !orb {
            v.push(("setup", json!({ "type": "boolean" })));
            v.push(("version", json!({ "type": ["number", "string"] })));
            // 2.0 configurations write `version: 2` among the workflows.
            v.push(("workflows", map_of(json!({ "oneOf": [refer("workflow"), { "type": ["number", "string"] }] }))));
        }
        v
    };
    defs.insert("orb".into(), shaped(ORB_KEYS, &sections(true)));

    let mut root = shaped(TOP_KEYS, &sections(false));
    // Other top-level keys hold anchors (`defaults: &defaults`, `references:`); the validator only reports
    // those that look like a misspelt section, which a schema cannot say.
    root["additionalProperties"] = json!(true);
    let root = root.as_object_mut().map(std::mem::take).unwrap_or_default();
    let mut out = Map::new();
    out.insert("$schema".into(), json!("http://json-schema.org/draft-07/schema#"));
    out.insert("title".into(), json!("Drydock pipeline configuration (CircleCI 2.0/2.1)"));
    out.insert("required".into(), json!(["version"]));
    out.extend(root);
    out.insert("definitions".into(), Value::Object(defs));
    Value::Object(out)
}
