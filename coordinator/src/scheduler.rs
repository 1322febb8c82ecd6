//! Background work of a serving coordinator: expiring leases (a job whose runner stopped heartbeating is
//! re-queued once, then failed `runner lost`). Every coordinator runs it; the store's transactions make two
//! coordinators doing it at once harmless.

use std::time::Duration;

use crate::api::AppState;
use crate::store::now_ms;

/// How often leases are checked.
pub const EXPIRY_INTERVAL: Duration = Duration::from_secs(1);

/// Runs forever: expires leases every [`EXPIRY_INTERVAL`] and wakes runners when jobs were re-queued.
pub async fn expire_leases_forever(state: AppState) {
    let mut tick = tokio::time::interval(EXPIRY_INTERVAL);
    loop {
        tick.tick().await;
        match state.store.expire_leases(now_ms()).await {
            Ok(expired) => {
                for id in &expired.requeued {
                    tracing::warn!(job.id = id, "lease expired: job re-queued");
                }
                for id in &expired.failed {
                    tracing::warn!(job.id = id, "lease expired again: job failed (runner lost)");
                    if let Ok(job) = state.store.job(*id).await {
                        crate::statuses::spawn_report(&state, job.pipeline_id);
                    }
                }
                if !expired.requeued.is_empty() {
                    state.wake_runners();
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot expire leases"),
        }
    }
}
