//! The log viewer's pages: a step's log is shown a page at a time, from its tail backwards.
//!
//! A page is at most [`PAGE_BYTES`] bytes and [`PAGE_LINES`] lines, read by byte range through the data trait
//! (so a 100,000-line log costs one small read, never the whole file), cut to whole lines, and carries the
//! offset where the page before it ends. The live tail continues from the page's end offset.

use serde::Serialize;

use crate::ansi::{self, LogLine};
use crate::data::{Dashboard, DataResult, LogSlice};

/// The most bytes one page reads.
pub const PAGE_BYTES: u64 = 64 * 1024;
/// The most lines one page shows (a log of short lines would otherwise make a heavy page).
pub const PAGE_LINES: usize = 1000;

#[derive(Debug, Clone, Serialize)]
pub struct LogPage {
    /// Byte offset of the first line shown.
    pub start: u64,
    /// Byte offset just past the last byte shown (where the live tail continues).
    pub end: u64,
    pub total_bytes: u64,
    pub lines: Vec<LogLine>,
    /// `end` of the page before this one, when there is one.
    pub earlier: Option<u64>,
}

/// The page of step `step`'s log that ends at byte `end` (`None`: the tail, given the log is `known_len` long).
pub async fn read_page<S: Dashboard>(
    data: &S,
    job_id: &str,
    step: u32,
    end: Option<u64>,
    known_len: u64,
) -> DataResult<LogPage> {
    let end = end.unwrap_or(known_len);
    let start = end.saturating_sub(PAGE_BYTES);
    let slice = data.read_log(job_id, step, start..end).await?;
    Ok(cut(&slice))
}

/// The page a slice read for it shows: whole lines only (a line begun before the slice is left to the page
/// before), at most [`PAGE_LINES`] of them, the last ones.
pub fn cut(slice: &LogSlice) -> LogPage {
    let mut bytes: &[u8] = &slice.bytes;
    let mut start = slice.start;
    if start > 0 {
        // The first line may have begun before the page: drop its piece (it shows on the page before), unless it
        // is the only line there is (a line longer than a page shows cut).
        if let Some(newline) = bytes.iter().position(|b| *b == b'\n') {
            if newline + 1 < bytes.len() {
                bytes = &bytes[newline + 1..];
                start += newline as u64 + 1;
            }
        }
    }
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let newlines = body.iter().filter(|b| **b == b'\n').count();
    if newlines >= PAGE_LINES {
        let skip = newlines + 1 - PAGE_LINES;
        let mut seen = 0;
        if let Some(at) = bytes.iter().position(|b| {
            if *b == b'\n' {
                seen += 1;
            }
            seen == skip
        }) {
            bytes = &bytes[at + 1..];
            start += at as u64 + 1;
        }
    }
    let end = start + bytes.len() as u64;
    let text = String::from_utf8_lossy(bytes);
    LogPage {
        start,
        end,
        total_bytes: slice.total_bytes,
        lines: ansi::render(&text),
        earlier: (start > 0).then_some(start),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice(start: u64, text: &str, total: u64) -> LogSlice {
        LogSlice { start, bytes: text.as_bytes().to_vec(), total_bytes: total }
    }

    fn texts(page: &LogPage) -> Vec<String> {
        page.lines.iter().map(|l| l.spans.iter().map(|s| s.text.as_str()).collect()).collect()
    }

    #[test]
    fn a_whole_short_log_is_one_page_without_earlier() {
        let page = cut(&slice(0, "a\nb\n", 4));
        assert_eq!(texts(&page), ["a", "b"]);
        assert_eq!((page.start, page.end, page.earlier), (0, 4, None));
        assert!(cut(&slice(0, "", 0)).lines.is_empty());
    }

    #[test]
    fn a_page_inside_the_log_starts_at_a_whole_line() {
        let page = cut(&slice(10, "tail of x\nline 2\nline 3\n", 40));
        assert_eq!(texts(&page), ["line 2", "line 3"]);
        assert_eq!(page.start, 20);
        assert_eq!(page.earlier, Some(20));
        assert_eq!(page.end, 34);
    }

    #[test]
    fn a_line_longer_than_a_page_shows_cut_rather_than_nothing() {
        let page = cut(&slice(10, "xxxxxxxx\n", 100));
        assert_eq!(texts(&page), ["xxxxxxxx"]);
        assert_eq!(page.earlier, Some(10));
    }

    #[test]
    fn only_the_last_page_lines_are_kept() {
        let text: String = (0..PAGE_LINES + 5).map(|i| format!("{i}\n")).collect();
        let page = cut(&slice(0, &text, text.len() as u64));
        assert_eq!(page.lines.len(), PAGE_LINES);
        assert_eq!(texts(&page)[0], "5");
        assert_eq!(page.earlier, Some(10));
    }

    #[test]
    fn a_cut_utf8_character_does_not_fail_the_page() {
        let mut bytes = "é\nok\n".as_bytes().to_vec();
        bytes.remove(0);
        let page = cut(&LogSlice { start: 0, bytes, total_bytes: 5 });
        assert_eq!(texts(&page)[1], "ok");
    }
}
