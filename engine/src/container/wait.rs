//! `wait`: block until a container stops, then give its exit code.

use std::time::Duration;

use super::store::ContainerStore;
use super::Result;

/// Waits for container `id` to stop; returns its exit code (the last one seen if it was removed meanwhile).
pub fn wait(store: &ContainerStore, id: &str) -> Result<i32> {
    let mut last = store.state(id)?;
    loop {
        if !last.is_running() {
            return Ok(last.exit_code);
        }
        std::thread::sleep(Duration::from_millis(10));
        match store.state(id) {
            Ok(s) => last = s,
            // Removed by `--rm` right after exiting: the monitor recorded the code before removing.
            Err(_) => return Ok(last.exit_code),
        }
    }
}
