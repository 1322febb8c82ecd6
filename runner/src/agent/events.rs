//! A job's events on their way to the coordinator. The executor reports [`Event`]s (from the step loop and
//! from background steps' threads); [`Translator`] turns them into wire [`JobEvent`]s — spec step indexes,
//! per-step log byte offsets, chunks of at most [`MAX_CHUNK`] bytes cut on character boundaries — and
//! [`EventQueue`] keeps them in order until the coordinator has acknowledged them. [`send_events`] (one thread
//! per job) posts them in batches; a batch is removed only once answered `200`, so a coordinator that is away
//! or drops the connection gets the same batch again (idempotent by `(step, offset)`: nothing is lost or
//! duplicated). Each step's masked log is also spooled to a file so a `409 conflict` (a gap the coordinator
//! reports) is filled from the offset it asks for.

use std::collections::{BTreeMap, VecDeque};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use config_schema::wire::{JobEvent, StepResult, StepStatus, Stream, UnixMillis};

use super::client::{retrying, ApiError, Client};
use crate::exec::{Event, Status};

/// The largest log chunk sent (bytes of text), as the protocol allows.
pub const MAX_CHUNK: usize = 64 * 1024;

/// A batch is cut before its JSON would pass this (the coordinator refuses bodies over 1 MiB; escaping can
/// make a 64 KiB chunk six times larger).
const MAX_BATCH_BYTES: usize = 600 * 1024;

pub fn now_ms() -> UnixMillis {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis() as UnixMillis
}

/// What the job's events said, for the [`config_schema::wire::JobResult`].
#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub steps: Vec<StepResult>,
    /// The first failed step's exit code.
    pub exit_code: Option<i32>,
    /// Why "Spin up environment" failed (the image could not be pulled, a container not started).
    pub spin_up_error: Option<String>,
}

/// Executor events → wire events for one job.
///
/// Step numbering: the executor counts "Spin up environment" as step 0 and the spec's steps from 1; the wire
/// counts the spec's steps from 0 (`docs/runner-protocol.md`), so executor step `n` is wire step `n - 1` and
/// the spin-up's output is not sent as a step (its failure is the result's `message`).
#[derive(Debug)]
pub struct Translator {
    job_id: String,
    offsets: BTreeMap<u32, u64>,
    started: BTreeMap<u32, (String, UnixMillis)>,
    spool: Option<PathBuf>,
    pub summary: Summary,
}

impl Translator {
    /// `spool`: a directory where each step's log is appended (`<step>.log`), or none.
    pub fn new(job_id: &str, spool: Option<PathBuf>) -> Translator {
        Translator {
            job_id: job_id.to_owned(),
            offsets: BTreeMap::new(),
            started: BTreeMap::new(),
            spool,
            summary: Summary::default(),
        }
    }

    pub fn translate(&mut self, event: &Event, at: UnixMillis) -> Vec<JobEvent> {
        let job_id = self.job_id.clone();
        match event {
            Event::StepStarted { step, name } if *step > 0 => {
                let step = (*step - 1) as u32;
                self.started.insert(step, (name.clone(), at));
                vec![JobEvent::StepStarted { job_id, step, name: name.clone(), at }]
            }
            Event::Output { step, text } if *step > 0 => self.log((*step - 1) as u32, Stream::Stdout, text),
            Event::StepError { step: 0, message } => {
                self.summary.spin_up_error = Some(message.clone());
                Vec::new()
            }
            Event::StepError { step, message } => {
                self.log((*step - 1) as u32, Stream::Stderr, &format!("error: {message}\n"))
            }
            Event::StepFinished { step, name, status, exit_code, .. } if *step > 0 => {
                let step = (*step - 1) as u32;
                let mut out = Vec::new();
                // A step that did not run never "started"; the coordinator learns its name here.
                let started_at = match self.started.get(&step) {
                    Some((_, t)) => *t,
                    None => {
                        out.push(JobEvent::StepStarted { job_id: job_id.clone(), step, name: name.clone(), at });
                        at
                    }
                };
                let status = wire_status(*status);
                if status == StepStatus::Failed && self.summary.exit_code.is_none() {
                    self.summary.exit_code = *exit_code;
                }
                self.summary.steps.push(StepResult {
                    name: name.clone(),
                    status,
                    exit_code: *exit_code,
                    started_at,
                    finished_at: at,
                });
                out.push(JobEvent::StepFinished { job_id, step, status, exit_code: *exit_code, at });
                out
            }
            _ => Vec::new(),
        }
    }

    fn log(&mut self, step: u32, stream: Stream, text: &str) -> Vec<JobEvent> {
        if text.is_empty() {
            return Vec::new();
        }
        if let Some(dir) = &self.spool {
            let appended = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join(format!("{step}.log")))
                .and_then(|mut f| f.write_all(text.as_bytes()));
            if let Err(e) = appended {
                tracing::warn!(error = %e, "cannot spool a log chunk (a gap reported later could not be filled)");
            }
        }
        let offset = self.offsets.entry(step).or_insert(0);
        let mut out = Vec::new();
        for piece in chunks(text, MAX_CHUNK) {
            out.push(JobEvent::Log {
                job_id: self.job_id.clone(),
                step,
                stream,
                offset: *offset,
                data: piece.to_owned(),
            });
            *offset += piece.len() as u64;
        }
        out
    }
}

