//! Reading a byte range of a step's stored log without loading the whole log: the dashboard's log pages and
//! live tail (`crate::dashboard`).
//!
//! The dashboard addresses a log by bytes of the text as stored — masked, so a chunk's stored length may differ
//! from its `byte_len` in the runner's coordinates (`logs.rs`). A read therefore first fetches every chunk's
//! runner offset and stored length (two integers a chunk, never the text), adds the lengths up to find the
//! chunks that overlap the range, then fetches the text of those chunks only. A 100,000-line log read for its
//! 64 KiB tail moves two or three chunks' text, not megabytes. The stored lengths are a column
//! (`stored_len`, migration 0007), so the first query reads no text at all.

use std::ops::Range;

use super::{col, Backend, Result, Store};

/// Bytes of a step's stored log: `bytes` start at byte `start`; `total_bytes` is the log's length when read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRange {
    pub start: u64,
    pub bytes: Vec<u8>,
    pub total_bytes: u64,
}

impl Store {
    /// SQL for a log chunk's stored length in bytes: the `stored_len` column (migration 0007), else — a row
    /// written by a coordinator from before it — the text measured (SQLite's LENGTH of a BLOB and PostgreSQL's
    /// OCTET_LENGTH: bytes, not characters).
    pub fn stored_len_sql(&self) -> &'static str {
        match self.backend() {
            Backend::Sqlite => "COALESCE(stored_len, LENGTH(CAST(data AS BLOB)))",
            Backend::Postgres => "COALESCE(stored_len, OCTET_LENGTH(data))",
        }
    }

    /// Bytes `range` of step `step`'s stored log of the job's `attempt`, clamped to what exists (see the module
    /// doc). The bytes may cut a UTF-8 character or a line in two.
    pub async fn read_log_range(&self, job_id: i64, attempt: i64, step: i64, range: Range<u64>) -> Result<LogRange> {
        let stored_len = self.stored_len_sql();
        let rows = sqlx::query(&format!(
            "SELECT byte_offset, {stored_len} AS n FROM log_chunks WHERE job_id = $1 AND attempt = $2 AND step = $3 \
             ORDER BY byte_offset"
        ))
        .bind(job_id)
        .bind(attempt)
        .bind(step)
        .fetch_all(self.pool())
        .await?;
        // (runner offset, stored start, stored length) of each chunk.
        let mut chunks = Vec::with_capacity(rows.len());
        let mut total = 0u64;
        for row in &rows {
            let len = u64::try_from(col::<i64>(row, "n")?).unwrap_or(0);
            chunks.push((col::<i64>(row, "byte_offset")?, total, len));
            total += len;
        }
        let start = range.start.min(total);
        let end = range.end.clamp(start, total);
        let overlapping: Vec<&(i64, u64, u64)> =
            chunks.iter().filter(|(_, at, len)| *at < end && at + len > start).collect();
        let (Some(first), Some(last)) = (overlapping.first(), overlapping.last()) else {
            return Ok(LogRange { start, bytes: Vec::new(), total_bytes: total });
        };
        let rows = sqlx::query(
            "SELECT data FROM log_chunks WHERE job_id = $1 AND attempt = $2 AND step = $3 AND byte_offset >= $4 AND \
             byte_offset <= $5 ORDER BY byte_offset",
        )
        .bind(job_id)
        .bind(attempt)
        .bind(step)
        .bind(first.0)
        .bind(last.0)
        .fetch_all(self.pool())
        .await?;
        let mut text = Vec::new();
        for row in &rows {
            text.extend_from_slice(col::<String>(row, "data")?.as_bytes());
        }
        // `text` starts at the first chunk's stored start; a chunk appended meanwhile only adds after `last`.
        let from = usize::try_from(start - first.1).unwrap_or(usize::MAX).min(text.len());
        let to = usize::try_from(end - first.1).unwrap_or(usize::MAX).clamp(from, text.len());
        Ok(LogRange { start, bytes: text[from..to].to_vec(), total_bytes: total })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::store::jobs::JobRow;
    use crate::store::pipelines::PipelineTrigger;
    use crate::store::testing;

    /// A job of a new pipeline, leased by a new runner.
    async fn leased_job(s: &Store) -> JobRow {
        let project = crate::store::jobs::tests::project(s).await;
        let yaml =
            "version: 2.1\njobs:\n  build: {docker: [{image: x}], steps: [{run: 'true'}]}\nworkflows:\n  w:\n    \
                    jobs: [build]\n";
        let trigger = PipelineTrigger { source: "api".into(), branch: Some("main".into()), ..Default::default() };
        let planned = crate::store::jobs::tests::planned(yaml, "main");
        s.create_pipeline(project, &trigger, &planned).await.unwrap_or_else(|e| panic!("{e}"));
        let (runner, _) =
            s.register_runner("r", &BTreeMap::new(), &["medium".to_string()]).await.unwrap_or_else(|e| panic!("{e}"));
        s.lease_job(runner.id, &["medium".to_string()], 60_000)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("nothing to lease"))
    }

    #[tokio::test]
    async fn a_100000_line_log_is_read_by_range_in_stored_coordinates() {
        for db in testing::databases().await {
            let name = db.name;
            let s = &db.store;
            let job = leased_job(s).await;
            // The runner sends 64 KiB chunks; the coordinator masks a secret in some of them (stored text shorter
            // than the runner's bytes).
            let secret = "s3cr3t-value-0123";
            let mask = |text: &str| text.replace(secret, "********");
            let mut log = String::new();
            for i in 0..100_000 {
                if i % 1000 == 0 {
                    log.push_str(&format!("line {i} {secret}\n"));
                } else {
                    log.push_str(&format!("line {i}\n"));
                }
            }
            let mut offset = 0usize;
            while offset < log.len() {
                let mut end = (offset + 64 * 1024).min(log.len());
                while !log.is_char_boundary(end) {
                    end -= 1;
                }
                s.append_log(job.id, job.attempt, 0, "stdout", offset as u64, &log[offset..end], &mask)
                    .await
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                offset = end;
            }
            let stored = mask(&log);
            let total = stored.len() as u64;

            let tail = s
                .read_log_range(job.id, job.attempt, 0, total - 64 * 1024..total)
                .await
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(tail.total_bytes, total, "{name}");
            assert_eq!(tail.start, total - 64 * 1024, "{name}");
            assert_eq!(tail.bytes, stored.as_bytes()[(total - 64 * 1024) as usize..], "{name}");
            assert!(String::from_utf8_lossy(&tail.bytes).ends_with("line 99999\n"), "{name}");

            // Ranges inside one chunk, across chunk boundaries, past the end, and empty.
            for range in
                [0..10, 65_000..140_000, 1_000_000..1_000_001, total - 5..total + 100, 7..7, total + 1..total + 9]
            {
                let got = s
                    .read_log_range(job.id, job.attempt, 0, range.clone())
                    .await
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                let start = range.start.min(total);
                let end = range.end.clamp(start, total);
                assert_eq!(got.start, start, "{name}: {range:?}");
                assert_eq!(got.bytes, stored.as_bytes()[start as usize..end as usize], "{name}: {range:?}");
            }
            // Chunks written by a coordinator from before migration 0007 (no stored_len) read the same.
            let stored_lens: Vec<(i64,)> =
                sqlx::query_as("SELECT stored_len FROM log_chunks WHERE job_id = $1 ORDER BY byte_offset")
                    .bind(job.id)
                    .fetch_all(s.pool())
                    .await
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
            let sum: i64 = stored_lens.iter().map(|(n,)| n).sum();
            assert_eq!(u64::try_from(sum).ok(), Some(total), "{name}: stored_len is the masked length");
            sqlx::query("UPDATE log_chunks SET stored_len = NULL WHERE job_id = $1 AND byte_offset < 200000")
                .bind(job.id)
                .execute(s.pool())
                .await
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let mixed =
                s.read_log_range(job.id, job.attempt, 0, 65_000..total).await.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(mixed.total_bytes, total, "{name}");
            assert_eq!(mixed.bytes, stored.as_bytes()[65_000..], "{name}");

            let other_step =
                s.read_log_range(job.id, job.attempt, 1, 0..100).await.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!((other_step.bytes.len(), other_step.total_bytes), (0, 0), "{name}: a step without a log");
        }
    }
}
