//! `<< … >>` templates: substitution of `parameters.x` (a job's, command's or executor's arguments),
//! `pipeline.parameters.x` and pipeline values such as `pipeline.git.branch`, and `matrix.x` into located YAML.
//! CircleCI expands by substituting text and reading the result again; so does [`crate::process()`], with this.
//!
//! A string that is exactly one template takes the value itself (a boolean stays a boolean, a `steps` list
//! stays a list, an executor map stays a map); a template inside a longer string takes the value's text. A list
//! item that becomes a list (`- << parameters.steps >>`) is spliced into the enclosing list. Only
//! `<< NAME >>` with a NAME of letters, digits, `_`, `-` and `.` starting with `parameters.`, `pipeline.` or
//! `matrix.` is a template: a heredoc such as `cat <<EOF >> out` is left alone. Scopes that are not bound (no
//! `parameters` while a workflow is substituted) are left as written, to be substituted later.

use std::collections::BTreeMap;

use crate::diagnostic::{item_path, suggest, Report};
use crate::yaml::{Pos, Yaml, YamlValue};

/// Pipeline values CircleCI defines (`<< pipeline.NAME >>`); one not given to the processor is empty.
pub const PIPELINE_VALUES: &[&str] = &[
    "id",
    "number",
    "project.git_url",
    "project.type",
    "git.tag",
    "git.branch",
    "git.revision",
    "git.base_revision",
    "trigger_source",
    "schedule.name",
    "schedule.id",
    "in_setup",
];

/// Values bound for one substitution.
#[derive(Debug, Clone, Copy)]
pub struct Bindings<'a> {
    /// `parameters.*`; `None` leaves those templates as written.
    pub parameters: Option<&'a BTreeMap<String, Yaml>>,
    /// `matrix.*`; `None` leaves those templates as written.
    pub matrix: Option<&'a BTreeMap<String, Yaml>>,
    /// `pipeline.parameters.*` (every declared one has a value by now).
    pub pipeline_parameters: &'a BTreeMap<String, Yaml>,
    /// `pipeline.*` values by name (`git.branch`); names of [`PIPELINE_VALUES`] missing here are empty.
    pub pipeline_values: &'a BTreeMap<String, String>,
}

enum Lookup {
    /// Not a template, or a scope not bound here: keep the text.
    Keep,
    Value(Yaml),
    /// Reported already; keep the text.
    Unknown,
}

