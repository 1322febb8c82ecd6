//! Healthchecks, as docker runs them: the image's `HEALTHCHECK` merged with the `--health-*` flags at create
//! ([`merge_config`]), probed while the container runs by a thread of its monitor ([`HealthMonitor`]), recorded
//! in `state.json` (`State.Health` of `inspect`, the `(healthy)` of `ps`), and waited for by `compose`
//! ([`wait_healthy`]).
//!
//! Docker's rules, kept here as pure functions so they are unit-tested without a container:
//! - defaults: interval 30 s, timeout 30 s, start period 0, start interval 5 s, 3 retries (a zero field means
//!   "the default", as in the image config);
//! - the first probe runs one interval after the start; while the status is `starting` and the start period has
//!   not passed, the start interval is used instead;
//! - a probe succeeds when it exits 0; a success makes the container `healthy` and resets `FailingStreak`;
//! - a failure while `starting` inside the start period does not count; otherwise it adds to `FailingStreak`, and
//!   `retries` consecutive failures make the container `unhealthy`;
//! - a probe that outlives the timeout is killed and recorded as exit -1, `Health check exceeded timeout (…)`;
//! - the last 5 results are kept, each output cut to 4096 bytes;
//! - when the container stops, the status becomes `unhealthy` (docker does so "for compatibility").
//!
//! A probe is an `exec` ([`super::exec::exec_captured`]): the same user, environment, working directory,
//! namespaces and seccomp profile as `engine exec`. `CMD-SHELL` runs through `/bin/sh -c`.
//!
//! Threading: the monitor is otherwise single-threaded. The probe thread only forks through libcontainer (whose
//! child execs at once) and writes `state.json` under the root lock; the monitor's exit path stops it before
//! recording the exit, and the thread checks the stop flag under that same lock, so a late probe result can
//! never overwrite the exit.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::exec::{exec_captured, ExecOptions};
use super::store::{Container, ContainerStore, Status};
use super::{Error, Result};
use crate::image::HealthConfig;

/// Docker's defaults for fields left at zero.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_START_INTERVAL: Duration = Duration::from_secs(5);
pub const DEFAULT_RETRIES: u32 = 3;
/// Results kept in `State.Health.Log`.
pub const MAX_LOG_ENTRIES: usize = 5;
/// Bytes of a probe's output kept.
pub const MAX_OUTPUT: usize = 4096;
/// How often [`wait_healthy`] reads the state.
const WAIT_POLL: Duration = Duration::from_millis(50);

/// A container's health status, in docker's words.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    #[default]
    Starting,
    Healthy,
    Unhealthy,
}

impl HealthStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Starting => "starting",
            HealthStatus::Healthy => "healthy",
            HealthStatus::Unhealthy => "unhealthy",
        }
    }
}

/// One probe's result, as docker's `State.Health.Log[]` entries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProbeResult {
    /// RFC 3339 timestamps.
    pub start: String,
    pub end: String,
    /// 0 healthy; anything else a failure (-1: the probe could not run or timed out).
    pub exit_code: i32,
    pub output: String,
}

/// `State.Health`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Health {
    pub status: HealthStatus,
    pub failing_streak: u32,
    #[serde(default)]
    pub log: Vec<ProbeResult>,
}

/// A healthcheck ready to run: the command and docker's defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What the probe execs (`CMD-SHELL` already turned into `/bin/sh -c …`).
    pub command: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub start_period: Duration,
    pub start_interval: Duration,
    pub retries: u32,
}

fn nanos_or(ns: i64, default: Duration) -> Duration {
    if ns > 0 {
        Duration::from_nanos(ns as u64)
    } else {
        default
    }
}

