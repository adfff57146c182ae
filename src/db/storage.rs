//! Key-value entries of the storage capability, and their per-partition usage.

use sqlx::Row;

use super::{Db, now_ms};
use crate::storage::{Applied, Entry, Op, Partition, StorageError, parse_counter};

/// One stored key as its user sees it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StoredKey {
    pub key: String,
    pub bytes: i64,
    pub updated_at: i64,
}

impl Db {
    pub async fn kv_get(&self, partition: &Partition, key: &str) -> anyhow::Result<Option<Entry>> {
        let row = sqlx::query(
            "SELECT value, version FROM kv WHERE appid = $1 AND owner_id = $2 AND key = $3",
        )
        .bind(partition.appid.as_str())
        .bind(partition.owner)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            let version: i64 = row.try_get(1)?;
            Ok(Entry {
                value: row.try_get(0)?,
                version: version as u64,
            })
        })
        .transpose()
    }

    /// Applies writes in one transaction, keeping the partition's usage in
    /// step and within `limit_bytes`. The first write locks the partition's
    /// usage row, so writes to one partition never interleave; it also
    /// checks that the app still exists (see [`Db::begin_for_app`]).
    pub async fn kv_apply(
        &self,
        partition: &Partition,
        ops: &[Op],
        limit_bytes: u64,
    ) -> Result<Vec<Applied>, StorageError> {
        let (appid, owner) = (partition.appid.as_str(), partition.owner);
        let mut tx = self.begin_for_app(appid).await?;
        // A call may still run when its app is deleted: its writes after
        // that find no app and store nothing.
        let usage = sqlx::query(
            "INSERT INTO kv_usage (appid, owner_id, keys, bytes) \
             SELECT $1, $2, 0, 0 WHERE EXISTS (SELECT 1 FROM apps WHERE appid = $1) \
             ON CONFLICT (appid, owner_id) DO UPDATE SET keys = kv_usage.keys \
             RETURNING keys, bytes",
        )
        .bind(appid)
        .bind(owner)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| StorageError::Denied(super::app_deleted(appid)))?;
        let (mut keys, mut bytes): (i64, i64) = (usage.try_get(0)?, usage.try_get(1)?);
        let bytes_before = bytes;
        let now = now_ms();
        let mut applied = Vec::with_capacity(ops.len());
        for op in ops {
            let key = op.key();
            let existing = sqlx::query(
                "SELECT octet_length(value), version FROM kv \
                 WHERE appid = $1 AND owner_id = $2 AND key = $3",
            )
            .bind(appid)
            .bind(owner)
            .bind(key)
            .fetch_optional(&mut *tx)
            .await?;
            let existing: Option<(i64, i64)> = existing
                .map(|row| Ok::<_, sqlx::Error>((row.try_get(0)?, row.try_get(1)?)))
                .transpose()?;
            let old_bytes = existing.map_or(0, |(len, _)| len + key.len() as i64);
            let old_version = existing.map_or(0, |(_, version)| version);
            let new_value = match op {
                Op::Set { value, .. } => Some(value.clone()),
                Op::Delete { .. } => None,
                Op::CompareAndSwap {
                    expected_version,
                    value,
                    ..
                } => {
                    if old_version as u64 != *expected_version {
                        return Err(StorageError::Conflict(format!(
                            "key {key:?} is at version {old_version}, not {expected_version}"
                        )));
                    }
                    Some(value.clone())
                }
                Op::Increment { delta, .. } => {
                    let current = match existing {
                        Some(_) => {
                            let row = sqlx::query(
                                "SELECT value FROM kv WHERE appid = $1 AND owner_id = $2 AND key = $3",
                            )
                            .bind(appid)
                            .bind(owner)
                            .bind(key)
                            .fetch_one(&mut *tx)
                            .await?;
                            let value: Vec<u8> = row.try_get(0)?;
                            parse_counter(&value)?
                        }
                        None => 0,
                    };
                    let sum = current.checked_add(*delta).ok_or_else(|| {
                        StorageError::Invalid(format!(
                            "{current} + {delta} overflows a 64-bit integer"
                        ))
                    })?;
                    applied.push(Applied::Counter(sum));
                    Some(sum.to_string().into_bytes())
                }
            };
            match new_value {
                Some(value) => {
                    let version = old_version + 1;
                    sqlx::query(
                        "INSERT INTO kv (appid, owner_id, key, value, version, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6) \
                         ON CONFLICT (appid, owner_id, key) DO UPDATE SET value = excluded.value, \
                         version = excluded.version, updated_at = excluded.updated_at",
                    )
                    .bind(appid)
                    .bind(owner)
                    .bind(key)
                    .bind(&value)
                    .bind(version)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    bytes += (key.len() + value.len()) as i64 - old_bytes;
                    if existing.is_none() {
                        keys += 1;
                    }
                    if !matches!(op, Op::Increment { .. }) {
                        applied.push(Applied::Version(version as u64));
                    }
                }
                None => {
                    if existing.is_some() {
                        sqlx::query(
                            "DELETE FROM kv WHERE appid = $1 AND owner_id = $2 AND key = $3",
                        )
                        .bind(appid)
                        .bind(owner)
                        .bind(key)
                        .execute(&mut *tx)
                        .await?;
                        bytes -= old_bytes;
                        keys -= 1;
                    }
                    applied.push(Applied::Deleted(existing.is_some()));
                }
            }
        }
        // Growing past the quota fails; shrinking an over-quota partition
        // (after a quota was lowered) is always allowed.
        if bytes > limit_bytes as i64 && bytes > bytes_before {
            return Err(StorageError::QuotaExceeded(format!(
                "the write would hold {bytes} bytes; this scope may hold {limit_bytes}"
            )));
        }
        sqlx::query("UPDATE kv_usage SET keys = $1, bytes = $2 WHERE appid = $3 AND owner_id = $4")
            .bind(keys)
            .bind(bytes)
            .bind(appid)
            .bind(owner)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(applied)
    }

    /// Up to `limit` keys of the partition starting with `prefix`, after
    /// `cursor`, in byte order.
    pub async fn kv_keys(
        &self,
        partition: &Partition,
        prefix: &str,
        cursor: Option<&str>,
        limit: i64,
    ) -> anyhow::Result<Vec<String>> {
        // Keys with the prefix sort together, from the prefix itself on:
        // scan from there and stop at the first key without it.
        let (from, exclusive) = match cursor {
            Some(cursor) if cursor >= prefix => (cursor, true),
            _ => (prefix, false),
        };
        let comparison = if exclusive { ">" } else { ">=" };
        let rows = sqlx::query(&format!(
            "SELECT key FROM kv WHERE appid = $1 AND owner_id = $2 AND key {comparison} $3 \
             ORDER BY key LIMIT $4"
        ))
        .bind(partition.appid.as_str())
        .bind(partition.owner)
        .bind(from)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut keys = Vec::with_capacity(rows.len());
        for row in rows {
            let key: String = row.try_get(0)?;
            if !key.starts_with(prefix) {
                break;
            }
            keys.push(key);
        }
        Ok(keys)
    }

    /// Keys and bytes a partition holds.
    pub async fn kv_usage(&self, partition: &Partition) -> anyhow::Result<(u64, u64)> {
        let row =
            sqlx::query("SELECT keys, bytes FROM kv_usage WHERE appid = $1 AND owner_id = $2")
                .bind(partition.appid.as_str())
                .bind(partition.owner)
                .fetch_optional(&self.pool)
                .await?;
        Ok(match row {
            Some(row) => {
                let (keys, bytes): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
                (keys as u64, bytes as u64)
            }
            None => (0, 0),
        })
    }

    /// The keys of a partition with their sizes, for the user they belong to.
    pub async fn kv_listing(
        &self,
        partition: &Partition,
        after: &str,
        limit: i64,
    ) -> anyhow::Result<Vec<StoredKey>> {
        let rows = sqlx::query(
            "SELECT key, octet_length(key) + octet_length(value), updated_at FROM kv \
             WHERE appid = $1 AND owner_id = $2 AND key > $3 ORDER BY key LIMIT $4",
        )
        .bind(partition.appid.as_str())
        .bind(partition.owner)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(StoredKey {
                    key: row.try_get(0)?,
                    bytes: row.try_get(1)?,
                    updated_at: row.try_get(2)?,
                })
            })
            .collect()
    }

    pub async fn kv_clear(&self, partition: &Partition) -> anyhow::Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM kv_usage WHERE appid = $1 AND owner_id = $2")
            .bind(partition.appid.as_str())
            .bind(partition.owner)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM kv WHERE appid = $1 AND owner_id = $2")
            .bind(partition.appid.as_str())
            .bind(partition.owner)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}
