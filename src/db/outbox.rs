//! The outbox: platform events for programs, written in the transaction of
//! what they report, and claimed by one node's dispatcher at a time.

use sqlx::{Any, Row, Transaction};

use super::{Db, Engine};
use crate::domain::AppId;

/// An event waiting for delivery, as a dispatcher claimed it.
#[derive(Debug, Clone)]
pub struct PendingEvent {
    pub id: i64,
    pub appid: AppId,
    pub channel: String,
    pub topic: String,
    pub payload: String,
    /// Deliveries tried before this one.
    pub attempts: i64,
    /// Until when this claim holds; a report after it lapsed (and another
    /// node claimed the event) changes nothing.
    pub lease_until: i64,
}

/// An event as its app's developer sees it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EventRecord {
    pub id: String,
    pub topic: String,
    pub payload: String,
    /// `pending`, `delivered` or `failed` (no retry left).
    pub state: String,
    pub attempts: i64,
    pub next_attempt_at: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub delivered_at: Option<i64>,
}

/// The id a program sees for the outbox row `id`.
pub fn event_id(id: i64) -> String {
    format!("evt_{id}")
}

/// The PostgreSQL channel that tells every node's dispatcher an event is
/// due.
pub const EVENTS_CHANNEL: &str = "miniapp_events";

impl Db {
    /// Queues an event in the caller's transaction, due at once; on
    /// PostgreSQL, tells every node's dispatcher when the transaction commits.
    pub(super) async fn enqueue(
        &self,
        tx: &mut Transaction<'static, Any>,
        appid: &AppId,
        channel: &str,
        topic: &str,
        payload: &str,
        now: i64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO outbox (appid, channel, topic, payload, state, attempts, \
             next_attempt_at, created_at) VALUES ($1, $2, $3, $4, 'pending', 0, $5, $5)",
        )
        .bind(appid.as_str())
        .bind(channel)
        .bind(topic)
        .bind(payload)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        if self.engine == Engine::Postgres {
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(EVENTS_CHANNEL)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// Claims up to `limit` due events for this node until `lease_until`:
    /// other nodes skip them until then, and if this node dies first they
    /// fall due again.
    pub async fn claim_events(
        &self,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> anyhow::Result<Vec<PendingEvent>> {
        // PostgreSQL nodes claim concurrently: each skips the rows another
        // holds. SQLite has one writer, and one node.
        let lock = match self.engine {
            Engine::Postgres => "FOR UPDATE SKIP LOCKED",
            Engine::Sqlite => "",
        };
        let rows = sqlx::query(&format!(
            "UPDATE outbox SET next_attempt_at = $1 WHERE id IN (SELECT id FROM outbox \
             WHERE state = 'pending' AND next_attempt_at <= $2 \
             ORDER BY next_attempt_at, id LIMIT $3 {lock}) \
             RETURNING id, appid, channel, topic, payload, attempts, next_attempt_at"
        ))
        .bind(lease_until)
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let appid: String = row.try_get(1)?;
                Ok(PendingEvent {
                    id: row.try_get(0)?,
                    appid: appid.parse().map_err(anyhow::Error::msg)?,
                    channel: row.try_get(2)?,
                    topic: row.try_get(3)?,
                    payload: row.try_get(4)?,
                    attempts: row.try_get(5)?,
                    lease_until: row.try_get(6)?,
                })
            })
            .collect()
    }

    /// The program acknowledged the event. Only while this claim holds.
    pub async fn event_delivered(&self, event: &PendingEvent, now: i64) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE outbox SET state = 'delivered', attempts = attempts + 1, delivered_at = $1, \
             last_error = NULL WHERE id = $2 AND state = 'pending' AND next_attempt_at = $3",
        )
        .bind(now)
        .bind(event.id)
        .bind(event.lease_until)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A delivery failed: try again at `retry_at`, or never (`None`). Only
    /// while this claim holds.
    pub async fn event_failed(
        &self,
        event: &PendingEvent,
        error: &str,
        retry_at: Option<i64>,
    ) -> anyhow::Result<()> {
        let state = if retry_at.is_some() {
            "pending"
        } else {
            "failed"
        };
        sqlx::query(
            "UPDATE outbox SET state = $1, attempts = attempts + 1, next_attempt_at = $2, \
             last_error = $3 WHERE id = $4 AND state = 'pending' AND next_attempt_at = $5",
        )
        .bind(state)
        .bind(retry_at.unwrap_or(i64::MAX))
        .bind(error)
        .bind(event.id)
        .bind(event.lease_until)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Deletes events delivered before `cutoff`; returns how many.
    pub async fn forget_delivered_events(&self, cutoff: i64) -> anyhow::Result<u64> {
        Ok(
            sqlx::query("DELETE FROM outbox WHERE state = 'delivered' AND delivered_at < $1")
                .bind(cutoff)
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }

    /// When the next pending event falls due, if any is pending.
    pub async fn next_event_due(&self) -> anyhow::Result<Option<i64>> {
        let row = sqlx::query("SELECT MIN(next_attempt_at) FROM outbox WHERE state = 'pending'")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get(0)?)
    }

    /// An app's latest events, newest first.
    pub async fn app_events(&self, appid: &AppId, limit: i64) -> anyhow::Result<Vec<EventRecord>> {
        let rows = sqlx::query(
            "SELECT id, topic, payload, state, attempts, next_attempt_at, last_error, created_at, \
             delivered_at FROM outbox WHERE appid = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(appid.as_str())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let state: String = row.try_get(3)?;
                let next: i64 = row.try_get(5)?;
                Ok(EventRecord {
                    id: event_id(row.try_get(0)?),
                    topic: row.try_get(1)?,
                    payload: row.try_get(2)?,
                    next_attempt_at: (state == "pending").then_some(next),
                    state,
                    attempts: row.try_get(4)?,
                    last_error: row.try_get(6)?,
                    created_at: row.try_get(7)?,
                    delivered_at: row.try_get(8)?,
                })
            })
            .collect()
    }
}
