//! The identity capability's logic: how a mini-program knows its caller.
//!
//! A program never sees the platform's account id. It sees an **openid**,
//! `HMAC-SHA256(platform secret, "openid" ‖ appid ‖ account)`: stable for one
//! user in one app, unlinkable across apps without the secret. The
//! **unionid** is the same construction over the app's developer instead of
//! the app, so the apps of one developer can recognise a user between them.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::accounts::{self, AccountId};
use crate::db::{Db, now_ms};
use crate::domain::AppId;
use crate::lifecycle::Scope;

/// How long a login code can be exchanged: 5 minutes.
pub const LOGIN_CODE_TTL: Duration = Duration::from_secs(5 * 60);

/// The name of the HMAC key in the `platform_secrets` table.
const SECRET_NAME: &str = "identity-hmac-key";

/// Characters of an openid or unionid: 128 bits in hex.
const ID_HEX_CHARS: usize = 32;

/// The identity service shared by every call: the platform's HMAC key and
/// the database of grants and login codes.
pub struct Identity {
    pseudonyms: Pseudonyms,
    db: Db,
}

/// Derives openids and unionids from the platform's key.
pub struct Pseudonyms {
    key: Vec<u8>,
}

/// The caller as one app knows them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AppUser {
    pub openid: String,
    pub unionid: String,
}

/// The data behind the `profile` scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub nickname: String,
    pub avatar_url: String,
}

/// Why the exchange of a login code failed.
#[derive(Debug, thiserror::Error)]
pub enum CodeError {
    #[error("the login code is unknown, expired, already used, or from another app")]
    Invalid,
    #[error("the app secret is wrong")]
    WrongSecret,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl Identity {
    /// The service with the platform's key, generated and stored on first
    /// use so that every node shares it.
    pub async fn load(db: Db) -> anyhow::Result<Identity> {
        let fresh = hex::encode(rand::random::<[u8; 32]>());
        let key = db.platform_secret(SECRET_NAME, &fresh).await?;
        Ok(Identity {
            pseudonyms: Pseudonyms {
                key: hex::decode(key)?,
            },
            db,
        })
    }

    /// The openid and unionid of `account` in `appid`, whose developer is `owner`.
    pub fn app_user(&self, appid: &AppId, owner: Option<AccountId>, account: AccountId) -> AppUser {
        self.pseudonyms.app_user(appid, owner, account)
    }

    /// The user's profile, if they granted `scope` to the app.
    pub async fn profile(
        &self,
        appid: &AppId,
        account: AccountId,
    ) -> anyhow::Result<Option<Profile>> {
        if !self.db.has_grant(account, appid, Scope::Profile).await? {
            return Ok(None);
        }
        let profile = self
            .db
            .account_by_id(account)
            .await?
            .map(|account| Profile {
                nickname: account.nickname,
                avatar_url: account.avatar_url,
            });
        Ok(profile)
    }

    /// A fresh one-time login code for `account` in `appid`; `None` when
    /// the app is gone (deleted while the call asking ran).
    pub async fn issue_login_code(
        &self,
        appid: &AppId,
        account: AccountId,
    ) -> anyhow::Result<Option<String>> {
        let code = hex::encode(rand::random::<[u8; 16]>());
        let expires_at = now_ms() + LOGIN_CODE_TTL.as_millis() as i64;
        let stored = self
            .db
            .insert_login_code(&accounts::secret_digest(&code), appid, account, expires_at)
            .await?;
        Ok(stored.then_some(code))
    }

    /// The app's server trades a login code, with the app's secret, for the
    /// user's openid and unionid. A code works once, for its own app, within
    /// [`LOGIN_CODE_TTL`].
    pub async fn exchange_login_code(
        &self,
        appid: &AppId,
        secret: &str,
        code: &str,
    ) -> Result<AppUser, CodeError> {
        let Some(app) = self.db.app(appid).await? else {
            return Err(CodeError::WrongSecret);
        };
        let presented = accounts::secret_digest(secret);
        if app.secret_sha256.as_deref() != Some(presented.as_str()) {
            return Err(CodeError::WrongSecret);
        }
        let account = self
            .db
            .redeem_login_code(&accounts::secret_digest(code), appid, now_ms())
            .await?
            .ok_or(CodeError::Invalid)?;
        Ok(self.app_user(appid, app.owner_id, account))
    }
}

impl Pseudonyms {
    fn pseudonym(&self, kind: &str, space: &str, account: AccountId) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC accepts keys of any length");
        // Length-prefixed fields, so no two (kind, space, account) triples
        // feed the MAC the same bytes.
        for field in [kind.as_bytes(), space.as_bytes()] {
            mac.update(&(field.len() as u64).to_be_bytes());
            mac.update(field);
        }
        mac.update(&account.to_be_bytes());
        let mut id = hex::encode(mac.finalize().into_bytes());
        id.truncate(ID_HEX_CHARS);
        id
    }

    /// The openid and unionid of `account` in `appid`, whose developer is `owner`.
    pub fn app_user(&self, appid: &AppId, owner: Option<AccountId>, account: AccountId) -> AppUser {
        let developer = match owner {
            Some(owner) => format!("developer:{owner}"),
            // An app without an owner (from before accounts) is its own developer.
            None => format!("app:{appid}"),
        };
        AppUser {
            openid: self.pseudonym("openid", appid.as_str(), account),
            unionid: self.pseudonym("unionid", &developer, account),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(key: &[u8]) -> Pseudonyms {
        Pseudonyms { key: key.to_vec() }
    }

    #[test]
    fn openids_are_stable_per_app_and_unlinkable_across_apps() {
        let identity = identity(b"platform key");
        let (a, b): (AppId, AppId) = ("shop".parse().unwrap(), "game".parse().unwrap());
        let in_a = identity.app_user(&a, Some(1), 42);
        assert_eq!(in_a, identity.app_user(&a, Some(1), 42), "stable");
        let in_b = identity.app_user(&b, Some(1), 42);
        assert_ne!(in_a.openid, in_b.openid, "another app, another openid");
        assert_eq!(in_a.unionid, in_b.unionid, "one developer, one unionid");
        let other_developer = identity.app_user(&b, Some(2), 42);
        assert_ne!(in_a.unionid, other_developer.unionid);
        assert_ne!(in_a.openid, identity.app_user(&a, Some(1), 43).openid);
        assert_eq!(in_a.openid.len(), 32);
        assert!(!in_a.openid.contains("42"), "no trace of the account id");
    }

    #[test]
    fn the_key_decides_every_id() {
        let appid: AppId = "shop".parse().unwrap();
        let one = identity(b"one").app_user(&appid, Some(1), 7);
        let two = identity(b"two").app_user(&appid, Some(1), 7);
        assert_ne!(one.openid, two.openid);
        assert_ne!(one.unionid, two.unionid);
    }
}
