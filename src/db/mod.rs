//! The database: one schema on two engines (SQLite embedded, PostgreSQL for
//! production and several nodes), through sqlx's `Any` driver.
//!
//! Portable by construction: `$N` placeholders (both engines accept them),
//! integers for times (unix milliseconds) and sizes, TEXT for JSON.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Executor, Row};

use crate::accounts::AccountId;

mod accounts;
mod apps;
mod calls;
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
pub use calls::{CallRecord, StoredCall, call_id};
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