impl Bindings<'_> {
    fn lookup(&self, name: &str, pos: Pos, path: &str, report: &mut Report) -> Lookup {
        let found = |map: &BTreeMap<String, Yaml>, key: &str, what: &str, report: &mut Report| match map.get(key) {
            Some(v) => Lookup::Value(v.clone()),
            None => {
                report.push(
                    pos,
                    path,
                    format!("unknown {what} `{key}` in `<< {name} >>`"),
                    suggest(key, map.keys().map(String::as_str)),
                );
                Lookup::Unknown
            }
        };
        if let Some(key) = name.strip_prefix("parameters.") {
            return match self.parameters {
                Some(p) => found(p, key, "parameter", report),
                None => Lookup::Keep,
            };
        }
        if let Some(key) = name.strip_prefix("matrix.") {
            return match self.matrix {
                Some(m) => found(m, key, "matrix parameter", report),
                None => Lookup::Keep,
            };
        }
        if let Some(key) = name.strip_prefix("pipeline.parameters.") {
            return found(self.pipeline_parameters, key, "pipeline parameter", report);
        }
        if let Some(key) = name.strip_prefix("pipeline.") {
            if let Some(v) = self.pipeline_values.get(key) {
                // `pipeline.number` is an integer in CircleCI (`equal: [ 1, << pipeline.number >> ]`, an integer
                // parameter given it); every other pipeline value is a string.
                let value = match v.parse::<i64>() {
                    Ok(n) if key == "number" => YamlValue::Int(n),
                    _ => YamlValue::Str(v.clone()),
                };
                return Lookup::Value(Yaml::at(pos, value));
            }
            if PIPELINE_VALUES.contains(&key) || key.starts_with("trigger_parameters.") {
                return Lookup::Value(Yaml::at(pos, YamlValue::Str(String::new())));
            }
            report.push(
                pos,
                path,
                format!("unknown pipeline value `pipeline.{key}`"),
                suggest(key, PIPELINE_VALUES.iter().copied()).map(|s| format!("pipeline.{s}")),
            );
            return Lookup::Unknown;
        }
        Lookup::Keep
    }

    /// `v` with every bound template replaced. `path` names `v` in messages.
    pub fn substitute(&self, v: &Yaml, path: &str, report: &mut Report) -> Yaml {
        match &v.value {
            YamlValue::Str(s) if s.contains("<<") => self.string(s, v.pos, path, report),
            YamlValue::Seq(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    if !has_template(item) {
                        out.push(item.clone());
                        continue;
                    }
                    let ip = item_path(path, i);
                    let whole = item.as_str().is_some_and(|s| whole_template(s).is_some());
                    let new = self.substitute(item, &ip, report);
                    match new.value {
                        YamlValue::Seq(inner) if whole => out.extend(inner),
                        _ => out.push(new),
                    }
                }
                Yaml::at(v.pos, YamlValue::Seq(out))
            }
            YamlValue::Map(entries) => {
                let entries = entries
                    .iter()
                    .map(|(pos, key, value)| {
                        if !key.contains("<<") && !has_template(value) {
                            return (*pos, key.clone(), value.clone());
                        }
                        let kp = crate::diagnostic::join(path, key);
                        let key = if key.contains("<<") {
                            let k = self.string(key, *pos, &kp, report);
                            k.scalar_text().unwrap_or_else(|| key.clone())
                        } else {
                            key.clone()
                        };
                        (*pos, key, self.substitute(value, &kp, report))
                    })
                    .collect();
                Yaml::at(v.pos, YamlValue::Map(entries))
            }
            _ => v.clone(),
        }
    }

    fn string(&self, s: &str, pos: Pos, path: &str, report: &mut Report) -> Yaml {
        if let Some(name) = whole_template(s) {
            return match self.lookup(name, pos, path, report) {
                // The value keeps the place it was written (an argument, a default), or takes the template's.
                Lookup::Value(v) => Yaml { pos: if v.pos == Pos::default() { pos } else { v.pos }, ..v },
                Lookup::Keep | Lookup::Unknown => Yaml::at(pos, YamlValue::Str(s.to_string())),
            };
        }
        let sectioned;
        let s = if s.contains("<<#") || s.contains("<<^") {
            sectioned = self.sections(s, pos, path, report);
            sectioned.as_str()
        } else {
            s
        };
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while let Some(start) = rest.find("<<") {
            out.push_str(&rest[..start]);
            let after = &rest[start..];
            let Some((name, len)) = template_at(after) else {
                out.push_str("<<");
                rest = &after[2..];
                continue;
            };
            match self.lookup(name, pos, path, report) {
                Lookup::Value(v) => match &v.value {
                    YamlValue::Null => {}
                    YamlValue::Seq(_) | YamlValue::Map(_) => {
                        report.error(
                            pos,
                            path,
                            format!(
                                "`<< {name} >>` is {} and cannot be part of a string: use it as the whole value",
                                v.kind()
                            ),
                        );
                        out.push_str(&after[..len]);
                    }
                    _ => out.push_str(&v.scalar_text().unwrap_or_default()),
                },
                Lookup::Keep | Lookup::Unknown => out.push_str(&after[..len]),
            }
            rest = &after[len..];
        }
        out.push_str(rest);
        Yaml::at(pos, YamlValue::Str(out))
    }
}

