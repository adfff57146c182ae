//! The storage capability's logic: key-value data in partitions the host
//! chooses, with quotas. A partition is (app, owner): the app scope is owner
//! 0, the user scope the calling account. The guest names keys, never whose
//! data; no key it crafts reaches another partition.
//!
//! Consistency: every write is one database transaction, committed before
//! the call continues, so a later read in the same call or any later call
//! sees it (read-your-writes). Writes of one partition are serialised (each
//! locks the partition's usage row first); compare-and-swap and increment
//! are the tools for concurrent updates.

use crate::accounts::AccountId;
use crate::db::Db;
use crate::domain::AppId;

/// The longest key: 256 bytes.
pub const MAX_KEY_BYTES: usize = 256;

/// The most writes in one atomic batch.
pub const MAX_BATCH_WRITES: usize = 100;

/// The most keys in one page of a listing.
pub const MAX_PAGE_KEYS: u32 = 1000;

/// The owner id of the app scope.
const APP_OWNER: AccountId = 0;

/// Bytes a partition may hold, and a value may have. WeChat's figures are
/// the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Quotas {
    /// One value: 1 MiB.
    pub value_bytes: u64,
    /// One user's data in one app, keys and values: 10 MiB.
    pub user_bytes: u64,
    /// The app scope of one app, keys and values: 100 MiB.
    pub app_bytes: u64,
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            value_bytes: 1 << 20,
            user_bytes: 10 << 20,
            app_bytes: 100 << 20,
        }
    }
}

impl Quotas {
    /// The most a manifest may ask for: 4 MiB a value, 100 MiB a user,
    /// 1 GiB for the app scope.
    pub const MAXIMUM: Quotas = Quotas {
        value_bytes: 4 << 20,
        user_bytes: 100 << 20,
        app_bytes: 1 << 30,
    };
}

/// The quotas a version's manifest asks for (`"storage"`); what it leaves
/// out stays at the default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestedQuotas {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_bytes: Option<u64>,
}

impl RequestedQuotas {
    /// The quotas in effect, or which one is out of range.
    pub fn resolve(&self) -> Result<Quotas, String> {
        let default = Quotas::default();
        let quotas = Quotas {
            value_bytes: self.value_bytes.unwrap_or(default.value_bytes),
            user_bytes: self.user_bytes.unwrap_or(default.user_bytes),
            app_bytes: self.app_bytes.unwrap_or(default.app_bytes),
        };
        let max = Quotas::MAXIMUM;
        for (name, value, most) in [
            ("value_bytes", quotas.value_bytes, max.value_bytes),
            ("user_bytes", quotas.user_bytes, max.user_bytes),
            ("app_bytes", quotas.app_bytes, max.app_bytes),
        ] {
            if value == 0 || value > most {
                return Err(format!("{name} must be between 1 and {most}"));
            }
        }
        Ok(quotas)
    }
}

/// Whose data: an app's shared data, or one user's in one app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub appid: AppId,
    pub owner: AccountId,
}

impl Partition {
    pub fn app(appid: AppId) -> Partition {
        Partition {
            appid,
            owner: APP_OWNER,
        }
    }

    pub fn user(appid: AppId, account: AccountId) -> Partition {
        debug_assert_ne!(account, APP_OWNER, "account ids start at 1");
        Partition {
            appid,
            owner: account,
        }
    }

    fn is_app(&self) -> bool {
        self.owner == APP_OWNER
    }
}

/// A stored value and its version (1 on first write, +1 on each write).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub value: Vec<u8>,
    pub version: u64,
}

/// One page of keys, in byte order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub keys: Vec<String>,
    pub cursor: Option<String>,
}

/// What a partition holds and may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct UsageInfo {
    pub keys: u64,
    pub bytes: u64,
    pub limit_bytes: u64,
}

/// One write, as the database applies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Set {
        key: String,
        value: Vec<u8>,
    },
    Delete {
        key: String,
    },
    CompareAndSwap {
        key: String,
        expected_version: u64,
        value: Vec<u8>,
    },
    Increment {
        key: String,
        delta: i64,
    },
}

impl Op {
    pub fn key(&self) -> &str {
        match self {
            Op::Set { key, .. }
            | Op::Delete { key }
            | Op::CompareAndSwap { key, .. }
            | Op::Increment { key, .. } => key,
        }
    }
}

/// What a write returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The new version.
    Version(u64),
    /// Whether a deleted key existed.
    Deleted(bool),
    /// An increment's new value.
    Counter(i64),
}

/// Why a storage operation failed, as the guest is told.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    QuotaExceeded(String),
    #[error("{0}")]
    Conflict(String),
    /// The app is gone: deleted while the call ran.
    #[error("{0}")]
    Denied(String),
    #[error("the platform's storage is unavailable")]
    Unavailable(#[source] anyhow::Error),
}

