//! The database: one schema on two engines (SQLite embedded, PostgreSQL for
//! production and several nodes), through sqlx's `Any` driver.
//!
//! Portable by construction: `$N` placeholders (both engines accept them;
//! only the generated bulk insert spells them per engine), integers for
//! times (unix milliseconds) and sizes, TEXT for JSON.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Executor, Row};

use crate::accounts::AccountId;
use crate::domain::AppId;

mod accounts;
mod apps;
mod messaging;
mod outbox;
mod payment;
mod storage;

pub use accounts::Grant;
pub(crate) use apps::app_deleted;
pub use apps::{
    AppRecord, AuditEntry, Change, DirectoryEntry, LifecycleError, QueueEntry, Registration, Route,
    VersionRecord,
};
pub use messaging::INBOX_CHANNEL;
pub use outbox::{EVENTS_CHANNEL, EventRecord, PendingEvent, event_id};
pub use storage::StoredKey;

/// Which engine a [`Db`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// A pool of connections to the platform's database, migrated on connect.
#[derive(Debug, Clone)]
pub struct Db {
    pool: AnyPool,
    engine: Engine,
    /// What `connect` was given, for connections outside the pool
    /// (PostgreSQL's LISTEN).
    url: String,
}

/// The usage record of one call.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CallRecord {
    pub id: String,
    pub appid: AppId,
    pub version: i64,
    /// `request` or `event`.
    pub entry: &'static str,
    pub started_at: i64,
    pub fuel_consumed: u64,
    pub wall_time_us: u64,
    pub peak_memory_bytes: u64,
    pub host_calls: u64,
    pub outcome: &'static str,
    pub detail: Option<String>,
    #[serde(skip)]
    pub log: String,
}

/// A call's usage record as read back, with or without its log.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StoredCall {
    pub id: String,
    pub version: i64,
    pub entry: String,
    pub started_at: i64,
    pub fuel_consumed: i64,
    pub wall_time_us: i64,
    pub peak_memory_bytes: i64,
    pub host_calls: i64,
    pub outcome: String,
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
}

/// The most usage records one INSERT statement writes (12 parameters each,
/// well under both engines' parameter limits); a power of two.
pub const CALLS_PER_INSERT: usize = 256;

/// The id of a call made at `at_ms`: 12 hex digits of the time (unix
/// milliseconds), then 20 random ones. An app's ids sort by when the calls
/// were made, which [`Db::recent_calls`] and [`Db::forget_calls`] rely on,
/// and new records append to the end of their index instead of landing at
/// random places in it.
pub fn call_id(at_ms: i64) -> String {
    let mut id = [0u8; 16];
    id[..6].copy_from_slice(&call_time_prefix(at_ms));
    id[6..].copy_from_slice(&rand::random::<[u8; 10]>());
    hex::encode(id)
}

/// The first six bytes of the ids of calls made at `at_ms`.
fn call_time_prefix(at_ms: i64) -> [u8; 6] {
    let bytes = (at_ms.max(0) as u64).to_be_bytes();
    [bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7]]
}

/// A secret users guess at, whose wrong guesses lock it for a while.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Secret {
    /// An account's sign-in password.
    Password,
    /// A user's payment PIN.
    Pin,
}

impl Secret {
    /// Where its wrong guesses are counted: table, key column, count column.
    fn columns(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Secret::Password => ("accounts", "id", "failed_logins"),
            Secret::Pin => ("pay_pins", "account_id", "failed"),
        }
    }
}

/// A guess at a secret, counted before it is checked: guesses sent at once
/// are refused past the limit instead of queueing to be checked after the
/// lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// Counted; `left` more wrong guesses lock, 0 when this one locked.
    Counted { left: i64 },
    /// Guessing is locked until `until` (unix ms).
    Locked { until: i64 },
}