impl Bindings<'_> {
    /// `s` with its `<<# NAME >>…<</ NAME >>` and `<<^ NAME >>…<</ NAME >>` sections kept or removed (nested ones
    /// too). A section of an unbound scope is kept as written; one without its closing tag is an error.
    fn sections(&self, s: &str, pos: Pos, path: &str, report: &mut Report) -> String {
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while let Some(start) = rest.find("<<#").into_iter().chain(rest.find("<<^")).min() {
            out.push_str(&rest[..start]);
            let after = &rest[start..];
            let inverted = after.as_bytes().get(2) == Some(&b'^');
            let Some((name, open_len)) =
                template_at(&format!("<<{}", &after[3..])).map(|(n, l)| (n.to_string(), l + 1))
            else {
                out.push_str(&after[..3]);
                rest = &after[3..];
                continue;
            };
            let body_and_rest = &after[open_len..];
            let Some((body, close_len)) = closing(body_and_rest, &name) else {
                report.error(pos, path, format!("`<<{} {name} >>` has no closing `<</ {name} >>`", &after[2..3]));
                out.push_str(after);
                return out;
            };
            let keep = match self.lookup(&name, pos, path, report) {
                Lookup::Value(v) => truthy(&v) != inverted,
                Lookup::Keep | Lookup::Unknown => {
                    out.push_str(&after[..open_len + body.len() + close_len]);
                    rest = &body_and_rest[body.len() + close_len..];
                    continue;
                }
            };
            if keep {
                out.push_str(&self.sections(body, pos, path, report));
            }
            rest = &body_and_rest[body.len() + close_len..];
        }
        out.push_str(rest);
        out
    }
}

/// Whether any string (or key) in `v` may hold a template: the rest is copied without building key paths.
fn has_template(v: &Yaml) -> bool {
    match &v.value {
        YamlValue::Str(s) => s.contains("<<"),
        YamlValue::Seq(items) => items.iter().any(has_template),
        YamlValue::Map(entries) => entries.iter().any(|(_, k, v)| k.contains("<<") || has_template(v)),
        _ => false,
    }
}

/// The body of a section up to its `<</ NAME >>` (same-name sections nest) and the closing tag's length.
fn closing<'s>(s: &'s str, name: &str) -> Option<(&'s str, usize)> {
    let mut depth = 0usize;
    let mut at = 0;
    while let Some(i) = s[at..].find("<<") {
        let i = at + i;
        let tag = &s[i..];
        let kind = tag.as_bytes().get(2).copied();
        let inner_end = tag.find(">>")?;
        let inner = tag.get(3..inner_end).map_or("", str::trim);
        match kind {
            Some(b'#' | b'^') if inner == name => depth += 1,
            Some(b'/') if inner == name => {
                if depth == 0 {
                    return Some((&s[..i], inner_end + 2));
                }
                depth -= 1;
            }
            _ => {}
        }
        at = i + 2;
    }
    None
}

/// CircleCI's truthiness: everything but false, null, 0, NaN, the empty string and empty lists or maps.
pub fn truthy(v: &Yaml) -> bool {
    match &v.value {
        YamlValue::Null => false,
        YamlValue::Bool(b) => *b,
        YamlValue::Int(i) => *i != 0,
        YamlValue::Float(f) => *f != 0.0 && !f.is_nan(),
        YamlValue::Str(s) => !s.is_empty(),
        YamlValue::Seq(s) => !s.is_empty(),
        YamlValue::Map(m) => !m.is_empty(),
    }
}

/// The NAME of `<< NAME >>` at the start of `s` and the template's length in bytes, if it is a template.
fn template_at(s: &str) -> Option<(&str, usize)> {
    let body = s.strip_prefix("<<")?;
    let end = body.find(">>")?;
    let name = body[..end].trim();
    let ok = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        && ["parameters.", "pipeline.", "matrix."].iter().any(|p| name.starts_with(p));
    ok.then_some((name, end + 4))
}