impl Check {
    /// The check `config` describes; `None` when it has none (no test, or `["NONE"]`).
    pub fn from_config(config: &HealthConfig) -> Option<Check> {
        let (kind, args) = config.test.split_first()?;
        let command = match kind.as_str() {
            "CMD" if !args.is_empty() => args.to_vec(),
            "CMD-SHELL" if !args.is_empty() => {
                ["/bin/sh".to_owned(), "-c".to_owned()].into_iter().chain(args.iter().cloned()).collect()
            }
            _ => return None,
        };
        Some(Check {
            command,
            interval: nanos_or(config.interval, DEFAULT_INTERVAL),
            timeout: nanos_or(config.timeout, DEFAULT_TIMEOUT),
            start_period: nanos_or(config.start_period, Duration::ZERO),
            start_interval: nanos_or(config.start_interval, DEFAULT_START_INTERVAL),
            retries: if config.retries > 0 {
                u32::try_from(config.retries).unwrap_or(u32::MAX)
            } else {
                DEFAULT_RETRIES
            },
        })
    }

    /// The container's check, if it has one.
    pub fn of(c: &Container) -> Option<Check> {
        c.config.healthcheck.as_ref().and_then(Check::from_config)
    }

    /// How long to wait before the next probe: the start interval while `starting` within the start period.
    pub fn next_delay(&self, status: HealthStatus, since_start: Duration) -> Duration {
        if since_start < self.start_period && status == HealthStatus::Starting {
            self.start_interval
        } else {
            self.interval
        }
    }
}

/// The health after a probe: `prev` with `result` logged and docker's rules applied. `since_start` is how long
/// after the container's start the probe began.
pub fn next_health(prev: &Health, result: ProbeResult, since_start: Duration, check: &Check) -> Health {
    let mut h = prev.clone();
    let success = result.exit_code == 0;
    h.log.push(result);
    if h.log.len() > MAX_LOG_ENTRIES {
        h.log.drain(..h.log.len() - MAX_LOG_ENTRIES);
    }
    if success {
        h.failing_streak = 0;
        h.status = HealthStatus::Healthy;
    } else if !(h.status == HealthStatus::Starting && since_start < check.start_period) {
        h.failing_streak += 1;
        if h.failing_streak >= check.retries {
            h.status = HealthStatus::Unhealthy;
        }
    }
    h
}

/// A probe's output as docker keeps it: at most [`MAX_OUTPUT`] bytes, invalid UTF-8 replaced.
pub fn output_text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_OUTPUT)]).into_owned()
}

/// Go's `time.Duration` formatting (`300ms`, `30s`, `1m30s`, `1.5s`), for docker's timeout message.
pub fn go_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    // `v / unit` with the remainder as trailing decimals (zeros trimmed).
    let frac = |v: u128, unit: u128, digits: usize| {
        let (whole, rem) = (v / unit, v % unit);
        if rem == 0 {
            whole.to_string()
        } else {
            format!("{whole}.{rem:0digits$}").trim_end_matches('0').to_owned()
        }
    };
    match ns {
        0 => "0s".to_owned(),
        n if n < 1_000 => format!("{n}ns"),
        n if n < 1_000_000 => format!("{}µs", frac(n, 1_000, 3)),
        n if n < 1_000_000_000 => format!("{}ms", frac(n, 1_000_000, 6)),
        n => {
            let (h, m) = (n / 3_600_000_000_000, n / 60_000_000_000 % 60);
            let s = frac(n % 60_000_000_000, 1_000_000_000, 9);
            match (h, m) {
                (0, 0) => format!("{s}s"),
                (0, m) => format!("{m}m{s}s"),
                (h, m) => format!("{h}h{m}m{s}s"),
            }
        }
    }
}

/// Parses a `--health-*` duration (Go's syntax: `30s`, `200ms`, `1m30s`).
pub fn parse_duration(s: &str) -> Result<Duration> {
    crate::build::instruction::parse_go_duration(s).map_err(|hint| Error::InvalidInput {
        what: "duration",
        value: s.to_owned(),
        hint,
    })
}