fn wire_status(s: Status) -> StepStatus {
    match s {
        // A background step was started; its exit does not decide the job.
        Status::Success | Status::Background => StepStatus::Success,
        Status::Failed => StepStatus::Failed,
        Status::Skipped => StepStatus::Skipped,
        Status::Canceled => StepStatus::Canceled,
        Status::TimedOut => StepStatus::TimedOut,
    }
}

/// `text` in pieces of at most `max` bytes, never splitting a character.
pub fn chunks(text: &str, max: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let mut cut = rest.len().min(max);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (head, tail) = rest.split_at(cut);
        out.push(head);
        rest = tail;
    }
    out
}

/// Bytes `from..to` of step `step`'s spooled log as log events (the filling of a gap).
fn spooled(dir: &Path, job_id: &str, step: u32, from: u64, to: u64) -> std::io::Result<Vec<JobEvent>> {
    let mut f = std::fs::File::open(dir.join(format!("{step}.log")))?;
    f.seek(SeekFrom::Start(from))?;
    let mut bytes = Vec::new();
    f.take(to.saturating_sub(from)).read_to_end(&mut bytes)?;
    // Offsets are byte offsets of UTF-8 text the runner cut on character boundaries.
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let mut offset = from;
    let mut out = Vec::new();
    for piece in chunks(&text, MAX_CHUNK) {
        out.push(JobEvent::Log {
            job_id: job_id.to_owned(),
            step,
            stream: Stream::Stdout,
            offset,
            data: piece.to_owned(),
        });
        offset += piece.len() as u64;
    }
    Ok(out)
}

struct QueueState {
    translator: Translator,
    pending: VecDeque<JobEvent>,
    closed: bool,
    aborted: bool,
}

/// A job's events in order, waiting for the coordinator.
pub struct EventQueue {
    state: Mutex<QueueState>,
    ready: Condvar,
    spool: Option<PathBuf>,
    job_id: String,
}

impl EventQueue {
    pub fn new(job_id: &str, spool: Option<PathBuf>) -> EventQueue {
        EventQueue {
            state: Mutex::new(QueueState {
                translator: Translator::new(job_id, spool.clone()),
                pending: VecDeque::new(),
                closed: false,
                aborted: false,
            }),
            ready: Condvar::new(),
            spool,
            job_id: job_id.to_owned(),
        }
    }

    /// Translates and queues one executor event (any thread; the order of calls is the order sent).
    pub fn push(&self, event: &Event) {
        let Ok(mut s) = self.state.lock() else { return };
        if s.aborted {
            return;
        }
        let events = s.translator.translate(event, now_ms());
        if !events.is_empty() {
            s.pending.extend(events);
            self.ready.notify_all();
        }
    }

    /// No more events will come: [`send_events`] returns once everything is acknowledged.
    pub fn close(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.closed = true;
        }
        self.ready.notify_all();
    }

    /// The lease is lost: drop what is pending and stop sending.
    pub fn abort(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.aborted = true;
            s.pending.clear();
        }
        self.ready.notify_all();
    }

    pub fn summary(&self) -> Summary {
        self.state.lock().map(|s| s.translator.summary.clone()).unwrap_or_default()
    }

    fn is_aborted(&self) -> bool {
        self.state.lock().map(|s| s.aborted).unwrap_or(true)
    }

    /// The next batch (a copy: events leave the queue only when acknowledged), or `None` when the queue is
    /// closed and empty, or aborted.
    fn next_batch(&self) -> Option<Vec<JobEvent>> {
        let mut s = self.state.lock().ok()?;
        loop {
            if s.aborted {
                return None;
            }
            if !s.pending.is_empty() {
                break;
            }
            if s.closed {
                return None;
            }
            s = self.ready.wait(s).ok()?;
        }
        let mut batch = Vec::new();
        let mut size = 0;
        for e in &s.pending {
            let n = match e {
                JobEvent::Log { data, .. } => data.len() * 6 + 200,
                _ => 300,
            };
            if !batch.is_empty() && size + n > MAX_BATCH_BYTES {
                break;
            }
            size += n;
            batch.push(e.clone());
        }
        Some(batch)
    }

    fn acknowledge(&self, n: usize) {
        if let Ok(mut s) = self.state.lock() {
            let n = n.min(s.pending.len());
            s.pending.drain(..n);
        }
    }
}