impl From<anyhow::Error> for StorageError {
    fn from(err: anyhow::Error) -> Self {
        StorageError::Unavailable(err)
    }
}

impl From<sqlx::Error> for StorageError {
    fn from(err: sqlx::Error) -> Self {
        StorageError::Unavailable(err.into())
    }
}

fn check_key(key: &str) -> Result<(), StorageError> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(StorageError::Invalid(format!(
            "a key has 1 to {MAX_KEY_BYTES} bytes; this one has {}",
            key.len()
        )));
    }
    // PostgreSQL text cannot hold NUL; refusing it everywhere keeps the
    // engines alike.
    if key.contains('\0') {
        return Err(StorageError::Invalid("a key cannot contain NUL".into()));
    }
    Ok(())
}

/// The storage service shared by every call.
pub struct Storage {
    db: Db,
}

impl Quotas {
    fn limit_of(&self, partition: &Partition) -> u64 {
        if partition.is_app() {
            self.app_bytes
        } else {
            self.user_bytes
        }
    }
}

impl Storage {
    pub fn new(db: Db) -> Storage {
        Storage { db }
    }

    pub async fn get(
        &self,
        partition: &Partition,
        key: &str,
    ) -> Result<Option<Entry>, StorageError> {
        check_key(key)?;
        Ok(self.db.kv_get(partition, key).await?)
    }

    /// Applies `ops` in one transaction: all of them, or none when one fails.
    pub async fn apply(
        &self,
        partition: &Partition,
        quotas: &Quotas,
        ops: Vec<Op>,
    ) -> Result<Vec<Applied>, StorageError> {
        if ops.len() > MAX_BATCH_WRITES {
            return Err(StorageError::Invalid(format!(
                "a batch has at most {MAX_BATCH_WRITES} writes; this one has {}",
                ops.len()
            )));
        }
        for op in &ops {
            check_key(op.key())?;
            if let Op::Set { value, .. } | Op::CompareAndSwap { value, .. } = op
                && value.len() as u64 > quotas.value_bytes
            {
                return Err(StorageError::QuotaExceeded(format!(
                    "a value has at most {} bytes; this one has {}",
                    quotas.value_bytes,
                    value.len()
                )));
            }
        }
        self.db
            .kv_apply(partition, &ops, quotas.limit_of(partition))
            .await
    }

    /// Keys starting with `prefix`, after `cursor`, at most `limit`.
    pub async fn list_keys(
        &self,
        partition: &Partition,
        prefix: &str,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page, StorageError> {
        if !(1..=MAX_PAGE_KEYS).contains(&limit) {
            return Err(StorageError::Invalid(format!(
                "limit must be between 1 and {MAX_PAGE_KEYS}"
            )));
        }
        if prefix.len() > MAX_KEY_BYTES || prefix.contains('\0') {
            return Err(StorageError::Invalid(format!(
                "a prefix has at most {MAX_KEY_BYTES} bytes and no NUL"
            )));
        }
        if let Some(cursor) = cursor {
            check_key(cursor)?;
        }
        let mut keys = self
            .db
            .kv_keys(partition, prefix, cursor, i64::from(limit) + 1)
            .await?;
        let more = keys.len() > limit as usize;
        keys.truncate(limit as usize);
        let cursor = if more { keys.last().cloned() } else { None };
        Ok(Page { keys, cursor })
    }

    pub async fn usage(
        &self,
        partition: &Partition,
        quotas: &Quotas,
    ) -> Result<UsageInfo, StorageError> {
        let (keys, bytes) = self.db.kv_usage(partition).await?;
        Ok(UsageInfo {
            keys,
            bytes,
            limit_bytes: quotas.limit_of(partition),
        })
    }

    /// Deletes everything in a partition (a user clearing what an app keeps
    /// about them).
    pub async fn clear(&self, partition: &Partition) -> Result<(), StorageError> {
        Ok(self.db.kv_clear(partition).await?)
    }
}

/// Reads a counter: a decimal signed 64-bit integer in ASCII.
pub fn parse_counter(value: &[u8]) -> Result<i64, StorageError> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|text| text.parse::<i64>().ok())
        .ok_or_else(|| StorageError::Invalid("the value is not a decimal 64-bit integer".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_bounded() {
        assert!(check_key("a").is_ok());
        assert!(check_key(&"k".repeat(MAX_KEY_BYTES)).is_ok());
        assert!(check_key("").is_err());
        assert!(check_key(&"k".repeat(MAX_KEY_BYTES + 1)).is_err());
        assert!(check_key("a\0b").is_err());
    }

    #[test]
    fn counters_are_decimal_integers() {
        assert_eq!(parse_counter(b"42").unwrap(), 42);
        assert_eq!(parse_counter(b"-7").unwrap(), -7);
        assert!(parse_counter(b"4.2").is_err());
        assert!(parse_counter(b"nine").is_err());
        assert!(parse_counter(b"99999999999999999999").is_err());
    }
}