/// The `--health-*` flags of `run`/`create`, as given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthFlags {
    /// `--health-cmd`: run through `/bin/sh -c` (`CMD-SHELL`).
    pub cmd: Option<String>,
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
    pub start_period: Option<Duration>,
    pub start_interval: Option<Duration>,
    pub retries: Option<i64>,
}

fn as_nanos(d: Option<Duration>) -> i64 {
    d.map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

impl HealthFlags {
    /// The override these flags make (`None` when none was given): fields left at zero or empty inherit the
    /// image's, as docker's.
    pub fn to_override(&self) -> Option<HealthConfig> {
        if *self == HealthFlags::default() {
            return None;
        }
        Some(HealthConfig {
            test: self.cmd.iter().flat_map(|c| ["CMD-SHELL".to_owned(), c.clone()]).collect(),
            interval: as_nanos(self.interval),
            timeout: as_nanos(self.timeout),
            start_period: as_nanos(self.start_period),
            start_interval: as_nanos(self.start_interval),
            retries: self.retries.unwrap_or(0),
        })
    }
}

/// The container's healthcheck from the image's and the flags' (docker's merge: each field the override leaves
/// at zero or empty comes from the image; `disabled` is `--no-healthcheck`, recorded as `["NONE"]`). Rejects
/// what docker rejects: negative values, durations under 1 ms, an unknown test kind, `--no-healthcheck` with
/// `--health-*` flags.
pub fn merge_config(
    image: Option<&HealthConfig>,
    user: Option<&HealthConfig>,
    disabled: bool,
) -> Result<Option<HealthConfig>> {
    if disabled {
        if user.is_some() {
            return Err(Error::InvalidInput {
                what: "--no-healthcheck",
                value: "true".into(),
                hint: "--no-healthcheck conflicts with --health-* options".into(),
            });
        }
        return Ok(Some(HealthConfig { test: vec!["NONE".into()], ..HealthConfig::default() }));
    }
    let merged = match (user, image) {
        (None, image) => image.cloned(),
        (Some(u), None) => Some(u.clone()),
        (Some(u), Some(i)) => {
            let pick = |a: i64, b: i64| if a == 0 { b } else { a };
            Some(HealthConfig {
                test: if u.test.is_empty() { i.test.clone() } else { u.test.clone() },
                interval: pick(u.interval, i.interval),
                timeout: pick(u.timeout, i.timeout),
                start_period: pick(u.start_period, i.start_period),
                start_interval: pick(u.start_interval, i.start_interval),
                retries: pick(u.retries, i.retries),
            })
        }
    };
    if let Some(m) = &merged {
        validate(m)?;
    }
    Ok(merged)
}

fn validate(c: &HealthConfig) -> Result<()> {
    let bad =
        |what: &'static str, value: String, hint: &str| Err(Error::InvalidInput { what, value, hint: hint.into() });
    for (what, ns) in [
        ("healthcheck interval", c.interval),
        ("healthcheck timeout", c.timeout),
        ("healthcheck start period", c.start_period),
        ("healthcheck start interval", c.start_interval),
    ] {
        if ns < 0 {
            return bad(what, go_duration(Duration::from_nanos(ns.unsigned_abs())), "it cannot be negative");
        }
        if ns != 0 && ns < 1_000_000 {
            return bad(what, go_duration(Duration::from_nanos(ns as u64)), "it cannot be less than 1ms");
        }
    }
    if c.retries < 0 {
        return bad("healthcheck retries", c.retries.to_string(), "it cannot be negative");
    }
    match c.test.first().map(String::as_str) {
        None | Some("NONE") => Ok(()),
        Some("CMD" | "CMD-SHELL") if c.test.len() > 1 => Ok(()),
        Some("CMD" | "CMD-SHELL") => bad("healthcheck test", format!("{:?}", c.test), "give the command to run"),
        Some(_) => bad("healthcheck test", format!("{:?}", c.test), "it must start with NONE, CMD or CMD-SHELL"),
    }
}

/// Runs one probe in container `id`: an exec of the check's command, killed at the timeout.
pub fn probe(store: &ContainerStore, id: &str, check: &Check) -> ProbeResult {
    let start = crate::image::now_rfc3339();
    let opts = ExecOptions { cmd: check.command.clone(), ..ExecOptions::default() };
    let (exit_code, output) = match exec_captured(store, id, &opts, check.timeout, MAX_OUTPUT) {
        Ok(run) => match run.exit_code {
            Some(code) => (code, output_text(&run.output)),
            None => (-1, format!("Health check exceeded timeout ({})", go_duration(check.timeout))),
        },
        Err(e) => (-1, e.to_string()),
    };
    ProbeResult { start, end: crate::image::now_rfc3339(), exit_code, output }
}

/// The stop signal between the monitor and its probe thread.
#[derive(Default)]
struct StopFlag {
    stopped: Mutex<bool>,
    changed: Condvar,
}

impl StopFlag {
    fn is_set(&self) -> bool {
        self.stopped.lock().map_or(true, |s| *s)
    }

    fn set(&self) {
        if let Ok(mut s) = self.stopped.lock() {
            *s = true;
        }
        self.changed.notify_all();
    }

    /// Sleeps `d`; true if stopped meanwhile.
    fn wait(&self, d: Duration) -> bool {
        let Ok(guard) = self.stopped.lock() else { return true };
        match self.changed.wait_timeout_while(guard, d, |stopped| !*stopped) {
            Ok((stopped, _)) => *stopped,
            Err(_) => true,
        }
    }
}

/// The probe thread of one run of a container. Dropping it stops the probes and marks the container
/// `unhealthy`, as docker does when a container stops.
pub struct HealthMonitor {
    store: ContainerStore,
    id: String,
    stop: Arc<StopFlag>,
}

impl HealthMonitor {
    /// Records `starting` and starts probing container `c` (just started); `None` if it has no healthcheck.
    pub fn start(store: &ContainerStore, c: &Container) -> Option<HealthMonitor> {
        let check = Check::of(c)?;
        let started = Instant::now();
        let mut health = Health::default();
        if let Err(e) = store.update_state(&c.id, |s| {
            // Docker keeps the log across restarts; a new run starts a new streak.
            health.log = s.health.take().map(|h| h.log).unwrap_or_default();
            s.health = Some(health.clone());
        }) {
            tracing::warn!(container.id = %c.id, "cannot record the health status: {e}");
        }
        let stop = Arc::new(StopFlag::default());
        let thread_stop = stop.clone();
        let (thread_store, id) = (store.clone(), c.id.clone());
        let spawned = std::thread::Builder::new()
            .name("healthcheck".into())
            .spawn(move || probe_loop(&thread_store, &id, &check, health, started, &thread_stop));
        if let Err(e) = spawned {
            tracing::warn!(container.id = %c.id, "cannot start the healthcheck thread: {e}");
        }
        Some(HealthMonitor { store: store.clone(), id: c.id.clone(), stop })
    }
}

impl Drop for HealthMonitor {
    fn drop(&mut self) {
        self.stop.set();
        let _ = self.store.update_state(&self.id, |s| {
            if let Some(h) = &mut s.health {
                h.status = HealthStatus::Unhealthy;
            }
        });
    }
}

/// Probes every interval until stopped, recording each result.
fn probe_loop(store: &ContainerStore, id: &str, check: &Check, mut health: Health, started: Instant, stop: &StopFlag) {
    loop {
        if stop.wait(check.next_delay(health.status, started.elapsed())) {
            return;
        }
        // A frozen container would freeze the probe too (and a SIGKILL waits for the thaw): skip the round.
        if store.raw_state(id).is_ok_and(|s| s.status == Status::Paused) {
            continue;
        }
        let since_start = started.elapsed();
        let result = probe(store, id, check);
        health = next_health(&health, result, since_start, check);
        if !record(store, id, &health, stop) {
            return;
        }
    }
}

/// Writes `health` into the state unless the run is over; false when it is.
fn record(store: &ContainerStore, id: &str, health: &Health, stop: &StopFlag) -> bool {
    let write = || -> Result<bool> {
        let lock = store.lock()?;
        // Checked under the lock: the monitor sets the flag before it records the exit under it.
        if stop.is_set() {
            return Ok(false);
        }
        let mut state = store.raw_state(id)?;
        if !state.is_running() {
            return Ok(false);
        }
        state.health = Some(health.clone());
        store.save_state(id, &state, &lock)?;
        Ok(true)
    };
    match write() {
        Ok(more) => more,
        Err(e) => {
            tracing::warn!(container.id = %id, "cannot record the health status: {e}");
            !stop.is_set()
        }
    }
}

/// How [`wait_healthy`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthOutcome {
    Healthy,
    Unhealthy,
    /// The container stopped (or never ran) before it was healthy: its exit code.
    Exited(i32),
    /// The container has no healthcheck (none in the image or flags, or disabled).
    NoHealthcheck,
    /// The timeout passed; the status then (`None`: not started yet).
    TimedOut(Option<HealthStatus>),
}

