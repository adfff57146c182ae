//! Apps, their versions through the lifecycle, releases, testers, the audit
//! log, the directory and launches.

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, Row, Transaction};

use super::{Db, Engine, now_ms};
use crate::accounts::{AccountId, Username};
use crate::domain::{AppId, Sha256Digest};
use crate::lifecycle::{Action, InvalidTransition, KEPT_VERSIONS, Manifest, Scene, VersionState};
use crate::payment::MoneyAccount;
use crate::runtime::ComponentInfo;

/// An app as stored.
#[derive(Debug, Clone)]
pub struct AppRecord {
    pub appid: AppId,
    pub owner_id: Option<AccountId>,
    pub owner: Option<String>,
    pub name: String,
    pub description: String,
    pub secret_sha256: Option<String>,
    pub created_at: i64,
    pub release: Route,
}

/// Which versions of an app users reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub released_version: Option<i64>,
    pub release_percent: u8,
    pub fallback_version: Option<i64>,
    pub previous_version: Option<i64>,
    pub trial_version: Option<i64>,
}

/// A version as stored, without its component bytes.
#[derive(Debug, Clone)]
pub struct VersionRecord {
    pub appid: AppId,
    pub version: i64,
    pub label: String,
    pub state: VersionState,
    pub sha256: Sha256Digest,
    pub size: i64,
    pub imports: Vec<String>,
    pub exports: Vec<String>,
    pub manifest: Manifest,
    pub notes: String,
    pub created_at: i64,
    pub submitted_at: Option<i64>,
    pub reviewed_at: Option<i64>,
    pub reviewer: Option<String>,
    pub review_reason: Option<String>,
}

/// One lifecycle transition, as the audit log keeps it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AuditEntry {
    pub at: i64,
    pub actor: Option<String>,
    pub version: Option<i64>,
    pub action: String,
    pub from: Option<String>,
    pub to: Option<String>,
    pub reason: Option<String>,
}

/// A released app as the directory lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DirectoryEntry {
    pub appid: String,
    pub name: String,
    pub description: String,
}

/// A submitted version waiting for review.
#[derive(Debug, Clone, serde::Serialize)]
pub struct QueueEntry {
    pub appid: String,
    pub version: i64,
    pub label: String,
    pub name: String,
    pub developer: Option<String>,
    pub submitted_at: i64,
}

/// What a transition changes besides the version's state.
#[derive(Debug, Clone)]
pub enum Change<'a> {
    Trial,
    Submit { notes: &'a str },
    Withdraw,
    Review { reason: Option<&'a str> },
}

/// What registering an appid came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    Created,
    /// A live app has the appid.
    Taken,
    /// A deleted app had it; appids are never reused.
    Retired,
}

/// Why a lifecycle write was refused.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error("version {0} not found")]
    VersionNotFound(i64),
    #[error(transparent)]
    Transition(#[from] InvalidTransition),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<sqlx::Error> for LifecycleError {
    fn from(err: sqlx::Error) -> Self {
        LifecycleError::Internal(err.into())
    }
}

const APP_COLUMNS: &str = "a.appid, a.owner_id, o.username, a.name, a.description, \
    a.secret_sha256, a.created_at, a.released_version, a.release_percent, \
    a.fallback_version, a.previous_version, a.trial_version";

const APP_FROM: &str = "apps a LEFT JOIN accounts o ON o.id = a.owner_id";

fn app(row: &AnyRow) -> anyhow::Result<AppRecord> {
    let appid: String = row.try_get(0)?;
    Ok(AppRecord {
        appid: appid.parse().map_err(anyhow::Error::msg)?,
        owner_id: row.try_get(1)?,
        owner: row.try_get(2)?,
        name: row.try_get(3)?,
        description: row.try_get(4)?,
        secret_sha256: row.try_get(5)?,
        created_at: row.try_get(6)?,
        release: route(row, 7)?,
    })
}

/// The five route columns, in `Route`'s order, from column `first` on.
fn route(row: &AnyRow, first: usize) -> anyhow::Result<Route> {
    let percent: i64 = row.try_get(first + 1)?;
    Ok(Route {
        released_version: row.try_get(first)?,
        release_percent: percent.clamp(0, 100) as u8,
        fallback_version: row.try_get(first + 2)?,
        previous_version: row.try_get(first + 3)?,
        trial_version: row.try_get(first + 4)?,
    })
}

