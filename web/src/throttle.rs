//! Sign-in throttling: after [`MAX_FAILURES`] wrong passwords for one user name within [`WINDOW_MS`], that name
//! cannot sign in until the window has passed (429), whatever the password.
//!
//! Counters live in this process only: they are not state worth keeping (a restart forgets them), and behind a
//! load balancer each coordinator counts on its own, which still bounds guessing to a few tries a minute per
//! name. The price is that someone can lock a known name out for [`WINDOW_MS`] by failing on purpose; for a
//! self-hosted CI that is better than unlimited guessing. At most [`MAX_NAMES`] names are tracked.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::model::UnixMillis;

pub const MAX_FAILURES: u32 = 10;
pub const WINDOW_MS: u64 = 10 * 60 * 1000;
pub const MAX_NAMES: usize = 10_000;

#[derive(Debug, Default)]
pub struct SignInThrottle {
    failures: Mutex<HashMap<String, (u32, UnixMillis)>>,
}

impl SignInThrottle {
    /// When `name` may try again, if it is locked out now.
    pub fn locked_until(&self, name: &str, now: UnixMillis) -> Option<UnixMillis> {
        let failures = self.failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match failures.get(&name.to_lowercase()) {
            Some(&(count, since)) if count >= MAX_FAILURES && now < since + WINDOW_MS => Some(since + WINDOW_MS),
            _ => None,
        }
    }

    /// Counts a wrong password for `name`.
    pub fn failed(&self, name: &str, now: UnixMillis) {
        let mut failures = self.failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if failures.len() >= MAX_NAMES {
            failures.retain(|_, (_, since)| now < *since + WINDOW_MS);
        }
        if failures.len() >= MAX_NAMES {
            return;
        }
        let entry = failures.entry(name.to_lowercase()).or_insert((0, now));
        if now >= entry.1 + WINDOW_MS {
            *entry = (0, now);
        }
        entry.0 += 1;
    }

    /// Forgets `name`'s failures (a successful sign-in).
    pub fn succeeded(&self, name: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        failures.remove(&name.to_lowercase());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_locked_after_too_many_failures_until_the_window_ends() {
        let throttle = SignInThrottle::default();
        for i in 0..MAX_FAILURES {
            assert_eq!(throttle.locked_until("Alice", 1_000 + u64::from(i)), None);
            throttle.failed("Alice", 1_000 + u64::from(i));
        }
        assert_eq!(throttle.locked_until("alice", 2_000), Some(1_000 + WINDOW_MS));
        assert_eq!(throttle.locked_until("bob", 2_000), None);
        assert_eq!(throttle.locked_until("alice", 1_000 + WINDOW_MS), None);
        throttle.failed("alice", 1_000 + WINDOW_MS);
        assert_eq!(throttle.locked_until("alice", 1_000 + WINDOW_MS), None, "a new window starts at one failure");
        throttle.succeeded("alice");
    }
}
