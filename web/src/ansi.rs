//! ANSI escape sequences in job logs → lines of styled spans, for the log viewer.
//!
//! Only SGR (`ESC [ … m`) survives, as CSS classes (`fg-1`, `bg-4`, `bold`…) that static/dashboard.css colours;
//! the strict CSP forbids inline styles, so 24-bit colours are dropped and 256-colour indexes keep only the 16
//! basic ones. Every other escape sequence and control character is removed. A carriage return inside a line
//! starts it over (progress bars show their last state). The text stays text: the template escapes it.

use serde::Serialize;

/// A log line's pieces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogLine {
    pub spans: Vec<Span>,
}

/// Text with one style; `class` is empty for unstyled text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Span {
    pub class: String,
    pub text: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Style {
    fg: Option<u8>,
    bg: Option<u8>,
    bold: bool,
    dim: bool,
    italic: bool,
    underline: bool,
}

impl Style {
    fn class(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        if let Some(fg) = self.fg {
            parts.push(format!("fg-{fg}"));
        }
        if let Some(bg) = self.bg {
            parts.push(format!("bg-{bg}"));
        }
        for (on, name) in [(self.bold, "bold"), (self.dim, "dim"), (self.italic, "italic"), (self.underline, "ul")] {
            if on {
                parts.push(name.to_string());
            }
        }
        parts.join(" ")
    }

    fn apply(&mut self, params: &str) {
        let codes: Vec<u16> = if params.is_empty() {
            vec![0]
        } else {
            // An unreadable parameter counts as 0 (reset), as terminals do.
            params.split([';', ':']).map(|p| p.parse().unwrap_or(0)).collect()
        };
        let mut i = 0;
        while i < codes.len() {
            match codes[i] {
                0 => *self = Style::default(),
                1 => self.bold = true,
                2 => self.dim = true,
                3 => self.italic = true,
                4 => self.underline = true,
                22 => {
                    self.bold = false;
                    self.dim = false
                }
                23 => self.italic = false,
                24 => self.underline = false,
                c @ 30..=37 => self.fg = Some((c - 30) as u8),
                39 => self.fg = None,
                c @ 40..=47 => self.bg = Some((c - 40) as u8),
                49 => self.bg = None,
                c @ 90..=97 => self.fg = Some((c - 90 + 8) as u8),
                c @ 100..=107 => self.bg = Some((c - 100 + 8) as u8),
                c @ (38 | 48) => {
                    let colour = match codes.get(i + 1) {
                        Some(5) => {
                            let index = codes.get(i + 2).copied();
                            i += 2;
                            index.filter(|n| *n < 16).map(|n| n as u8)
                        }
                        Some(2) => {
                            i += 4;
                            None
                        }
                        _ => None,
                    };
                    if c == 38 {
                        self.fg = colour;
                    } else {
                        self.bg = colour;
                    }
                }
                _ => {}
            }
            i += 1;
        }
    }
}

/// Splits `text` into lines (a trailing newline makes no empty last line) and styles them.
pub fn render(text: &str) -> Vec<LogLine> {
    render_with(&mut Style::default(), text)
}

/// Renders a log that arrives in chunks (the live tail): the style carries from one chunk to the next, and a
/// chunk that goes on with a line the previous one left open says so.
#[derive(Debug, Clone, Default)]
pub struct ChunkRenderer {
    style: Style,
    mid_line: bool,
}

/// One chunk's lines; `continues`: its first line goes on with the last line already shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Chunk {
    pub lines: Vec<LogLine>,
    pub continues: bool,
}

impl ChunkRenderer {
    /// `mid_line`: the text shown so far does not end with a newline.
    pub fn new(mid_line: bool) -> ChunkRenderer {
        ChunkRenderer { style: Style::default(), mid_line }
    }

    pub fn push(&mut self, text: &str) -> Chunk {
        let continues = self.mid_line && !text.is_empty();
        let lines = render_with(&mut self.style, text);
        if !text.is_empty() {
            self.mid_line = !text.ends_with('\n');
        }
        Chunk { lines, continues }
    }
}