const VERSION_COLUMNS: &str = "v.appid, v.version, v.label, v.state, v.sha256, c.size, v.imports, \
    v.exports, v.manifest, v.notes, v.created_at, v.submitted_at, v.reviewed_at, r.username, \
    v.review_reason";

const VERSION_FROM: &str = "versions v JOIN components c ON c.sha256 = v.sha256 \
    LEFT JOIN accounts r ON r.id = v.reviewer_id";

fn version(row: &AnyRow) -> anyhow::Result<VersionRecord> {
    let appid: String = row.try_get(0)?;
    let state: String = row.try_get(3)?;
    let sha: String = row.try_get(4)?;
    let imports: String = row.try_get(6)?;
    let exports: String = row.try_get(7)?;
    let manifest: String = row.try_get(8)?;
    Ok(VersionRecord {
        appid: appid.parse().map_err(anyhow::Error::msg)?,
        version: row.try_get(1)?,
        label: row.try_get(2)?,
        state: state.parse().map_err(anyhow::Error::msg)?,
        sha256: sha.parse().map_err(anyhow::Error::msg)?,
        size: row.try_get(5)?,
        imports: serde_json::from_str(&imports)?,
        exports: serde_json::from_str(&exports)?,
        manifest: serde_json::from_str(&manifest)?,
        notes: row.try_get(9)?,
        created_at: row.try_get(10)?,
        submitted_at: row.try_get(11)?,
        reviewed_at: row.try_get(12)?,
        reviewer: row.try_get(13)?,
        review_reason: row.try_get(14)?,
    })
}

/// Takes the app's row lock first thing in a transaction: on PostgreSQL a
/// row lock, on SQLite the database's write lock. Starting with a write
/// means an SQLite transaction never has to upgrade a read lock, which can
/// fail under concurrency instead of waiting.
async fn lock_app(tx: &mut Transaction<'_, Any>, appid: &AppId) -> anyhow::Result<bool> {
    let locked = sqlx::query("UPDATE apps SET appid = appid WHERE appid = $1")
        .bind(appid.as_str())
        .execute(&mut **tx)
        .await?;
    Ok(locked.rows_affected() == 1)
}

/// Advisory-lock class of the lock that keeps an app from being deleted
/// while a write for it is in flight (PostgreSQL only).
const APP_HOLD_CLASS: i32 = 0x6d61;

impl Db {
    /// Begins a transaction for a write that may race `appid`'s deletion:
    /// a storage write, order or login code of a call still running, a
    /// user's message, subscription, grant or launch.
    /// The write checks in a statement of the transaction that the app
    /// exists. On PostgreSQL the transaction first takes a shared advisory
    /// lock that [`Db::delete_app`] takes exclusively: a delete waits for
    /// the writes in flight, and writes that come after it wait for it and
    /// then find the app gone (they check in a later statement, with a
    /// fresh snapshot). On SQLite the first write of a transaction takes
    /// the database's one write lock, which orders them anyway.
    pub(super) async fn begin_for_app(
        &self,
        appid: &str,
    ) -> anyhow::Result<Transaction<'static, Any>> {
        let mut tx = self.pool.begin().await?;
        if self.engine == Engine::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock_shared($1, hashtext($2))")
                .bind(APP_HOLD_CLASS)
                .bind(appid)
                .execute(&mut *tx)
                .await?;
        }
        Ok(tx)
    }

    /// Runs one statement that writes for `appid` only while the app
    /// exists (its own `EXISTS` check) and returns a row when it wrote, held
    /// against the app's deletion as [`Db::begin_for_app`] holds. On SQLite
    /// the statement alone is enough: it runs under the one write lock.
    pub(super) async fn write_for_app<'q>(
        &self,
        appid: &str,
        statement: Query<'q, Any, AnyArguments<'q>>,
    ) -> anyhow::Result<Option<AnyRow>> {
        if self.engine == Engine::Sqlite {
            return Ok(statement.fetch_optional(&self.pool).await?);
        }
        let mut tx = self.begin_for_app(appid).await?;
        let row = statement.fetch_optional(&mut *tx).await?;
        tx.commit().await?;
        Ok(row)
    }
}

/// What a write for an app deleted meanwhile answers.
pub(crate) fn app_deleted(appid: &str) -> String {
    format!("app {appid} no longer exists: it was deleted")
}

