//! Container logs in docker's `json-file` format: one JSON object per line,
//! `{"log":"hello\n","stream":"stdout","time":"2024-01-01T00:00:00.123456789Z"}`. The monitor writes them
//! ([`LogWriter`], one entry per output line; a line longer than 16 KiB is split, as docker does); `engine logs`
//! reads them back ([`logs`]) with `--tail`, `--since`, `-t` and `-f`.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::store::ContainerStore;
use super::{io_err, Error, Result};

const MAX_LINE: usize = 16 * 1024;
const STREAMS: [&str; 2] = ["stdout", "stderr"];

/// One log entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub log: String,
    pub stream: String,
    pub time: String,
}

/// Appends output to a container's log, a line at a time.
pub struct LogWriter {
    file: File,
    partial: [Vec<u8>; 2],
}

impl LogWriter {
    pub fn open(path: &Path) -> Result<LogWriter> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io_err(format!("cannot open the log {}", path.display())))?;
        Ok(LogWriter { file, partial: [Vec::new(), Vec::new()] })
    }

    /// Adds output of `stream` (0 stdout, 1 stderr); complete lines are written at once.
    pub fn write(&mut self, stream: usize, mut bytes: &[u8]) -> std::io::Result<()> {
        let stream = stream.min(1);
        while let Some(nl) = bytes.iter().position(|&b| b == b'\n') {
            let mut line = std::mem::take(&mut self.partial[stream]);
            line.extend_from_slice(&bytes[..=nl]);
            self.emit(stream, &line)?;
            bytes = &bytes[nl + 1..];
        }
        self.partial[stream].extend_from_slice(bytes);
        if self.partial[stream].len() >= MAX_LINE {
            let line = std::mem::take(&mut self.partial[stream]);
            self.emit(stream, &line)?;
        }
        Ok(())
    }

    /// Writes what is left of an unterminated line (at EOF).
    pub fn flush_partial(&mut self, stream: usize) {
        let stream = stream.min(1);
        if !self.partial[stream].is_empty() {
            let line = std::mem::take(&mut self.partial[stream]);
            let _ = self.emit(stream, &line);
        }
    }

    fn emit(&mut self, stream: usize, line: &[u8]) -> std::io::Result<()> {
        let entry = Entry {
            log: String::from_utf8_lossy(line).into_owned(),
            stream: STREAMS[stream].to_owned(),
            time: crate::image::now_rfc3339(),
        };
        let mut bytes = serde_json::to_vec(&entry).map_err(std::io::Error::other)?;
        bytes.push(b'\n');
        self.file.write_all(&bytes)
    }
}

/// What `engine logs` shows.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    pub follow: bool,
    /// Only the last N lines.
    pub tail: Option<usize>,
    pub timestamps: bool,
    /// Only entries at or after this time (RFC 3339, or a duration like `10m`, or Unix seconds).
    pub since: Option<String>,
}

/// Parses `--since`: RFC 3339, Unix seconds, or a relative duration (`30s`, `5m`, `2h`).
pub fn parse_since(s: &str) -> Result<chrono::DateTime<chrono::Utc>> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    if let Ok(secs) = s.parse::<f64>() {
        let nanos = (secs * 1e9) as i64;
        return Ok(chrono::DateTime::from_timestamp_nanos(nanos));
    }
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num.parse().map_err(|_| bad_since(s))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(bad_since(s)),
    };
    Ok(chrono::Utc::now() - chrono::Duration::seconds(secs))
}

fn bad_since(s: &str) -> Error {
    Error::InvalidInput {
        what: "--since",
        value: s.to_owned(),
        hint: "use RFC 3339, Unix seconds or a duration like 10m".into(),
    }
}