fn render_with(style: &mut Style, text: &str) -> Vec<LogLine> {
    let mut lines = Vec::new();
    let body = text.strip_suffix('\n').unwrap_or(text);
    if text.is_empty() {
        return lines;
    }
    for raw in body.split('\n') {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        // A carriage return starts the line over; the style reached so far carries on.
        let (before, visible) = match raw.rfind('\r') {
            Some(at) => (&raw[..at], &raw[at + 1..]),
            None => ("", raw),
        };
        scan(before, style, &mut Vec::new());
        let mut spans: Vec<Span> = Vec::new();
        scan(visible, style, &mut spans);
        lines.push(LogLine { spans });
    }
    lines
}

fn scan(text: &str, style: &mut Style, spans: &mut Vec<Span>) {
    let mut chars = text.char_indices().peekable();
    let mut current = String::new();
    let push = |current: &mut String, style: &Style, spans: &mut Vec<Span>| {
        if current.is_empty() {
            return;
        }
        let class = style.class();
        match spans.last_mut() {
            Some(last) if last.class == class => last.text.push_str(current),
            _ => spans.push(Span { class, text: std::mem::take(current) }),
        }
        current.clear();
    };
    while let Some((at, c)) = chars.next() {
        if c == '\u{1b}' {
            match chars.peek().map(|(_, c)| *c) {
                Some('[') => {
                    chars.next();
                    let params_start = at + 2;
                    let mut end = None;
                    for (i, c) in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            end = Some((i, c));
                            break;
                        }
                    }
                    if let Some((i, 'm')) = end {
                        push(&mut current, style, spans);
                        style.apply(&text[params_start..i]);
                    }
                }
                Some(']') => {
                    // OSC (window titles, hyperlinks): up to BEL or ESC \.
                    chars.next();
                    while let Some((_, c)) = chars.next() {
                        if c == '\u{7}' {
                            break;
                        }
                        if c == '\u{1b}' {
                            chars.next();
                            break;
                        }
                    }
                }
                Some(_) => {
                    chars.next();
                }
                None => {}
            }
        } else if c == '\t' || !c.is_control() {
            current.push(c);
        }
    }
    push(&mut current, style, spans);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spans(line: &LogLine) -> Vec<(&str, &str)> {
        line.spans.iter().map(|s| (s.class.as_str(), s.text.as_str())).collect()
    }

    #[test]
    fn sgr_colours_become_classes_and_carry_across_lines() {
        let lines = render("plain \u{1b}[1;31mred bold\n still\u{1b}[0m done\n");
        assert_eq!(lines.len(), 2);
        assert_eq!(spans(&lines[0]), vec![("", "plain "), ("fg-1 bold", "red bold")]);
        assert_eq!(spans(&lines[1]), vec![("fg-1 bold", " still"), ("", " done")]);
    }

    #[test]
    fn bright_and_256_colours_map_to_the_sixteen_classes() {
        let lines = render("\u{1b}[92ma\u{1b}[38;5;4mb\u{1b}[38;5;200mc\u{1b}[38;2;1;2;3md\u{1b}[44me");
        assert_eq!(spans(&lines[0]), vec![("fg-10", "a"), ("fg-4", "b"), ("", "cd"), ("bg-4", "e")]);
    }

    #[test]
    fn other_escapes_and_controls_are_dropped_and_carriage_return_overwrites() {
        let lines = render("\u{1b}[2K\u{1b}]0;title\u{7}10%\r50%\r100%\u{0}\r\nnext");
        assert_eq!(spans(&lines[0]), vec![("", "100%")]);
        assert_eq!(spans(&lines[1]), vec![("", "next")]);
    }

    #[test]
    fn chunks_carry_style_and_open_lines() {
        let mut renderer = ChunkRenderer::new(false);
        let first = renderer.push("a \u{1b}[33mye");
        assert!(!first.continues);
        let second = renderer.push("llow\u{1b}[0m\nnext\n");
        assert!(second.continues);
        assert_eq!(spans(&second.lines[0]), vec![("fg-3", "llow")]);
        assert_eq!(spans(&second.lines[1]), vec![("", "next")]);
        assert!(!renderer.push("x").continues);
        assert!(ChunkRenderer::new(true).push("rest").continues);
    }

    #[test]
    fn html_stays_text() {
        let lines = render("<script>alert(1)</script>");
        assert_eq!(spans(&lines[0]), vec![("", "<script>alert(1)</script>")]);
    }
}