async fn audit(
    tx: &mut Transaction<'_, Any>,
    appid: &AppId,
    version: Option<i64>,
    actor: Option<AccountId>,
    action: &str,
    states: (Option<VersionState>, Option<VersionState>),
    reason: Option<&str>,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO audit_log (appid, version, actor_id, action, from_state, to_state, reason, at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(appid.as_str())
    .bind(version)
    .bind(actor)
    .bind(action)
    .bind(states.0.map(VersionState::as_str))
    .bind(states.1.map(VersionState::as_str))
    .bind(reason)
    .bind(now_ms())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn set_state(
    tx: &mut Transaction<'_, Any>,
    appid: &AppId,
    version: i64,
    state: VersionState,
) -> anyhow::Result<()> {
    sqlx::query("UPDATE versions SET state = $1 WHERE appid = $2 AND version = $3")
        .bind(state.as_str())
        .bind(appid.as_str())
        .bind(version)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn state_in_tx(
    tx: &mut Transaction<'_, Any>,
    appid: &AppId,
    version: i64,
) -> anyhow::Result<Option<VersionState>> {
    let row = sqlx::query("SELECT state FROM versions WHERE appid = $1 AND version = $2")
        .bind(appid.as_str())
        .bind(version)
        .fetch_optional(&mut **tx)
        .await?;
    row.map(|row| {
        let state: String = row.try_get(0)?;
        state.parse().map_err(anyhow::Error::msg)
    })
    .transpose()
}

impl Db {
    /// Registers an app under an appid never registered before.
    pub async fn create_app(
        &self,
        appid: &AppId,
        owner: AccountId,
        name: &str,
        description: &str,
        secret_sha256: &str,
    ) -> anyhow::Result<Registration> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        // The claim is one statement on the appids key, so of two concurrent
        // registrations one waits and then finds the appid taken.
        let claimed = sqlx::query(
            "INSERT INTO appids (appid, created_at) VALUES ($1, $2) ON CONFLICT (appid) DO NOTHING",
        )
        .bind(appid.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if claimed.rows_affected() == 0 {
            let live = sqlx::query("SELECT 1 FROM apps WHERE appid = $1")
                .bind(appid.as_str())
                .fetch_optional(&mut *tx)
                .await?;
            return Ok(if live.is_some() {
                Registration::Taken
            } else {
                Registration::Retired
            });
        }
        sqlx::query(
            "INSERT INTO apps (appid, created_at, owner_id, name, description, secret_sha256) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(appid.as_str())
        .bind(now)
        .bind(owner)
        .bind(name)
        .bind(description)
        .bind(secret_sha256)
        .execute(&mut *tx)
        .await?;
        audit(
            &mut tx,
            appid,
            None,
            Some(owner),
            "create",
            (None, None),
            None,
        )
        .await?;
        tx.commit().await?;
        Ok(Registration::Created)
    }

    pub async fn app(&self, appid: &AppId) -> anyhow::Result<Option<AppRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {APP_COLUMNS} FROM {APP_FROM} WHERE a.appid = $1"
        ))
        .bind(appid.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(app).transpose()
    }

    /// The apps of one owner, or with `None` every app; by appid.
    pub async fn apps(&self, owner: Option<AccountId>) -> anyhow::Result<Vec<AppRecord>> {
        let rows =
            match owner {
                Some(owner) => sqlx::query(&format!(
                    "SELECT {APP_COLUMNS} FROM {APP_FROM} WHERE a.owner_id = $1 ORDER BY a.appid"
                ))
                .bind(owner)
                .fetch_all(&self.pool)
                .await?,
                None => {
                    sqlx::query(&format!(
                        "SELECT {APP_COLUMNS} FROM {APP_FROM} ORDER BY a.appid"
                    ))
                    .fetch_all(&self.pool)
                    .await?
                }
            };
        rows.iter().map(app).collect()
    }

    pub async fn set_app_secret(&self, appid: &AppId, secret_sha256: &str) -> anyhow::Result<()> {
        sqlx::query("UPDATE apps SET secret_sha256 = $1 WHERE appid = $2")
            .bind(secret_sha256)
            .bind(appid.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn testers(&self, appid: &AppId) -> anyhow::Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT a.username FROM testers t JOIN accounts a ON a.id = t.account_id \
             WHERE t.appid = $1 ORDER BY a.username",
        )
        .bind(appid.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|row| Ok(row.try_get(0)?)).collect()
    }

    /// Replaces an app's testers. Returns the usernames that name no account
    /// (and then changes nothing).
    pub async fn set_testers(
        &self,
        appid: &AppId,
        testers: &[Username],
    ) -> anyhow::Result<Vec<String>> {
        let mut tx = self.pool.begin().await?;
        lock_app(&mut tx, appid).await?;
        sqlx::query("DELETE FROM testers WHERE appid = $1")
            .bind(appid.as_str())
            .execute(&mut *tx)
            .await?;
        let mut unique: Vec<&Username> = testers.iter().collect();
        unique.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        unique.dedup();
        let mut unknown = Vec::new();
        for tester in unique {
            let added = sqlx::query(
                "INSERT INTO testers (appid, account_id) \
                 SELECT $1, id FROM accounts WHERE username = $2",
            )
            .bind(appid.as_str())
            .bind(tester.as_str())
            .execute(&mut *tx)
            .await?;
            if added.rows_affected() == 0 {
                unknown.push(tester.to_string());
            }
        }
        if unknown.is_empty() {
            tx.commit().await?;
        }
        Ok(unknown)
    }

    pub async fn is_tester(&self, appid: &AppId, account: AccountId) -> anyhow::Result<bool> {
        let row = sqlx::query("SELECT 1 FROM testers WHERE appid = $1 AND account_id = $2")
            .bind(appid.as_str())
            .bind(account)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    /// Stores an uploaded component (once per sha256) as the app's next
    /// version, in development, and prunes versions past the newest
    /// [`KEPT_VERSIONS`] that nothing refers to. Returns the new number.
    pub async fn add_version(
        &self,
        appid: &AppId,
        digest: &Sha256Digest,
        bytes: &[u8],
        info: &ComponentInfo,
        manifest: &Manifest,
        uploaded_by: Option<AccountId>,
    ) -> anyhow::Result<i64> {
        let now = now_ms();
        let sha = digest.to_string();
        let mut tx = self.pool.begin().await?;
        // One statement both numbers the version and locks the app's row, so
        // concurrent uploads get distinct numbers on either engine.
        let version: i64 = sqlx::query(
            "UPDATE apps SET latest_version = latest_version + 1 WHERE appid = $1 \
             RETURNING latest_version",
        )
        .bind(appid.as_str())
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        sqlx::query(
            "INSERT INTO components (sha256, size, bytes, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (sha256) DO NOTHING",
        )
        .bind(&sha)
        .bind(bytes.len() as i64)
        .bind(bytes)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO versions (appid, version, sha256, imports, exports, created_at, label, \
             manifest, state, uploaded_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(appid.as_str())
        .bind(version)
        .bind(&sha)
        .bind(serde_json::to_string(&info.imports)?)
        .bind(serde_json::to_string(&info.exports)?)
        .bind(now)
        .bind(&manifest.version)
        .bind(serde_json::to_string(manifest)?)
        .bind(VersionState::Development.as_str())
        .bind(uploaded_by)
        .execute(&mut *tx)
        .await?;
        audit(
            &mut tx,
            appid,
            Some(version),
            uploaded_by,
            "upload",
            (None, Some(VersionState::Development)),
            None,
        )
        .await?;
        prune_versions(&mut tx, appid, version).await?;
        tx.commit().await?;
        Ok(version)
    }

    pub async fn version(
        &self,
        appid: &AppId,
        version_number: i64,
    ) -> anyhow::Result<Option<VersionRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {VERSION_COLUMNS} FROM {VERSION_FROM} WHERE v.appid = $1 AND v.version = $2"
        ))
        .bind(appid.as_str())
        .bind(version_number)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(version).transpose()
    }

    /// The kept versions of an app, newest first.
    pub async fn versions(&self, appid: &AppId) -> anyhow::Result<Vec<VersionRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {VERSION_COLUMNS} FROM {VERSION_FROM} WHERE v.appid = $1 \
             ORDER BY v.version DESC"
        ))
        .bind(appid.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(version).collect()
    }

    /// The component and manifest of a version, to run it.
    pub async fn runnable(
        &self,
        appid: &AppId,
        version_number: i64,
    ) -> anyhow::Result<Option<(Sha256Digest, Manifest)>> {
        let row =
            sqlx::query("SELECT sha256, manifest FROM versions WHERE appid = $1 AND version = $2")
                .bind(appid.as_str())
                .bind(version_number)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|row| {
            let sha: String = row.try_get(0)?;
            let manifest: String = row.try_get(1)?;
            Ok((
                sha.parse().map_err(anyhow::Error::msg)?,
                serde_json::from_str(&manifest)?,
            ))
        })
        .transpose()
    }

    /// The bytes of a stored component.
    pub async fn component_bytes(&self, digest: &Sha256Digest) -> anyhow::Result<Vec<u8>> {
        let row = sqlx::query("SELECT bytes FROM components WHERE sha256 = $1")
            .bind(digest.to_string())
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get(0)?)
    }

    /// Moves a version along the lifecycle (everything but release and
    /// rollback), with its audit entry, in one transaction. The state check
    /// is part of the UPDATE, so of two concurrent transitions from one
    /// state exactly one succeeds.
    pub async fn transition(
        &self,
        appid: &AppId,
        version_number: i64,
        action: Action,
        change: Change<'_>,
        actor: Option<AccountId>,
    ) -> Result<(), LifecycleError> {
        let mut tx = self.pool.begin().await?;
        lock_app(&mut tx, appid).await?;
        let Some(current) = state_in_tx(&mut tx, appid, version_number).await? else {
            return Err(LifecycleError::VersionNotFound(version_number));
        };
        crate::lifecycle::check_transition(action, version_number, current)?;
        let now = now_ms();
        let target = action.target();
        let mut reason = None;
        match change {
            Change::Trial => {
                // One trial version per app: the previous one goes back to development.
                sqlx::query("UPDATE versions SET state = $1 WHERE appid = $2 AND state = $3")
                    .bind(VersionState::Development.as_str())
                    .bind(appid.as_str())
                    .bind(VersionState::Trial.as_str())
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("UPDATE apps SET trial_version = $1 WHERE appid = $2")
                    .bind(version_number)
                    .bind(appid.as_str())
                    .execute(&mut *tx)
                    .await?;
            }
            Change::Submit { notes } => {
                let in_review =
                    sqlx::query("SELECT version FROM versions WHERE appid = $1 AND state = $2")
                        .bind(appid.as_str())
                        .bind(VersionState::Submitted.as_str())
                        .fetch_optional(&mut *tx)
                        .await?;
                if let Some(row) = in_review {
                    let other: i64 = row.try_get(0)?;
                    return Err(LifecycleError::Conflict(format!(
                        "version {other} is already in review: withdraw it or wait for its review"
                    )));
                }
                sqlx::query(
                    "UPDATE versions SET submitted_at = $1, notes = $2, reviewed_at = NULL, \
                     reviewer_id = NULL, review_reason = NULL WHERE appid = $3 AND version = $4",
                )
                .bind(now)
                .bind(notes)
                .bind(appid.as_str())
                .bind(version_number)
                .execute(&mut *tx)
                .await?;
                if current == VersionState::Trial {
                    clear_trial(&mut tx, appid, version_number).await?;
                }
                reason = Some(notes);
            }
            Change::Withdraw => {
                sqlx::query(
                    "UPDATE versions SET submitted_at = NULL WHERE appid = $1 AND version = $2",
                )
                .bind(appid.as_str())
                .bind(version_number)
                .execute(&mut *tx)
                .await?;
            }
            Change::Review { reason: why } => {
                sqlx::query(
                    "UPDATE versions SET reviewed_at = $1, reviewer_id = $2, review_reason = $3 \
                     WHERE appid = $4 AND version = $5",
                )
                .bind(now)
                .bind(actor)
                .bind(why)
                .bind(appid.as_str())
                .bind(version_number)
                .execute(&mut *tx)
                .await?;
                reason = why;
            }
        }
        set_state(&mut tx, appid, version_number, target).await?;
        audit(
            &mut tx,
            appid,
            Some(version_number),
            actor,
            action.as_str(),
            (Some(current), Some(target)),
            reason.filter(|r| !r.is_empty()),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Releases an approved version to `percent` of users, or changes the
    /// percentage of the version being released.
    pub async fn release(
        &self,
        appid: &AppId,
        version_number: i64,
        percent: u8,
        actor: Option<AccountId>,
    ) -> Result<(), LifecycleError> {
        let mut tx = self.pool.begin().await?;
        lock_app(&mut tx, appid).await?;
        let route = route_in_tx(&mut tx, appid).await?;
        let Some(current) = state_in_tx(&mut tx, appid, version_number).await? else {
            return Err(LifecycleError::VersionNotFound(version_number));
        };
        let reason = format!("{percent}%");
        if route.released_version == Some(version_number) {
            // A new percentage for the version being released.
            let mut route = route;
            route.release_percent = percent;
            if percent == 100
                && let Some(fallback) = route.fallback_version.take()
            {
                set_state(&mut tx, appid, fallback, VersionState::Retired).await?;
                route.previous_version = Some(fallback);
            }
            store_route(&mut tx, appid, &route).await?;
            audit(
                &mut tx,
                appid,
                Some(version_number),
                actor,
                "release",
                (Some(current), Some(current)),
                Some(&reason),
            )
            .await?;
            tx.commit().await?;
            return Ok(());
        }
        crate::lifecycle::check_transition(Action::Release, version_number, current)?;
        if let (Some(phased), true) = (route.released_version, route.release_percent < 100) {
            return Err(LifecycleError::Conflict(format!(
                "version {phased} is in a phased release at {}%: release it at 100% or roll it \
                 back before releasing version {version_number}",
                route.release_percent
            )));
        }
        let mut next = route;
        next.released_version = Some(version_number);
        next.release_percent = percent;
        if let Some(old) = route.released_version {
            if percent == 100 {
                set_state(&mut tx, appid, old, VersionState::Retired).await?;
                next.previous_version = Some(old);
            } else {
                next.fallback_version = Some(old);
            }
        }
        set_state(&mut tx, appid, version_number, VersionState::Released).await?;
        store_route(&mut tx, appid, &next).await?;
        audit(
            &mut tx,
            appid,
            Some(version_number),
            actor,
            "release",
            (Some(current), Some(VersionState::Released)),
            Some(&reason),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Puts back the release before the current one: the fallback of a
    /// phased release, else the previous full release. Returns the version
    /// users now reach.
    pub async fn rollback(
        &self,
        appid: &AppId,
        actor: Option<AccountId>,
    ) -> Result<i64, LifecycleError> {
        let mut tx = self.pool.begin().await?;
        lock_app(&mut tx, appid).await?;
        let route = route_in_tx(&mut tx, appid).await?;
        let Some(current) = route.released_version else {
            return Err(LifecycleError::Conflict(
                "the app has no release to roll back".into(),
            ));
        };
        let mut next = route;
        let restored = if let Some(fallback) = route.fallback_version {
            next.fallback_version = None;
            fallback
        } else if let Some(previous) = route.previous_version {
            next.previous_version = None;
            set_state(&mut tx, appid, previous, VersionState::Released).await?;
            previous
        } else {
            return Err(LifecycleError::Conflict(format!(
                "version {current} is the app's first release: there is nothing to roll back to"
            )));
        };
        next.released_version = Some(restored);
        next.release_percent = 100;
        set_state(&mut tx, appid, current, VersionState::Retired).await?;
        store_route(&mut tx, appid, &next).await?;
        audit(
            &mut tx,
            appid,
            Some(current),
            actor,
            "rollback",
            (Some(VersionState::Released), Some(VersionState::Retired)),
            Some(&format!("version {restored} restored")),
        )
        .await?;
        tx.commit().await?;
        Ok(restored)
    }

    /// Removes an app and everything kept for it: versions, stored data of
    /// the app and of its users, grants, testers, codes, launches, usage
    /// records, its audit log, its subscriptions, conversations and queued
    /// events; then components no version uses any more. Its unpaid orders
    /// are closed. Kept: what records a payment (orders, refunds, payouts,
    /// ledger entries) and the messages in users' inboxes, which belong to
    /// the users; the appid stays registered, so no later app inherits them.
    /// Refused while the app's merchant account holds money.
    pub async fn delete_app(&self, appid: &AppId) -> Result<(), LifecycleError> {
        let mut tx = self.pool.begin().await?;
        lock_app(&mut tx, appid).await?;
        if self.engine == Engine::Postgres {
            // Waits for the writes in flight (see `begin_for_app`). Advisory
            // locks queue fairly, so a stream of writes cannot starve this.
            sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
                .bind(APP_HOLD_CLASS)
                .bind(appid.as_str())
                .execute(&mut *tx)
                .await?;
        }
        // Closed before the balance is read: a confirmation racing this
        // either commits first, and its money is in the balance, or finds
        // its order closed.
        sqlx::query("UPDATE pay_orders SET state = 'CLOSED' WHERE appid = $1 AND state = 'NOTPAY'")
            .bind(appid.as_str())
            .execute(&mut *tx)
            .await?;
        let merchant = MoneyAccount::Merchant(appid.clone()).id();
        let balance: i64 = sqlx::query("SELECT balance FROM pay_accounts WHERE id = $1")
            .bind(&merchant)
            .fetch_optional(&mut *tx)
            .await?
            .map(|row| row.try_get(0))
            .transpose()?
            .unwrap_or(0);
        if balance > 0 {
            return Err(LifecycleError::Conflict(format!(
                "the app's merchant account holds {balance} fen: pay it out or refund it before \
                 deleting the app"
            )));
        }
        // kv_usage before kv: the order storage writes lock them in, so a
        // write of a call still running cannot deadlock with this.
        for table in [
            "kv_usage",
            "kv",
            "grants",
            "testers",
            "login_codes",
            "launches",
            "call_batches",
            "audit_log",
            "outbox",
            "msg_subscriptions",
            "msg_daily",
            "msg_conversations",
            "msg_received",
            "versions",
            "apps",
        ] {
            sqlx::query(&format!("DELETE FROM {table} WHERE appid = $1"))
                .bind(appid.as_str())
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "DELETE FROM components WHERE NOT EXISTS \
             (SELECT 1 FROM versions v WHERE v.sha256 = components.sha256)",
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The audit log of an app, oldest first.
    pub async fn audit_log(&self, appid: &AppId) -> anyhow::Result<Vec<AuditEntry>> {
        let rows = sqlx::query(
            "SELECT l.at, a.username, l.version, l.action, l.from_state, l.to_state, l.reason \
             FROM audit_log l LEFT JOIN accounts a ON a.id = l.actor_id \
             WHERE l.appid = $1 ORDER BY l.id",
        )
        .bind(appid.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(AuditEntry {
                    at: row.try_get(0)?,
                    actor: row.try_get(1)?,
                    version: row.try_get(2)?,
                    action: row.try_get(3)?,
                    from: row.try_get(4)?,
                    to: row.try_get(5)?,
                    reason: row.try_get(6)?,
                })
            })
            .collect()
    }

    /// Submitted versions in submit order, leaving out the apps `reviewer` develops.
    pub async fn review_queue(&self, reviewer: AccountId) -> anyhow::Result<Vec<QueueEntry>> {
        let rows = sqlx::query(
            "SELECT v.appid, v.version, v.label, a.name, o.username, v.submitted_at \
             FROM versions v JOIN apps a ON a.appid = v.appid \
             LEFT JOIN accounts o ON o.id = a.owner_id \
             WHERE v.state = $1 AND (a.owner_id IS NULL OR a.owner_id <> $2) \
             ORDER BY v.submitted_at, v.appid, v.version",
        )
        .bind(VersionState::Submitted.as_str())
        .bind(reviewer)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(QueueEntry {
                    appid: row.try_get(0)?,
                    version: row.try_get(1)?,
                    label: row.try_get(2)?,
                    name: row.try_get(3)?,
                    developer: row.try_get(4)?,
                    submitted_at: row.try_get(5)?,
                })
            })
            .collect()
    }

    /// Released apps whose appid, name or description contains `query`
    /// (case-insensitive), by name.
    pub async fn directory(&self, query: &str, limit: i64) -> anyhow::Result<Vec<DirectoryEntry>> {
        let escaped: String = query
            .to_lowercase()
            .chars()
            .flat_map(|c| match c {
                '%' | '_' | '\\' => vec!['\\', c],
                c => vec![c],
            })
            .collect();
        let rows = sqlx::query(
            "SELECT appid, name, description FROM apps WHERE released_version IS NOT NULL \
             AND (LOWER(name) LIKE $1 ESCAPE '\\' OR LOWER(description) LIKE $1 ESCAPE '\\' \
                  OR appid LIKE $1 ESCAPE '\\') \
             ORDER BY name, appid LIMIT $2",
        )
        .bind(format!("%{escaped}%"))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(DirectoryEntry {
                    appid: row.try_get(0)?,
                    name: row.try_get(1)?,
                    description: row.try_get(2)?,
                })
            })
            .collect()
    }

    /// Records that a user opened an app. Returns the launch's id, or
    /// `None` when there is no such app (deleted meanwhile).
    #[allow(clippy::too_many_arguments)]
    pub async fn insert_launch(
        &self,
        appid: &AppId,
        account: AccountId,
        version_number: i64,
        channel: &str,
        path: &str,
        query: &str,
        scene: Scene,
    ) -> anyhow::Result<Option<i64>> {
        let launch = sqlx::query(
            "INSERT INTO launches (appid, account_id, version, channel, path, query, scene, at) \
             SELECT $1, $2, $3, $4, $5, $6, $7, $8 \
             WHERE EXISTS (SELECT 1 FROM apps WHERE appid = $1) RETURNING id",
        )
        .bind(appid.as_str())
        .bind(account)
        .bind(version_number)
        .bind(channel)
        .bind(path)
        .bind(query)
        .bind(scene.as_str())
        .bind(now_ms());
        let row = self.write_for_app(appid.as_str(), launch).await?;
        Ok(row.map(|row| row.try_get(0)).transpose()?)
    }

    /// How many launches an app has had, by scene.
    pub async fn launch_counts(&self, appid: &AppId) -> anyhow::Result<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT scene, COUNT(*) FROM launches WHERE appid = $1 GROUP BY scene ORDER BY scene",
        )
        .bind(appid.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect()
    }
}

