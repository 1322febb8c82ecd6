//! Rendering: the embedded tera templates (autoescape on for every `.html` template), the layout's shared
//! context, and the small formatters pages use (durations, UTC times).

use std::sync::LazyLock;

use serde::Serialize;
use tera::{Context, Tera};

use crate::model::{Status, UnixMillis, User};

/// Every template, embedded in the binary. Names end in `.html`, so tera autoescapes all of them.
const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../templates/base.html")),
    ("error.html", include_str!("../templates/error.html")),
    ("sign_in.html", include_str!("../templates/sign_in.html")),
    ("projects.html", include_str!("../templates/projects.html")),
    ("project.html", include_str!("../templates/project.html")),
    ("pipeline.html", include_str!("../templates/pipeline.html")),
    ("pipeline_content.html", include_str!("../templates/pipeline_content.html")),
    ("workflow_graph.html", include_str!("../templates/workflow_graph.html")),
    ("job.html", include_str!("../templates/job.html")),
    ("log_lines.html", include_str!("../templates/log_lines.html")),
    ("log_page.html", include_str!("../templates/log_page.html")),
    ("settings.html", include_str!("../templates/settings.html")),
    ("runners.html", include_str!("../templates/runners.html")),
];

static TERA: LazyLock<Result<Tera, String>> = LazyLock::new(|| {
    let mut tera = Tera::default();
    tera.autoescape_on(vec![".html"]);
    tera.add_raw_templates(TEMPLATES.iter().copied()).map_err(|e| error_chain(&e))?;
    tera.register_filter("time", time_filter);
    tera.register_filter("segment", segment_filter);
    tera.register_filter("first_line", first_line_filter);
    Ok(tera)
});

/// A template failed to render (a bug in a template or its context, never in the data).
#[derive(Debug, thiserror::Error)]
#[error("rendering the template {template} failed: {message}")]
pub struct RenderError {
    pub template: String,
    pub message: String,
}

/// Renders `template` with `context`.
pub fn render(template: &str, context: &Context) -> Result<String, RenderError> {
    let tera = TERA.as_ref().map_err(|message| RenderError { template: template.into(), message: message.clone() })?;
    tera.render(template, context).map_err(|e| RenderError { template: template.into(), message: error_chain(&e) })
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}

/// What the layout needs on every page.
#[derive(Debug, Clone, Serialize)]
pub struct Layout {
    /// The `<title>` without the " — Drydock" suffix.
    pub title: String,
    /// `running`, `failed`, `success` or `idle`: the favicon and the title's mark.
    pub favicon: &'static str,
    pub user: Option<User>,
    /// The session's CSRF token for the forms of the page (and the sign-out button).
    pub csrf: String,
    /// Which top-level section to highlight.
    pub section: &'static str,
    /// Refresh the page after this many seconds (pages of things still running; the script fetches the page and
    /// swaps its content in place, and not while a live log is open).
    pub refresh_s: Option<u32>,
    /// Whether the signed-in user may change things (an admin): pages leave out forms a viewer cannot use.
    pub can_change: bool,
}

impl Layout {
    /// For fragments rendered without the layout (live log lines).
    pub fn empty() -> Layout {
        Layout {
            title: String::new(),
            favicon: "idle",
            user: None,
            csrf: String::new(),
            section: "",
            refresh_s: None,
            can_change: false,
        }
    }

    /// A page about something with a status: the title says it first ("● failed — acme #12").
    pub fn with_status(mut self, status: Status) -> Layout {
        self.favicon = status.favicon();
        if !status.is_finished() {
            self.refresh_s = Some(RUNNING_REFRESH_S);
        }
        if matches!(self.favicon, "running" | "failed") {
            self.title = format!("● {} — {}", status.label(), self.title);
        }
        self
    }
}

/// How often a page of something running refreshes itself.
pub const RUNNING_REFRESH_S: u32 = 10;

/// A context holding `layout` under `layout` and each field of `page` at the top level.
pub fn context(layout: &Layout, page: &impl Serialize) -> Result<Context, RenderError> {
    let mut context = Context::from_serialize(page)
        .map_err(|e| RenderError { template: "(context)".into(), message: error_chain(&e) })?;
    context.insert("layout", layout);
    Ok(context)
}

/// "4s", "1m 05s", "2h 03m".
pub fn duration(millis: u64) -> String {
    let secs = millis / 1000;
    if secs < 60 {
        if millis < 1000 {
            return format!("{}ms", millis);
        }
        return format!("{secs}s");
    }
    let (mins, secs) = (secs / 60, secs % 60);
    if mins < 60 {
        return format!("{mins}m {secs:02}s");
    }
    format!("{}h {:02}m", mins / 60, mins % 60)
}

/// `2026-12-01 01:55:56 UTC`.
pub fn time(millis: UnixMillis) -> String {
    match i64::try_from(millis).ok().and_then(chrono::DateTime::from_timestamp_millis) {
        Some(t) => t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        None => "?".to_string(),
    }
}

fn time_filter(value: &tera::Value, _: &std::collections::HashMap<String, tera::Value>) -> tera::Result<tera::Value> {
    match value.as_u64() {
        Some(millis) => Ok(tera::Value::String(time(millis))),
        None if value.is_null() => Ok(tera::Value::String(String::new())),
        None => Err(tera::Error::msg(format!("the time filter needs Unix milliseconds, got {value}"))),
    }
}

fn segment_filter(
    value: &tera::Value,
    _: &std::collections::HashMap<String, tera::Value>,
) -> tera::Result<tera::Value> {
    let text = match value {
        tera::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    Ok(tera::Value::String(encode_segment(&text)))
}

fn first_line_filter(
    value: &tera::Value,
    _: &std::collections::HashMap<String, tera::Value>,
) -> tera::Result<tera::Value> {
    let text = value.as_str().unwrap_or_default();
    Ok(tera::Value::String(text.lines().next().unwrap_or_default().to_string()))
}

/// Percent-encodes a path segment (everything but unreserved characters).
pub fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `text` cut to `max` characters, with "…" when cut.
pub fn truncate_chars(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_parses() {
        if let Err(message) = TERA.as_ref() {
            panic!("{message}");
        }
    }

    #[test]
    fn durations_and_times_read_well() {
        assert_eq!(duration(450), "450ms");
        assert_eq!(duration(4_200), "4s");
        assert_eq!(duration(65_000), "1m 05s");
        assert_eq!(duration(7_380_000), "2h 03m");
        assert_eq!(time(1_795_000_000_000), "2026-11-18 11:06:40 UTC");
        assert_eq!(truncate_chars("abcdef", 4), "abc…");
        assert_eq!(encode_segment("feat/a b?c=d#é"), "feat%2Fa%20b%3Fc%3Dd%23%C3%A9");
    }
}