impl Db {
    /// Counts a guess at `account`'s `secret` unless it is locked at `now`;
    /// the `max`th in a row locks it until `lock_until` and starts the count
    /// over. One statement, so guesses on every node count. A right guess
    /// then clears the count with [`Db::clear_attempts`].
    pub async fn take_attempt(
        &self,
        secret: Secret,
        account: AccountId,
        max: i64,
        now: i64,
        lock_until: i64,
    ) -> anyhow::Result<Attempt> {
        let (table, key, count) = secret.columns();
        let row = sqlx::query(&format!(
            "UPDATE {table} SET \
             locked_until = CASE WHEN {count} + 1 >= $1 THEN $2 ELSE locked_until END, \
             {count} = CASE WHEN {count} + 1 >= $1 THEN 0 ELSE {count} + 1 END \
             WHERE {key} = $3 AND locked_until <= $4 RETURNING {count}"
        ))
        .bind(max)
        .bind(lock_until)
        .bind(account)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(row) = row {
            let failed: i64 = row.try_get(0)?;
            return Ok(Attempt::Counted {
                left: if failed == 0 { 0 } else { max - failed },
            });
        }
        let until = sqlx::query(&format!(
            "SELECT locked_until FROM {table} WHERE {key} = $1"
        ))
        .bind(account)
        .fetch_optional(&self.pool)
        .await?
        .map(|row| row.try_get(0))
        .transpose()?
        .unwrap_or(0);
        Ok(Attempt::Locked { until })
    }

