//! Webhook deliveries: stored on receipt (deduplicated by GitHub's `X-GitHub-Delivery`), processed afterwards by
//! a background task, which also finds the ones a crash left unprocessed.

use super::{col, now_ms, Result, Store};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub delivery_id: String,
    pub event: String,
    pub body: Vec<u8>,
}

impl Store {
    /// Stores a delivery; `false` when one with this ID was stored before (a redelivery), which changes nothing.
    pub async fn record_delivery(&self, delivery_id: &str, event: &str, body: &[u8]) -> Result<bool> {
        let mut w = self.write().await?;
        let done = sqlx::query(
            "INSERT INTO webhook_deliveries (delivery_id, event, body, received_at) VALUES ($1, $2, $3, $4) ON \
             CONFLICT (delivery_id) DO NOTHING",
        )
        .bind(delivery_id)
        .bind(event)
        .bind(body)
        .bind(now_ms())
        .execute(&mut *w.tx)
        .await?;
        w.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Up to `limit` deliveries not processed yet, oldest first.
    pub async fn unprocessed_deliveries(&self, limit: i64) -> Result<Vec<Delivery>> {
        let rows = sqlx::query(
            "SELECT delivery_id, event, body FROM webhook_deliveries WHERE processed_at IS NULL ORDER BY received_at, \
             delivery_id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Delivery { delivery_id: col(r, "delivery_id")?, event: col(r, "event")?, body: col(r, "body")? })
            })
            .collect()
    }

    /// Marks a delivery processed with what came of it.
    pub async fn finish_delivery(&self, delivery_id: &str, pipeline_id: Option<i64>, outcome: &str) -> Result<()> {
        let mut w = self.write().await?;
        sqlx::query(
            "UPDATE webhook_deliveries SET processed_at = $1, pipeline_id = $2, outcome = $3 WHERE delivery_id = $4",
        )
        .bind(now_ms())
        .bind(pipeline_id)
        .bind(outcome)
        .bind(delivery_id)
        .execute(&mut *w.tx)
        .await?;
        w.commit().await
    }
}
