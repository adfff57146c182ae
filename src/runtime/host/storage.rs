//! The `storage` capability: key-value data in the partition the host
//! picks. The guest chooses the scope (its user's data or the app's); the
//! host supplies whose: this app, and the signed-in caller for `user`.

use std::sync::Arc;

use crate::accounts::AccountId;
use crate::domain::AppId;
use crate::runtime::CallState;
use crate::runtime::miniapp::host::storage::{Entry, Host, Page, Scope, UsageInfo, Write};
use crate::runtime::miniapp::host::types::Error;
use crate::storage::{Applied, Op, Partition, Quotas, Storage, StorageError};

/// What one call may reach through `storage`: granted when the version's
/// manifest declares the capability.
pub struct StorageGrant {
    pub service: Arc<Storage>,
    pub appid: AppId,
    /// The signed-in user who made the call, if any: the owner of the `user` scope.
    pub caller: Option<AccountId>,
    /// The version's quotas.
    pub quotas: Quotas,
}

type Answer<T> = wasmtime::Result<Result<T, Error>>;

fn to_guest(err: StorageError) -> Error {
    match err {
        StorageError::Invalid(detail) => Error::Invalid(detail),
        StorageError::QuotaExceeded(detail) => Error::QuotaExceeded(detail),
        StorageError::Conflict(detail) => Error::Conflict(detail),
        StorageError::Denied(detail) => Error::Denied(detail),
        StorageError::Unavailable(cause) => {
            tracing::warn!(error = format!("{cause:#}"), "storage unavailable");
            Error::Unavailable("the platform's storage is unavailable; retry later".into())
        }
    }
}

impl CallState {
    /// The service and the partition `scope` names for this call, or what
    /// to tell the guest.
    fn partition(&mut self, scope: Scope) -> Result<(Arc<Storage>, Partition, Quotas), Error> {
        self.host_calls += 1;
        let Some(grant) = &self.grants.storage else {
            return Err(Error::Denied(
                "the version's manifest does not declare the storage capability".into(),
            ));
        };
        let partition = match scope {
            Scope::App => Partition::app(grant.appid.clone()),
            Scope::User => match grant.caller {
                Some(account) => Partition::user(grant.appid.clone(), account),
                None => {
                    return Err(Error::Denied(
                        "the user scope needs a signed-in user, and the call has none".into(),
                    ));
                }
            },
        };
        Ok((grant.service.clone(), partition, grant.quotas))
    }

    async fn write(&mut self, scope: Scope, ops: Vec<Op>) -> Result<Vec<Applied>, Error> {
        let (service, partition, quotas) = self.partition(scope)?;
        service
            .apply(&partition, &quotas, ops)
            .await
            .map_err(to_guest)
    }

    async fn write_one(&mut self, scope: Scope, op: Op) -> Result<Applied, Error> {
        let applied = self.write(scope, vec![op]).await?;
        applied
            .into_iter()
            .next()
            .ok_or_else(|| Error::Unavailable("the write returned nothing".into()))
    }
}

fn version(applied: Applied) -> u64 {
    match applied {
        Applied::Version(version) => version,
        _ => 0,
    }
}

impl Host for CallState {
    async fn get(&mut self, scope: Scope, key: String) -> Answer<Option<Entry>> {
        let (service, partition, _) = match self.partition(scope) {
            Ok(found) => found,
            Err(denied) => return Ok(Err(denied)),
        };
        Ok(service
            .get(&partition, &key)
            .await
            .map(|entry| {
                entry.map(|entry| Entry {
                    value: entry.value,
                    version: entry.version,
                })
            })
            .map_err(to_guest))
    }

    async fn set(&mut self, scope: Scope, key: String, value: Vec<u8>) -> Answer<u64> {
        Ok(self
            .write_one(scope, Op::Set { key, value })
            .await
            .map(version))
    }

    async fn delete(&mut self, scope: Scope, key: String) -> Answer<bool> {
        Ok(self
            .write_one(scope, Op::Delete { key })
            .await
            .map(|applied| matches!(applied, Applied::Deleted(true))))
    }

    async fn list_keys(
        &mut self,
        scope: Scope,
        prefix: String,
        cursor: Option<String>,
        limit: u32,
    ) -> Answer<Page> {
        let (service, partition, _) = match self.partition(scope) {
            Ok(found) => found,
            Err(denied) => return Ok(Err(denied)),
        };
        Ok(service
            .list_keys(&partition, &prefix, cursor.as_deref(), limit)
            .await
            .map(|page| Page {
                keys: page.keys,
                cursor: page.cursor,
            })
            .map_err(to_guest))
    }

    async fn compare_and_swap(
        &mut self,
        scope: Scope,
        key: String,
        expected_version: u64,
        value: Vec<u8>,
    ) -> Answer<u64> {
        let op = Op::CompareAndSwap {
            key,
            expected_version,
            value,
        };
        Ok(self.write_one(scope, op).await.map(version))
    }

    async fn increment(&mut self, scope: Scope, key: String, delta: i64) -> Answer<i64> {
        Ok(self
            .write_one(scope, Op::Increment { key, delta })
            .await
            .map(|applied| match applied {
                Applied::Counter(value) => value,
                _ => 0,
            }))
    }

    async fn batch(&mut self, scope: Scope, writes: Vec<Write>) -> Answer<()> {
        let ops = writes
            .into_iter()
            .map(|write| match write.value {
                Some(value) => Op::Set {
                    key: write.key,
                    value,
                },
                None => Op::Delete { key: write.key },
            })
            .collect();
        Ok(self.write(scope, ops).await.map(|_| ()))
    }

    async fn usage(&mut self, scope: Scope) -> Answer<UsageInfo> {
        let (service, partition, quotas) = match self.partition(scope) {
            Ok(found) => found,
            Err(denied) => return Ok(Err(denied)),
        };
        Ok(service
            .usage(&partition, &quotas)
            .await
            .map(|usage| UsageInfo {
                keys: usage.keys,
                bytes: usage.bytes,
                limit_bytes: usage.limit_bytes,
            })
            .map_err(to_guest))
    }
}
