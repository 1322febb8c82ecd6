//! Output helpers shared by the verbs: docker's column tables and the small subset of Go templates that
//! `--format` users reach for most (`{{.Id}}`, `{{.State.Status}}`, `{{json .Config}}`).

use std::io::Write;

/// Prints rows as docker's tabwriter does: columns padded to the widest cell plus three spaces.
pub fn print(header: &[&str], rows: &[Vec<String>]) -> std::io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let mut out = std::io::stdout().lock();
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}   ", w = widths[i]));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

/// Renders `{{.A.B}}`, `{{json .A}}` and `{{json .}}` placeholders against `value`; other text is copied.
pub fn render_template(template: &str, value: &serde_json::Value) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let expr = rest[start + 2..start + end].trim();
        let (json, path) = match expr.strip_prefix("json ") {
            Some(p) => (true, p.trim()),
            None => (false, expr),
        };
        let mut v = value;
        for key in path.trim_start_matches('.').split('.').filter(|k| !k.is_empty()) {
            v = v.get(key).unwrap_or(&serde_json::Value::Null);
        }
        let rendered = match (json, v) {
            (true, v) => v.to_string(),
            (false, serde_json::Value::String(s)) => s.clone(),
            (false, serde_json::Value::Null) => "<no value>".to_owned(),
            (false, v) => v.to_string(),
        };
        out.push_str(&rendered);
        rest = &rest[start + end + 2..];
    }
    out.push_str(rest);
    out
}