/// NAME when `s` is exactly `<< NAME >>` (surrounding spaces allowed).
pub fn whole_template(s: &str) -> Option<&str> {
    let t = s.trim();
    let (name, len) = template_at(t)?;
    (len == t.len()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Yaml {
        crate::yaml::parse(text).unwrap_or_else(|e| panic!("{}", e.message))
    }

    #[test]
    fn whole_values_keep_their_type_and_partial_ones_become_text() {
        let params: BTreeMap<String, Yaml> = [
            ("n".to_string(), Yaml::new(YamlValue::Int(3))),
            ("flag".to_string(), Yaml::new(YamlValue::Bool(true))),
            ("steps".to_string(), yaml("[checkout, {run: make}]")),
        ]
        .into_iter()
        .collect();
        let values = [("git.branch".to_string(), "main".to_string())].into_iter().collect();
        let b = Bindings {
            parameters: Some(&params),
            matrix: None,
            pipeline_parameters: &BTreeMap::new(),
            pipeline_values: &values,
        };
        let mut report = Report::new("t.yml");
        let doc = yaml(
            "a: << parameters.n >>\nb: 'x-<<parameters.n>>-<< pipeline.git.branch >>'\nc: << parameters.flag >>\n\
             steps: [checkout, << parameters.steps >>, {run: 'cat <<EOF >> out'}]\nm: << matrix.os >>\n",
        );
        let out = b.substitute(&doc, "", &mut report).to_json();
        assert!(report.is_empty(), "{:?}", report.items);
        assert_eq!(
            out,
            serde_json::json!({"a": 3, "b": "x-3-main", "c": true,
                "steps": ["checkout", "checkout", {"run": "make"}, {"run": "cat <<EOF >> out"}],
                "m": "<< matrix.os >>"})
        );
    }

    #[test]
    fn pipeline_number_is_an_integer_and_other_values_strings() {
        let values =
            [("number".to_string(), "118".to_string()), ("git.revision".to_string(), "0123".to_string())].into();
        let b = Bindings {
            parameters: None,
            matrix: None,
            pipeline_parameters: &BTreeMap::new(),
            pipeline_values: &values,
        };
        let mut report = Report::new("t.yml");
        let doc = yaml("n: << pipeline.number >>\nr: << pipeline.git.revision >>\ns: 'build-<< pipeline.number >>'\n");
        let out = b.substitute(&doc, "", &mut report).to_json();
        assert!(report.is_empty(), "{:?}", report.items);
        assert_eq!(out, serde_json::json!({"n": 118, "r": "0123", "s": "build-118"}));
    }

    #[test]
    fn sections_keep_or_drop_their_text() {
        let params: BTreeMap<String, Yaml> = [
            ("on".to_string(), Yaml::new(YamlValue::Bool(true))),
            ("off".to_string(), Yaml::new(YamlValue::Bool(false))),
            ("dir".to_string(), Yaml::new(YamlValue::Str("app".into()))),
        ]
        .into_iter()
        .collect();
        let b = Bindings {
            parameters: Some(&params),
            matrix: None,
            pipeline_parameters: &BTreeMap::new(),
            pipeline_values: &BTreeMap::new(),
        };
        let mut report = Report::new("t.yml");
        let doc = yaml(
            "a: 'npm ci<<# parameters.on >> --cache<<# parameters.dir >> --prefix << parameters.dir >><</ parameters.dir >><</ parameters.on >>'\n\
             b: 'x<<#parameters.off>> no<</parameters.off>><<^ parameters.off >> yes<</ parameters.off >>'\n\
             c: '<<# matrix.os >>kept<</ matrix.os >>'\n",
        );
        let out = b.substitute(&doc, "", &mut report).to_json();
        assert!(report.is_empty(), "{:?}", report.items);
        assert_eq!(
            out,
            serde_json::json!({"a": "npm ci --cache --prefix app", "b": "x yes", "c": "<<# matrix.os >>kept<</ matrix.os >>"})
        );
        b.substitute(&yaml("a: '<<# parameters.on >>open'"), "", &mut report);
        let got: Vec<String> = report.finish().0.iter().map(ToString::to_string).collect();
        assert_eq!(got, ["t.yml:1:4: a: `<<# parameters.on >>` has no closing `<</ parameters.on >>`"]);
    }

    #[test]
    fn unknown_names_are_located_with_a_suggestion() {
        let params = BTreeMap::from([("name".to_string(), Yaml::new(YamlValue::Str("x".into())))]);
        let b = Bindings {
            parameters: Some(&params),
            matrix: None,
            pipeline_parameters: &BTreeMap::new(),
            pipeline_values: &BTreeMap::new(),
        };
        let mut report = Report::new("t.yml");
        b.substitute(&yaml("run: echo << parameters.nme >> << pipeline.git.brnch >>"), "", &mut report);
        let got: Vec<String> = report.finish().0.iter().map(ToString::to_string).collect();
        assert_eq!(
            got,
            [
                "t.yml:1:6: run: unknown parameter `nme` in `<< parameters.nme >>` (did you mean `name`?)",
                "t.yml:1:6: run: unknown pipeline value `pipeline.git.brnch` (did you mean `pipeline.git.branch`?)"
            ]
        );
    }
}
