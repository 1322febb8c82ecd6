//! Webhook deliveries: stored on receipt (deduplicated by GitHub's `X-GitHub-Delivery`), processed afterwards by
//! a background task, which also finds the ones a crash left unprocessed. Receipt goes by group commit
//! ([`Store::record_deliveries`], fed by `api::webhook_intake`): every delivery waiting at that moment in one
//! transaction.

use std::collections::HashSet;
use std::fmt::Write as _;

use super::{col, now_ms, Result, Store};

/// Rows per `INSERT` statement of [`Store::record_deliveries`] (4 parameters each: far below SQLite's 32,766).
const INSERT_ROWS: usize = 200;

/// A delivery as received, for [`Store::record_deliveries`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    pub delivery_id: String,
    pub event: String,
    pub body: Vec<u8>,
    /// When the request arrived (Unix ms), not when it was written: deliveries are processed in this order, ties
    /// broken by ID, so a batch keeps the order of arrival to the millisecond.
    pub received_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub delivery_id: String,
    pub event: String,
    pub body: Vec<u8>,
}

impl Store {
    /// Stores a delivery; `false` when one with this ID was stored before (a redelivery), which changes nothing.
    pub async fn record_delivery(&self, delivery_id: &str, event: &str, body: &[u8]) -> Result<bool> {
        let delivery = NewDelivery {
            delivery_id: delivery_id.to_string(),
            event: event.to_string(),
            body: body.to_vec(),
            received_at_ms: now_ms(),
        };
        Ok(self.record_deliveries(std::slice::from_ref(&delivery)).await?.first().copied().unwrap_or(false))
    }

    /// Stores `deliveries` in one write transaction; per delivery, in order, `true` when it is new and `false` for
    /// a redelivery — its ID stored before, by any coordinator, or earlier in this very list — which changes
    /// nothing. The answer is exact: the primary key decides (`ON CONFLICT DO NOTHING … RETURNING`), and of one ID
    /// given twice only the first is new. Nothing is stored when this fails.
    pub async fn record_deliveries(&self, deliveries: &[NewDelivery]) -> Result<Vec<bool>> {
        if deliveries.is_empty() {
            return Ok(Vec::new());
        }
        let mut inserted: HashSet<String> = HashSet::new();
        let mut w = self.write().await?;
        for chunk in deliveries.chunks(INSERT_ROWS) {
            let mut sql =
                String::from("INSERT INTO webhook_deliveries (delivery_id, event, body, received_at) VALUES ");
            for i in 0..chunk.len() {
                let p = i * 4;
                let separator = if i == 0 { "" } else { ", " };
                let _ = write!(sql, "{separator}(${}, ${}, ${}, ${})", p + 1, p + 2, p + 3, p + 4);
            }
            sql.push_str(" ON CONFLICT (delivery_id) DO NOTHING RETURNING delivery_id");
            let mut query = sqlx::query(&sql);
            for d in chunk {
                query = query
                    .bind(d.delivery_id.as_str())
                    .bind(d.event.as_str())
                    .bind(d.body.as_slice())
                    .bind(d.received_at_ms);
            }
            for row in query.fetch_all(&mut *w.tx).await? {
                inserted.insert(col(&row, "delivery_id")?);
            }
        }
        w.commit().await?;
        // An inserted ID's first occurrence is the new one; a later one in the list is a redelivery.
        Ok(deliveries.iter().map(|d| inserted.remove(&d.delivery_id)).collect())
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