    /// Forgets wrong guesses at `account`'s `secret`, and the lock they set,
    /// after a right one.
    pub async fn clear_attempts(&self, secret: Secret, account: AccountId) -> anyhow::Result<()> {
        let (table, key, count) = secret.columns();
        sqlx::query(&format!(
            "UPDATE {table} SET {count} = 0, locked_until = 0 \
             WHERE {key} = $1 AND ({count} <> 0 OR locked_until <> 0)"
        ))
        .bind(account)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Db {
    /// Connects to `url` (`sqlite://path` or `postgres://...`), creating an
    /// SQLite file if missing, and applies pending migrations.
    pub async fn connect(url: &str) -> anyhow::Result<Db> {
        install_default_drivers();
        let engine = if url.starts_with("sqlite:") {
            Engine::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Engine::Postgres
        } else {
            anyhow::bail!("unsupported database URL {url:?}: use sqlite://PATH or postgres://...");
        };
        let mut options = AnyPoolOptions::new();
        let url = match engine {
            Engine::Sqlite => {
                // A file this process holds open never goes stale: no ping
                // (a round trip to the connection's thread) before each use.
                options = options
                    .max_connections(8)
                    .test_before_acquire(false)
                    .after_connect(|conn, _meta| {
                        Box::pin(async move {
                            conn.execute(
                                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                             PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;",
                            )
                            .await?;
                            Ok(())
                        })
                    });
                if url.contains('?') {
                    url.to_string()
                } else {
                    format!("{url}?mode=rwc")
                }
            }
            Engine::Postgres => {
                options = options.max_connections(16);
                url.to_string()
            }
        };
        let pool = options
            .connect(&url)
            .await
            .with_context(|| format!("connecting to {}", redact(&url)))?;
        let migrator = match engine {
            Engine::Sqlite => sqlx::migrate!("migrations/sqlite"),
            Engine::Postgres => sqlx::migrate!("migrations/postgres"),
        };
        migrator.run(&pool).await.context("applying migrations")?;
        Ok(Db { pool, engine, url })
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Checks the database answers.
    pub async fn ping(&self) -> anyhow::Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Writes a batch of usage records, many per statement: with SQLite
    /// every statement is a round trip to its worker thread, so batching is
    /// what keeps metering cheap. Statements insert a power-of-two number of
    /// rows (37 records: 32 + 4 + 1), so a handful of statement shapes serve
    /// every batch size and stay in the prepared-statement cache. The batch
    /// is one transaction: all of it is written or none, so a retry of a
    /// failed batch never finds half of it already there, and the batch
    /// costs one commit, not one per statement.
    pub async fn insert_calls(&self, mut calls: &[CallRecord]) -> anyhow::Result<()> {
        const COLUMNS: usize = 12;
        let mut tx = self.pool.begin().await?;
        while !calls.is_empty() {
            let rows = 1usize << calls.len().min(CALLS_PER_INSERT).ilog2();
            let (chunk, rest) = calls.split_at(rows);
            calls = rest;
            let mut sql = String::from(
                "INSERT INTO calls (id, appid, version, entry, started_at, fuel_consumed, \
                 wall_time_us, peak_memory_bytes, host_calls, outcome, detail, log) VALUES ",
            );
            for row in 0..chunk.len() {
                sql.push_str(if row == 0 { "(" } else { ", (" });
                for column in 0..COLUMNS {
                    if column > 0 {
                        sql.push_str(", ");
                    }
                    match self.engine {
                        // Anonymous: SQLite looks numbered names up by a
                        // linear scan, quadratic over thousands of parameters.
                        Engine::Sqlite => sql.push('?'),
                        Engine::Postgres => {
                            sql.push_str(&format!("${}", row * COLUMNS + column + 1))
                        }
                    }
                }
                sql.push(')');
            }
            let mut query = sqlx::query(&sql);
            for call in chunk {
                query = query
                    .bind(&call.id)
                    .bind(call.appid.as_str())
                    .bind(call.version)
                    .bind(call.entry)
                    .bind(call.started_at)
                    .bind(saturating_i64(call.fuel_consumed))
                    .bind(saturating_i64(call.wall_time_us))
                    .bind(saturating_i64(call.peak_memory_bytes))
                    .bind(saturating_i64(call.host_calls))
                    .bind(call.outcome)
                    .bind(call.detail.as_deref())
                    .bind(&call.log);
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Deletes the usage records of calls made before `cutoff_ms`, app by
    /// app, at most `chunk` records per statement so that no statement holds
    /// the write lock for long; returns how many went.
    ///
    /// The apps are those with records, not those registered: a call that
    /// finished while its app was being deleted leaves a record after the
    /// deletion removed the others, and that one goes at its time too.
    /// They are found by skipping through the primary key, one seek per
    /// app, and each app's records through it too: an id below the
    /// cutoff's time prefix is a call made before it.
    pub async fn forget_calls(&self, cutoff_ms: i64, chunk: i64) -> anyhow::Result<u64> {
        let below = hex::encode(call_time_prefix(cutoff_ms));
        let appids: Vec<String> = sqlx::query_scalar(
            "WITH RECURSIVE owners (appid) AS ( \
               SELECT MIN(appid) FROM calls \
               UNION ALL \
               SELECT (SELECT MIN(c.appid) FROM calls c WHERE c.appid > owners.appid) \
               FROM owners WHERE owners.appid IS NOT NULL) \
             SELECT appid FROM owners WHERE appid IS NOT NULL",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut forgotten = 0;
        for appid in appids {
            loop {
                let deleted = sqlx::query(
                    "DELETE FROM calls WHERE appid = $1 AND id IN \
                     (SELECT id FROM calls WHERE appid = $1 AND id < $2 ORDER BY id LIMIT $3)",
                )
                .bind(&appid)
                .bind(&below)
                .bind(chunk)
                .execute(&self.pool)
                .await?
                .rows_affected();
                forgotten += deleted;
                if deleted < chunk.max(1) as u64 {
                    break;
                }
            }
        }
        Ok(forgotten)
    }

    /// The latest usage records of an app, newest first, without logs.
    pub async fn recent_calls(&self, appid: &AppId, limit: i64) -> anyhow::Result<Vec<StoredCall>> {
        let rows = sqlx::query(
            "SELECT id, version, entry, started_at, fuel_consumed, wall_time_us, \
             peak_memory_bytes, host_calls, outcome, detail FROM calls \
             WHERE appid = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(appid.as_str())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|row| stored_call(row, None)).collect()
    }

    /// One call's usage record with its log.
    pub async fn call(&self, appid: &AppId, id: &str) -> anyhow::Result<Option<StoredCall>> {
        let row = sqlx::query(
            "SELECT id, version, entry, started_at, fuel_consumed, wall_time_us, \
             peak_memory_bytes, host_calls, outcome, detail, log FROM calls \
             WHERE appid = $1 AND id = $2",
        )
        .bind(appid.as_str())
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            let log: String = row.try_get(10)?;
            stored_call(&row, Some(log))
        })
        .transpose()
    }
}

fn stored_call(row: &sqlx::any::AnyRow, log: Option<String>) -> anyhow::Result<StoredCall> {
    Ok(StoredCall {
        id: row.try_get(0)?,
        version: row.try_get(1)?,
        entry: row.try_get(2)?,
        started_at: row.try_get(3)?,
        fuel_consumed: row.try_get(4)?,
        wall_time_us: row.try_get(5)?,
        peak_memory_bytes: row.try_get(6)?,
        host_calls: row.try_get(7)?,
        outcome: row.try_get(8)?,
        detail: row.try_get(9)?,
        log,
    })
}

fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A database URL without its password, for error messages and logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _password)) => {
                    format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..])
                }
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            super::redact("postgres://app:s3cret@db:5432/miniapp"),
            "postgres://app:***@db:5432/miniapp"
        );
        assert_eq!(
            super::redact("sqlite://data/miniapp.db"),
            "sqlite://data/miniapp.db"
        );
    }
}
