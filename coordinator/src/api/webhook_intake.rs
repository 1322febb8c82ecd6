//! Webhook intake by group commit: `POST /webhooks/github` hands its authenticated delivery to one writer task,
//! which stores every delivery waiting at that moment in a single write transaction
//! ([`Store::record_deliveries`]) and then answers each request — so a `202` always means "durably stored", as
//! before, but a burst costs one transaction instead of one per request.
//!
//! The window is the previous transaction: the writer takes whatever queued up while it was committing (up to
//! [`MAX_BATCH`]), so an idle coordinator stores a lone delivery at once, without waiting for company, and a
//! loaded one — above all on SQLite, where the webhook processor's batch holds the only writer for up to 25 ms —
//! stores a whole queue in one go. Deduplication stays exact: the delivery table's primary key decides, across
//! batches, coordinators and within one batch. Should a batch's transaction fail, its deliveries are stored one
//! transaction each, so one bad row cannot fail the others' requests. The writer is per process and holds nothing
//! that is not also in a waiting request: several coordinators on PostgreSQL each batch their own requests.

use std::sync::OnceLock;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use crate::store::deliveries::NewDelivery;
use crate::store::{Store, StoreError};

/// Most deliveries one transaction stores (the processor's batch size too).
pub const MAX_BATCH: usize = 200;
/// Requests that may wait for the writer before a new one waits to queue (back-pressure, not a limit on load).
const QUEUE: usize = 4096;

/// Why a delivery could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the webhook intake's writer task stopped (see the log for why): restart the coordinator")]
    WriterGone,
}

/// The handle requests store deliveries through; the writer task starts with the first delivery, on the
/// runtime that receives it, and ends when every handle is gone.
pub struct DeliveryIntake {
    store: Store,
    queue: OnceLock<mpsc::Sender<Pending>>,
}

struct Pending {
    delivery: NewDelivery,
    answer: oneshot::Sender<Result<bool, StoreError>>,
}

impl DeliveryIntake {
    pub fn new(store: Store) -> DeliveryIntake {
        DeliveryIntake { store, queue: OnceLock::new() }
    }

    /// Stores `delivery` with whatever else is waiting; returns once that transaction committed: `true` when the
    /// delivery is new, `false` for a redelivery (nothing changed).
    pub async fn record(&self, delivery: NewDelivery) -> Result<bool, IntakeError> {
        let queue = self.queue.get_or_init(|| {
            let (sender, receiver) = mpsc::channel(QUEUE);
            tokio::spawn(write_forever(self.store.clone(), receiver));
            sender
        });
        let (answer, answered) = oneshot::channel();
        queue.send(Pending { delivery, answer }).await.map_err(|_| IntakeError::WriterGone)?;
        Ok(answered.await.map_err(|_| IntakeError::WriterGone)??)
    }
}

/// The writer: one transaction per batch of waiting deliveries, until every handle is dropped.
async fn write_forever(store: Store, mut queue: mpsc::Receiver<Pending>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        write_batch(&store, &mut batch).await;
    }
}

async fn write_batch(store: &Store, batch: &mut Vec<Pending>) {
    let started = Instant::now();
    let (deliveries, answers): (Vec<NewDelivery>, Vec<_>) = batch.drain(..).map(|p| (p.delivery, p.answer)).unzip();
    match store.record_deliveries(&deliveries).await {
        Ok(new) => {
            for (answer, new) in answers.into_iter().zip(new) {
                // A request gone meanwhile (the client hung up) still has its delivery stored: a redelivery of it
                // is answered as a duplicate, and the processor builds it.
                let _ = answer.send(Ok(new));
            }
        }
        Err(e) => {
            tracing::warn!(deliveries = deliveries.len(), error = %e,
                "cannot store the batch of webhook deliveries; storing them one at a time");
            for (delivery, answer) in deliveries.iter().zip(answers) {
                let stored = store.record_deliveries(std::slice::from_ref(delivery)).await;
                let _ = answer.send(stored.map(|new| new.first().copied().unwrap_or(false)));
            }
        }
    }
    tracing::debug!(
        deliveries = deliveries.len(),
        duration_ms = started.elapsed().as_millis() as u64,
        "webhook deliveries stored"
    );
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::store::testing;

    fn delivery(id: &str) -> NewDelivery {
        NewDelivery {
            delivery_id: id.into(),
            event: "push".into(),
            body: format!("{{\"id\": \"{id}\"}}").into_bytes(),
            received_at_ms: crate::store::now_ms(),
        }
    }

    /// 400 concurrent requests, 100 of them redeliveries of others (some in the same batch, some in later ones):
    /// exactly 300 new, each ID stored once, in far fewer transactions than requests.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_requests_share_transactions_and_dedupe_exactly() {
        for db in testing::databases().await {
            let name = db.name;
            let intake = Arc::new(DeliveryIntake::new(db.store.clone()));
            let writes = db.store.write_transactions();
            let tasks: Vec<_> = (0..400)
                .map(|i| {
                    let intake = intake.clone();
                    // Every fourth request redelivers the one before it.
                    let id = if i % 4 == 3 { format!("d-{}", i - 1) } else { format!("d-{i}") };
                    tokio::spawn(async move { intake.record(delivery(&id)).await })
                })
                .collect();
            let mut new = 0;
            for task in tasks {
                match task.await.unwrap_or_else(|e| panic!("{name}: {e}")) {
                    Ok(true) => new += 1,
                    Ok(false) => {}
                    Err(e) => panic!("{name}: {e}"),
                }
            }
            assert_eq!(new, 300, "{name}: one new answer per distinct ID");
            let transactions = db.store.write_transactions() - writes;
            assert!(transactions < 400, "{name}: {transactions} transactions for 400 requests");
            let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM webhook_deliveries")
                .fetch_one(db.store.pool())
                .await
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(stored, 300, "{name}");
            // A later redelivery, alone: a duplicate.
            assert!(!intake.record(delivery("d-0")).await.unwrap_or_else(|e| panic!("{name}: {e}")), "{name}");
        }
    }

    /// One ID twice in one list: the first is new, the second a redelivery; a list over stored IDs adds nothing.
    #[tokio::test]
    async fn one_id_twice_in_a_batch_is_new_once() {
        for db in testing::databases().await {
            let name = db.name;
            let list = [delivery("a"), delivery("b"), delivery("a"), delivery("c")];
            let new = db.store.record_deliveries(&list).await.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(new, [true, true, false, true], "{name}");
            let again = db.store.record_deliveries(&list[1..3]).await.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(again, [false, false], "{name}");
        }
    }
}