/// Writes the logs of container `id` to `out` (stdout entries) and `err` (stderr entries).
pub fn logs(
    store: &ContainerStore,
    id: &str,
    opts: &LogOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<()> {
    let since = opts.since.as_deref().map(parse_since).transpose()?;
    let path = store.log_path(id);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !opts.follow => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            File::create(&path).map_err(io_err(format!("cannot create {}", path.display())))?;
            File::open(&path).map_err(io_err(format!("cannot open {}", path.display())))?
        }
        Err(e) => return Err(io_err(format!("cannot open {}", path.display()))(e)),
    };
    let mut reader = BufReader::new(file);
    let mut entries: Vec<Entry> = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line).map_err(io_err("cannot read the log"))?;
        if n == 0 || !line.ends_with('\n') {
            // An incomplete last line is being written: leave it for `-f`.
            let back = n as i64;
            reader.seek(SeekFrom::Current(-back)).map_err(io_err("cannot read the log"))?;
            break;
        }
        if let Ok(e) = serde_json::from_str::<Entry>(&line) {
            entries.push(e);
        }
    }
    let keep = |e: &Entry| since.is_none_or(|s| chrono::DateTime::parse_from_rfc3339(&e.time).is_ok_and(|t| t >= s));
    let mut entries: Vec<Entry> = entries.into_iter().filter(keep).collect();
    if let Some(n) = opts.tail {
        let skip = entries.len().saturating_sub(n);
        entries.drain(..skip);
    }
    for e in &entries {
        print_entry(e, opts.timestamps, out, err)?;
    }
    if !opts.follow {
        return Ok(());
    }
    loop {
        line.clear();
        let n = reader.read_line(&mut line).map_err(io_err("cannot read the log"))?;
        if n > 0 && line.ends_with('\n') {
            if let Ok(e) = serde_json::from_str::<Entry>(&line) {
                print_entry(&e, opts.timestamps, out, err)?;
            }
            continue;
        }
        if n > 0 {
            reader.seek(SeekFrom::Current(-(n as i64))).map_err(io_err("cannot read the log"))?;
        }
        let state = store.state(id);
        let running = state.as_ref().is_ok_and(|s| s.is_running());
        if !running {
            // One last look for lines written just before the exit was recorded.
            line.clear();
            while reader.read_line(&mut line).map_err(io_err("cannot read the log"))? > 0 {
                if let Ok(e) = serde_json::from_str::<Entry>(&line) {
                    print_entry(&e, opts.timestamps, out, err)?;
                }
                line.clear();
            }
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn print_entry(e: &Entry, timestamps: bool, out: &mut dyn Write, err: &mut dyn Write) -> Result<()> {
    let w: &mut dyn Write = if e.stream == "stderr" { err } else { out };
    let res = if timestamps { write!(w, "{} {}", e.time, e.log) } else { w.write_all(e.log.as_bytes()) };
    res.and_then(|_| w.flush()).map_err(io_err("cannot write the logs"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_become_json_entries() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let t = tempfile::tempdir()?;
        let path = t.path().join("x-json.log");
        let mut w = LogWriter::open(&path)?;
        w.write(0, b"hel")?;
        w.write(0, b"lo\nwor")?;
        w.write(1, b"oops\n")?;
        w.flush_partial(0);
        let text = std::fs::read_to_string(&path)?;
        let entries: Vec<Entry> = text.lines().map(serde_json::from_str).collect::<std::result::Result<_, _>>()?;
        let got: Vec<(&str, &str)> = entries.iter().map(|e| (e.stream.as_str(), e.log.as_str())).collect();
        assert_eq!(got, [("stdout", "hello\n"), ("stderr", "oops\n"), ("stdout", "wor")]);
        assert!(text.starts_with("{\"log\":\"hello\\n\",\"stream\":\"stdout\",\"time\":\""));
        Ok(())
    }

    #[test]
    fn since_accepts_docker_forms() {
        assert!(parse_since("2024-01-01T00:00:00Z").is_ok());
        assert!(parse_since("1700000000").is_ok());
        assert!(parse_since("10m").is_ok());
        assert!(parse_since("soon").is_err());
    }
}