/// Posts `queue`'s events until it is closed and drained (or aborted). Returns `Err(LeaseLost)` when the
/// coordinator said the job is not ours any more (the queue is then aborted). A coordinator that is away is
/// retried with backoff for as long as it takes.
pub fn send_events(client: &Client, queue: &EventQueue) -> Result<(), ApiError> {
    let stop = || queue.is_aborted();
    while let Some(batch) = queue.next_batch() {
        match retrying("events", &stop, || client.events(&queue.job_id, &batch)) {
            Ok(()) => {}
            Err(ApiError::Conflict { .. }) => send_one_by_one(client, queue, &batch)?,
            Err(ApiError::LeaseLost) => {
                queue.abort();
                return Err(ApiError::LeaseLost);
            }
            Err(ApiError::Away(_)) => return Ok(()), // aborted while retrying
            Err(e) => {
                // A refused batch is not retried forever: the job's result still goes out.
                tracing::error!(job.id = %queue.job_id, error = %e, events = batch.len(), "events refused; dropped");
            }
        }
        queue.acknowledge(batch.len());
        // Let output gather into the next batch instead of a request per line.
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// After a `409 conflict` on a batch: its events one at a time, so the one with the gap is known; the gap is
/// filled from the spool, then the event is sent again.
fn send_one_by_one(client: &Client, queue: &EventQueue, batch: &[JobEvent]) -> Result<(), ApiError> {
    let stop = || queue.is_aborted();
    for event in batch {
        let one = std::slice::from_ref(event);
        match retrying("events", &stop, || client.events(&queue.job_id, one)) {
            Ok(()) => continue,
            Err(ApiError::Conflict { expected_offset: Some(expected) }) => {
                let JobEvent::Log { step, offset, .. } = event else { continue };
                let fill = match &queue.spool {
                    Some(dir) if expected < *offset => spooled(dir, &queue.job_id, *step, expected, *offset),
                    _ => Ok(Vec::new()),
                };
                match fill {
                    Ok(fill) => {
                        for f in &fill {
                            retrying("events", &stop, || client.events(&queue.job_id, std::slice::from_ref(f)))?;
                        }
                    }
                    Err(e) => tracing::error!(job.id = %queue.job_id, step, error = %e, "cannot fill a log gap"),
                }
                retrying("events", &stop, || client.events(&queue.job_id, one))?;
            }
            Err(ApiError::LeaseLost) => {
                queue.abort();
                return Err(ApiError::LeaseLost);
            }
            Err(e) => tracing::error!(job.id = %queue.job_id, error = %e, "event refused; dropped"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logs(events: &[JobEvent]) -> Vec<(u32, u64, usize)> {
        events
            .iter()
            .filter_map(|e| match e {
                JobEvent::Log { step, offset, data, .. } => Some((*step, *offset, data.len())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn chunks_never_split_a_character_and_stay_under_the_limit() {
        let text = "é".repeat(10); // 20 bytes
        let parts = chunks(&text, 5);
        assert!(parts.iter().all(|p| p.len() <= 5 && !p.is_empty()));
        assert_eq!(parts.concat(), text);
        assert_eq!(chunks("", 5), Vec::<&str>::new());
    }

    #[test]
    fn offsets_count_bytes_per_step_and_spin_up_is_not_a_step() {
        let mut t = Translator::new("j", None);
        let mut out = Vec::new();
        let ev = [
            Event::StepStarted { step: 0, name: "Spin up environment".into() },
            Event::Output { step: 0, text: "pulling\n".into() },
            Event::StepStarted { step: 1, name: "a".into() },
            Event::Output { step: 1, text: "x".repeat(MAX_CHUNK + 10) },
            Event::Output { step: 1, text: "ü\n".into() },
            Event::StepFinished {
                step: 1,
                name: "a".into(),
                status: Status::Failed,
                exit_code: Some(3),
                duration_ms: 1,
            },
            Event::StepFinished { step: 2, name: "b".into(), status: Status::Skipped, exit_code: None, duration_ms: 0 },
            Event::StepStarted { step: 3, name: "c".into() },
            Event::StepError { step: 3, message: "boom".into() },
        ];
        for e in &ev {
            out.extend(t.translate(e, 5));
        }
        assert_eq!(
            logs(&out),
            vec![(0, 0, MAX_CHUNK), (0, MAX_CHUNK as u64, 10), (0, MAX_CHUNK as u64 + 10, 3), (2, 0, 12)]
        );
        assert!(matches!(&out[0], JobEvent::StepStarted { step: 0, name, .. } if name == "a"));
        // The skipped step gets a start (its name) then its finish.
        let skipped: Vec<&JobEvent> = out
            .iter()
            .filter(|e| matches!(e, JobEvent::StepStarted { step: 1, .. } | JobEvent::StepFinished { step: 1, .. }))
            .collect();
        assert_eq!(skipped.len(), 2);
        assert_eq!(t.summary.exit_code, Some(3));
        assert_eq!(t.summary.steps.len(), 2);
    }

    #[test]
    fn a_gap_is_filled_from_the_spool() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut t = Translator::new("j", Some(dir.path().to_path_buf()));
        t.translate(&Event::Output { step: 1, text: "hello ".into() }, 1);
        t.translate(&Event::Output { step: 1, text: "world\n".into() }, 1);
        let fill = spooled(dir.path(), "j", 0, 2, 6).expect("spooled");
        assert!(matches!(&fill[..], [JobEvent::Log { offset: 2, data, .. }] if data == "llo "));
    }
}
