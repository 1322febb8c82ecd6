//! The log viewer's pages: a step's log is shown a page at a time, from its tail backwards.
//!
//! A page is at most [`PAGE_BYTES`] bytes and [`PAGE_LINES`] lines, read by byte range through the data trait
//! (so a 100,000-line log costs one small read, never the whole file), cut to whole lines, and carries the
//! offset where the page before it ends. The live tail continues from the page's end offset.

use serde::Serialize;

use crate::ansi::{self, LogLine};
use crate::data::{Dashboard, DataResult};

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
    let mut bytes: &[u8] = &slice.bytes;
    let mut start = slice.start;
    if start > 0 {
        // The first line may have begun before the page: drop its piece (it shows on the page before).
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
    Ok(LogPage {
        start,
        end,
        total_bytes: slice.total_bytes,
        lines: ansi::render(&text),
        earlier: (start > 0).then_some(start),
    })
}
