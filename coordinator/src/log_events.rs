//! In-process wake-ups for live logs: the runner API's events path calls [`LogEvents::notify`] after it stored a
//! log chunk or finished a step, and each dashboard live-log stream waits on the [`LogWatch`] of its
//! `(job, step)` instead of re-reading the step's log on a timer.
//!
//! A notification carries no data, only "look again": the store stays the one copy of the log, so a stream that
//! missed a wake-up (or runs on another coordinator behind a load balancer, which this process cannot wake)
//! still finds everything on its next read. Streams therefore also look again after a fallback interval
//! ([`LogEvents::FALLBACK`] by default) without a notification. One `tokio::sync::watch` channel per key that has watchers:
//! a notification for a key nobody watches costs a map lookup, and a key's channel is dropped when its last
//! watcher goes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;

/// A step of a job: (job ID, step index).
pub type LogKey = (i64, i64);

/// The per-step wake-up channels (see the module doc).
#[derive(Debug)]
pub struct LogEvents {
    channels: Mutex<HashMap<LogKey, watch::Sender<u64>>>,
    fallback: Duration,
}

impl Default for LogEvents {
    fn default() -> LogEvents {
        LogEvents::with_fallback(LogEvents::FALLBACK)
    }
}

/// One stream's wake-ups for one step.
#[derive(Debug)]
pub struct LogWatch {
    rx: watch::Receiver<u64>,
    fallback: Duration,
}

impl LogEvents {
    /// How long a stream waits without a notification before it reads the store again anyway (another
    /// coordinator appended, or the job ended in a way this process did not see: a lease expired, a cancel).
    pub const FALLBACK: Duration = Duration::from_secs(5);

    /// Streams read again after `fallback` without a notification (tests set an hour: then only a
    /// notification can wake a stream).
    pub fn with_fallback(fallback: Duration) -> LogEvents {
        LogEvents { channels: Mutex::default(), fallback }
    }

    /// Starts watching `key`. Watch before reading the store, so that an append between the read and the wait
    /// still wakes the stream.
    pub fn watch(&self, key: LogKey) -> LogWatch {
        let mut channels = self.channels.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let tx = channels.entry(key).or_insert_with(|| watch::channel(0).0);
        // A new receiver has seen the current value: only later notifications wake it.
        LogWatch { rx: tx.subscribe(), fallback: self.fallback }
    }

    /// Wakes every stream watching `key` (its log grew, or the step finished).
    pub fn notify(&self, key: LogKey) {
        let mut channels = self.channels.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(tx) = channels.get(&key) {
            if tx.receiver_count() == 0 {
                channels.remove(&key);
            } else {
                tx.send_modify(|generation| *generation = generation.wrapping_add(1));
            }
        }
    }

    /// Wakes every stream watching any step of `job_id` (the job ended: its streams end too).
    pub fn notify_job(&self, job_id: i64) {
        let mut channels = self.channels.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        channels.retain(|(job, _), tx| {
            if *job == job_id {
                tx.send_modify(|generation| *generation = generation.wrapping_add(1));
            }
            tx.receiver_count() > 0
        });
    }

    /// How many steps have a channel (for tests: channels go with their last watcher).
    pub fn channel_count(&self) -> usize {
        self.channels.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).len()
    }
}

impl LogWatch {
    /// Waits for the next notification, or at most the fallback interval. True when woken by a notification.
    pub async fn wait(&mut self) -> bool {
        matches!(tokio::time::timeout(self.fallback, self.rx.changed()).await, Ok(Ok(())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_notification_wakes_only_the_watchers_of_its_step() {
        let events = LogEvents::with_fallback(Duration::from_secs(3600));
        let mut step0 = events.watch((1, 0));
        let mut step1 = events.watch((1, 1));
        events.notify((1, 0));
        // A notification before the wait is not lost; with an hour's fallback only a notification wakes a watch.
        assert!(step0.wait().await, "step 0 was notified");
        assert!(!step1.rx.has_changed().unwrap_or(true), "step 1 was not");
        events.notify((1, 1));
        assert!(step1.wait().await);
        events.notify_job(1);
        assert!(step0.wait().await && step1.wait().await);
    }

    #[tokio::test]
    async fn channels_go_with_their_last_watcher() {
        let events = LogEvents::default();
        let watch = events.watch((7, 0));
        events.notify((8, 0));
        assert_eq!(events.channel_count(), 1, "notifying a step nobody watches makes no channel");
        drop(watch);
        events.notify((7, 0));
        assert_eq!(events.channel_count(), 0);
        let _again = events.watch((7, 0));
        events.notify_job(9);
        assert_eq!(events.channel_count(), 1);
    }
}