async fn route_in_tx(tx: &mut Transaction<'_, Any>, appid: &AppId) -> anyhow::Result<Route> {
    let row = sqlx::query(
        "SELECT released_version, release_percent, fallback_version, previous_version, \
         trial_version FROM apps WHERE appid = $1",
    )
    .bind(appid.as_str())
    .fetch_one(&mut **tx)
    .await?;
    route(&row, 0)
}

async fn store_route(
    tx: &mut Transaction<'_, Any>,
    appid: &AppId,
    route: &Route,
) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE apps SET released_version = $1, release_percent = $2, fallback_version = $3, \
         previous_version = $4, trial_version = $5 WHERE appid = $6",
    )
    .bind(route.released_version)
    .bind(i64::from(route.release_percent))
    .bind(route.fallback_version)
    .bind(route.previous_version)
    .bind(route.trial_version)
    .bind(appid.as_str())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn clear_trial(
    tx: &mut Transaction<'_, Any>,
    appid: &AppId,
    version_number: i64,
) -> anyhow::Result<()> {
    sqlx::query("UPDATE apps SET trial_version = NULL WHERE appid = $1 AND trial_version = $2")
        .bind(appid.as_str())
        .bind(version_number)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Deletes versions older than the newest [`KEPT_VERSIONS`] that are
/// neither served, nor a rollback target, nor the trial, nor in review, and
/// then any component no version uses any more.
async fn prune_versions(
    tx: &mut Transaction<'_, Any>,
    appid: &AppId,
    newest: i64,
) -> anyhow::Result<()> {
    let doomed = sqlx::query(
        "SELECT v.version, v.sha256 FROM versions v JOIN apps a ON a.appid = v.appid \
         WHERE v.appid = $1 AND v.version <= $2 AND v.state IN ($3, $4, $5) \
         AND v.version IS DISTINCT FROM a.released_version \
         AND v.version IS DISTINCT FROM a.fallback_version \
         AND v.version IS DISTINCT FROM a.previous_version \
         AND v.version IS DISTINCT FROM a.trial_version",
    )
    .bind(appid.as_str())
    .bind(newest - KEPT_VERSIONS)
    .bind(VersionState::Development.as_str())
    .bind(VersionState::Rejected.as_str())
    .bind(VersionState::Retired.as_str())
    .fetch_all(&mut **tx)
    .await?;
    for row in doomed {
        let number: i64 = row.try_get(0)?;
        let sha: String = row.try_get(1)?;
        sqlx::query("DELETE FROM versions WHERE appid = $1 AND version = $2")
            .bind(appid.as_str())
            .bind(number)
            .execute(&mut **tx)
            .await?;
        sqlx::query(
            "DELETE FROM components WHERE sha256 = $1 \
             AND NOT EXISTS (SELECT 1 FROM versions WHERE sha256 = $1)",
        )
        .bind(&sha)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}