/// Waits until container `id` is healthy or unhealthy, or exits, reading its state every 50 ms; `None` waits
/// as long as it takes. A container still `created` is waited for (compose may start it meanwhile).
pub fn wait_healthy(store: &ContainerStore, id: &str, timeout: Option<Duration>) -> Result<HealthOutcome> {
    let c = store.load(id)?;
    if Check::of(&c).is_none() {
        return Ok(HealthOutcome::NoHealthcheck);
    }
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let state = store.state(id)?;
        let health = state.health.as_ref().map(|h| h.status);
        match state.status {
            Status::Exited | Status::Dead | Status::Removing => return Ok(HealthOutcome::Exited(state.exit_code)),
            Status::Running => match health {
                Some(HealthStatus::Healthy) => return Ok(HealthOutcome::Healthy),
                Some(HealthStatus::Unhealthy) => return Ok(HealthOutcome::Unhealthy),
                _ => {}
            },
            Status::Created | Status::Paused | Status::Restarting => {}
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(HealthOutcome::TimedOut(if state.status == Status::Created { None } else { health }));
        }
        std::thread::sleep(WAIT_POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(start_period: Duration, retries: u32) -> Check {
        Check {
            command: vec!["true".into()],
            interval: Duration::from_millis(200),
            timeout: Duration::from_secs(1),
            start_period,
            start_interval: Duration::from_millis(50),
            retries,
        }
    }

    fn result(code: i32) -> ProbeResult {
        ProbeResult { exit_code: code, output: format!("exit {code}"), ..ProbeResult::default() }
    }

    #[test]
    fn failures_count_up_to_retries_then_a_success_heals() {
        let c = check(Duration::ZERO, 2);
        let s = Duration::from_secs(1);
        let h = next_health(&Health::default(), result(1), s, &c);
        assert_eq!((h.status, h.failing_streak), (HealthStatus::Starting, 1));
        let h = next_health(&h, result(1), s, &c);
        assert_eq!((h.status, h.failing_streak), (HealthStatus::Unhealthy, 2));
        let h = next_health(&h, result(1), s, &c);
        assert_eq!((h.status, h.failing_streak), (HealthStatus::Unhealthy, 3));
        let h = next_health(&h, result(0), s, &c);
        assert_eq!((h.status, h.failing_streak), (HealthStatus::Healthy, 0));
        // A healthy container needs `retries` failures in a row again.
        let h = next_health(&h, result(1), s, &c);
        assert_eq!((h.status, h.failing_streak), (HealthStatus::Healthy, 1));
    }

    #[test]
    fn start_period_failures_do_not_count_but_a_success_does() {
        let c = check(Duration::from_secs(10), 1);
        let early = Duration::from_secs(2);
        let h = next_health(&Health::default(), result(1), early, &c);
        assert_eq!((h.status, h.failing_streak), (HealthStatus::Starting, 0));
        assert_eq!(h.log.len(), 1, "ignored failures are still logged");
        let healthy = next_health(&h, result(0), early, &c);
        assert_eq!(healthy.status, HealthStatus::Healthy);
        // Once healthy, the start period no longer protects.
        assert_eq!(next_health(&healthy, result(1), early, &c).status, HealthStatus::Unhealthy);
        // After the start period, failures count.
        assert_eq!(next_health(&h, result(1), Duration::from_secs(11), &c).status, HealthStatus::Unhealthy);
    }

    #[test]
    fn log_keeps_the_last_five() {
        let c = check(Duration::ZERO, 3);
        let mut h = Health::default();
        for code in 0..7 {
            h = next_health(&h, result(code), Duration::from_secs(1), &c);
        }
        let codes: Vec<i32> = h.log.iter().map(|r| r.exit_code).collect();
        assert_eq!(codes, [2, 3, 4, 5, 6]);
    }

    #[test]
    fn start_interval_applies_while_starting_in_the_start_period() {
        let c = check(Duration::from_secs(1), 3);
        assert_eq!(c.next_delay(HealthStatus::Starting, Duration::ZERO), c.start_interval);
        assert_eq!(c.next_delay(HealthStatus::Healthy, Duration::ZERO), c.interval);
        assert_eq!(c.next_delay(HealthStatus::Starting, Duration::from_secs(2)), c.interval);
    }

    #[test]
    fn configs_get_docker_defaults_and_test_forms() {
        let shell = HealthConfig { test: vec!["CMD-SHELL".into(), "test -f /ok".into()], ..HealthConfig::default() };
        let c = Check::from_config(&shell);
        assert_eq!(
            c.as_ref().map(|c| c.command.clone()),
            Some(vec!["/bin/sh".into(), "-c".into(), "test -f /ok".into()])
        );
        assert_eq!(
            c.as_ref().map(|c| (c.interval, c.timeout, c.retries)),
            Some((DEFAULT_INTERVAL, DEFAULT_TIMEOUT, 3))
        );
        let exec = HealthConfig { test: vec!["CMD".into(), "true".into()], retries: 7, ..HealthConfig::default() };
        assert_eq!(Check::from_config(&exec).map(|c| (c.command, c.retries)), Some((vec!["true".into()], 7)));
        assert_eq!(Check::from_config(&HealthConfig { test: vec!["NONE".into()], ..HealthConfig::default() }), None);
        assert_eq!(Check::from_config(&HealthConfig::default()), None);
    }

    #[test]
    fn flags_override_the_image_field_by_field() -> Result<()> {
        let image = HealthConfig {
            test: vec!["CMD".into(), "check".into()],
            interval: 5_000_000_000,
            retries: 5,
            ..HealthConfig::default()
        };
        let flags = HealthFlags { interval: Some(Duration::from_millis(200)), ..HealthFlags::default() };
        let merged = merge_config(Some(&image), flags.to_override().as_ref(), false)?;
        assert_eq!(
            merged,
            Some(HealthConfig { interval: 200_000_000, ..image.clone() }),
            "test and retries from the image, interval from the flag"
        );
        let flags = HealthFlags { cmd: Some("true".into()), ..HealthFlags::default() };
        let merged = merge_config(Some(&image), flags.to_override().as_ref(), false)?;
        assert_eq!(merged.map(|m| m.test), Some(vec!["CMD-SHELL".into(), "true".into()]));
        assert_eq!(merge_config(Some(&image), None, true)?.map(|m| m.test), Some(vec!["NONE".into()]));
        assert!(merge_config(None, flags.to_override().as_ref(), true).is_err(), "--no-healthcheck conflicts");
        assert_eq!(HealthFlags::default().to_override(), None);
        let tiny = HealthConfig { interval: 10, ..image.clone() };
        assert!(merge_config(None, Some(&tiny), false).is_err(), "under 1ms");
        let bad = HealthConfig { test: vec!["RUN".into(), "x".into()], ..HealthConfig::default() };
        assert!(merge_config(None, Some(&bad), false).is_err());
        Ok(())
    }

    #[test]
    fn durations_print_as_go_does() {
        assert_eq!(go_duration(Duration::from_secs(30)), "30s");
        assert_eq!(go_duration(Duration::from_millis(300)), "300ms");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(go_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn wait_healthy_reads_the_state_until_it_decides() -> Result<()> {
        use super::super::store::{write_json, HostConfig, RunSettings, State};
        let tmp = tempfile::tempdir().map_err(super::super::io_err("cannot create a temp dir"))?;
        let store = ContainerStore::open(&crate::root::Root::open(tmp.path())?);
        let record = |id: &str, healthcheck: Option<HealthConfig>| -> Result<()> {
            std::fs::create_dir_all(store.dir(id)).map_err(super::super::io_err("cannot create a dir"))?;
            let c = Container {
                id: id.to_owned(),
                name: id.to_owned(),
                created: String::new(),
                image_id: String::new(),
                path: "sleep".into(),
                args: Vec::new(),
                config: RunSettings { healthcheck, ..RunSettings::default() },
                host_config: HostConfig::default(),
                layers: Vec::new(),
            };
            store.save(&c, &store.lock()?)
        };
        let me = std::process::id() as i32;
        let running = |status: HealthStatus| State {
            status: Status::Running,
            monitor_pid: me,
            monitor_start: super::super::store::process_start_time(me).unwrap_or_default(),
            health: Some(Health { status, ..Health::default() }),
            ..State::default()
        };
        let shell = HealthConfig { test: vec!["CMD-SHELL".into(), "true".into()], ..HealthConfig::default() };

        record("plain", None)?;
        assert_eq!(wait_healthy(&store, "plain", None)?, HealthOutcome::NoHealthcheck);
        record("off", Some(HealthConfig { test: vec!["NONE".into()], ..HealthConfig::default() }))?;
        assert_eq!(wait_healthy(&store, "off", None)?, HealthOutcome::NoHealthcheck);

        record("c", Some(shell))?;
        write_json(&store.dir("c").join("state.json"), &State::default())?;
        assert_eq!(wait_healthy(&store, "c", Some(Duration::from_millis(60)))?, HealthOutcome::TimedOut(None));
        let state_path = store.dir("c").join("state.json");
        write_json(&state_path, &running(HealthStatus::Starting))?;
        assert_eq!(
            wait_healthy(&store, "c", Some(Duration::from_millis(60)))?,
            HealthOutcome::TimedOut(Some(HealthStatus::Starting))
        );
        let later = {
            let path = state_path.clone();
            let healthy = running(HealthStatus::Healthy);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(120));
                write_json(&path, &healthy)
            })
        };
        assert_eq!(wait_healthy(&store, "c", Some(Duration::from_secs(10)))?, HealthOutcome::Healthy);
        assert!(later.join().is_ok_and(|r| r.is_ok()));
        write_json(&state_path, &running(HealthStatus::Unhealthy))?;
        assert_eq!(wait_healthy(&store, "c", None)?, HealthOutcome::Unhealthy);
        write_json(&state_path, &State { status: Status::Exited, exit_code: 3, ..running(HealthStatus::Unhealthy) })?;
        assert_eq!(wait_healthy(&store, "c", None)?, HealthOutcome::Exited(3));
        Ok(())
    }

    #[test]
    fn output_is_cut_at_4096_bytes() {
        assert_eq!(output_text(&[b'x'; 5000]).len(), MAX_OUTPUT);
        assert_eq!(output_text(b"ok\n"), "ok\n");
    }
}
