//! Accounts and sessions: sign-up, login, roles, revocation, the bootstrap
//! admin, and users' grants of scopes to apps.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use super::{Cached, MAX_CACHED_SESSIONS, Platform, PlatformError, lock};
use crate::accounts::{self, Account, Password, Role, Roles, Username};
use crate::db::{Attempt, Grant, Secret, now_ms};
use crate::domain::AppId;
use crate::lifecycle::Scope;

/// A sign-up.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewAccount {
    pub username: Username,
    pub password: String,
    #[serde(default)]
    pub nickname: Option<String>,
    #[serde(default)]
    pub avatar_url: Option<String>,
    #[serde(default)]
    pub roles: Roles,
}

/// A signed-in session: the bearer token is shown only here.
#[derive(Debug, Serialize)]
pub struct Session {
    pub token: String,
    pub expires_at: i64,
    pub account: Account,
}

/// Wrong passwords in a row that lock an account's sign-in.
pub const MAX_FAILED_LOGINS: i64 = 5;

/// How long sign-in stays locked after too many wrong passwords: 15 minutes.
pub const LOGIN_LOCKOUT: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// A hash to verify against when the username is unknown, so a failed
/// login takes as long whether or not the account exists.
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| {
        Password::parse("decoy password".into())
            .and_then(|password| password.hash().map_err(|err| err.to_string()))
            .unwrap_or_default()
    })
}

impl Platform {
    /// Creates an account. Anyone may sign up as a user or a developer;
    /// only an admin may create reviewers and admins.
    pub async fn sign_up(
        &self,
        by: Option<&Account>,
        new: NewAccount,
    ) -> Result<Account, PlatformError> {
        let privileged = new.roles.contains(Role::Admin) || new.roles.contains(Role::Reviewer);
        if privileged && !by.is_some_and(|account| account.has(Role::Admin)) {
            return Err(PlatformError::Forbidden(
                "only an admin can create reviewer or admin accounts".into(),
            ));
        }
        self.create_account(new).await
    }

    /// Creates an account without asking who may: for callers that checked.
    pub(crate) async fn create_account(&self, new: NewAccount) -> Result<Account, PlatformError> {
        let password = Password::parse(new.password).map_err(PlatformError::Invalid)?;
        let nickname = new.nickname.unwrap_or_else(|| new.username.to_string());
        let avatar_url = new.avatar_url.unwrap_or_default();
        if !(1..=64).contains(&nickname.chars().count()) {
            return Err(PlatformError::Invalid(
                "nickname must have 1 to 64 characters".into(),
            ));
        }
        if avatar_url.len() > 512 {
            return Err(PlatformError::Invalid(
                "avatar_url must have at most 512 characters".into(),
            ));
        }
        let hash = self.hashing.run(move || password.hash()).await??;
        self.db
            .create_account(&new.username, &hash, &nickname, &avatar_url, &new.roles)
            .await?
            .ok_or_else(|| PlatformError::Conflict(format!("username {} is taken", new.username)))
    }

    /// Signs in with a username and password, returning a new session token.
    /// After [`MAX_FAILED_LOGINS`] wrong passwords in a row, sign-in to the
    /// account is locked for [`LOGIN_LOCKOUT`], so passwords cannot be
    /// guessed at speed.
    pub async fn login(&self, username: &str, password: String) -> Result<Session, PlatformError> {
        let found = match username.parse::<Username>() {
            Ok(username) => self.db.account_for_login(&username).await?,
            Err(_) => None,
        };
        let account = self.check_password(found, password).await?;
        Ok(self.issue_session(account).await?)
    }

    /// Asks a signed-in user for their password again, before a sensitive
    /// change; wrong passwords count towards the sign-in lockout.
    pub(super) async fn reauthenticate(
        &self,
        account: &Account,
        password: String,
    ) -> Result<(), PlatformError> {
        let found = self.db.account_for_login(&account.username).await?;
        self.check_password(found, password).await.map(|_| ())
    }

    /// Checks a password against the account found (against a decoy hash
    /// when none was, so both take as long). The attempt counts towards the
    /// lockout before the hash is checked, so a burst of guesses gets no
    /// more checked than [`MAX_FAILED_LOGINS`]; an account's checks take
    /// turns, so a burst of right ones does not lock it.
    async fn check_password(
        &self,
        found: Option<(Account, String, i64)>,
        password: String,
    ) -> Result<Account, PlatformError> {
        let wrong = || PlatformError::Unauthenticated("wrong username or password".into());
        let locked = |until: i64, now: i64| {
            PlatformError::Throttled(format!(
                "too many failed sign-ins: try again in {} seconds",
                (until - now + 999) / 1000
            ))
        };
        let now = now_ms();
        let password = Password::parse(password).ok();
        let Some((account, hash, locked_until)) = found else {
            self.hashing
                .run(move || password.is_some_and(|p| p.verify(decoy_hash())))
                .await?;
            return Err(wrong());
        };
        if locked_until > now {
            return Err(locked(locked_until, now));
        }
        let _turn = self.hashing.turn((Secret::Password, account.id)).await;
        let lock_until = now + LOGIN_LOCKOUT.as_millis() as i64;
        let attempt = self
            .db
            .take_attempt(
                Secret::Password,
                account.id,
                MAX_FAILED_LOGINS,
                now,
                lock_until,
            )
            .await?;
        if let Attempt::Locked { until } = attempt {
            return Err(locked(until, now));
        }
        let verified = self
            .hashing
            .run(move || password.is_some_and(|p| p.verify(&hash)))
            .await?;
        if !verified {
            return Err(wrong());
        }
        self.db.clear_attempts(Secret::Password, account.id).await?;
        Ok(account)
    }

    /// A fresh session for an account whose credentials were checked.
    pub async fn issue_session(&self, account: Account) -> anyhow::Result<Session> {
        let token = accounts::new_token();
        let expires_at = now_ms() + self.settings.session_ttl.as_millis() as i64;
        self.db
            .insert_session(&accounts::secret_digest(&token), account.id, expires_at)
            .await?;
        Ok(Session {
            token,
            expires_at,
            account,
        })
    }

    /// The account behind a bearer token, if the session is live.
    pub async fn authenticate(&self, token: &str) -> Result<Account, PlatformError> {
        let digest = accounts::secret_digest(token);
        let revocations = {
            let sessions = lock(&self.sessions);
            if let Some(cached) = sessions.cached.get(&digest)
                && cached.fresh()
            {
                return Ok(cached.value.clone());
            }
            sessions.revocations
        };
        let Some(account) = self.db.session_account(&digest).await? else {
            lock(&self.sessions).cached.remove(&digest);
            return Err(PlatformError::Unauthenticated(
                "the token is unknown, expired or revoked: sign in again".into(),
            ));
        };
        let mut sessions = lock(&self.sessions);
        // A revocation meanwhile may be of this session, read before it.
        if sessions.revocations == revocations {
            if sessions.cached.len() >= MAX_CACHED_SESSIONS {
                sessions.cached.clear();
            }
            sessions.cached.insert(digest, Cached::new(account.clone()));
        }
        Ok(account)
    }

    /// Revokes the session of `token`.
    pub async fn logout(&self, token: &str) -> Result<(), PlatformError> {
        let digest = accounts::secret_digest(token);
        self.db.revoke_session(&digest).await?;
        let mut sessions = lock(&self.sessions);
        sessions.revocations += 1;
        sessions.cached.remove(&digest);
        Ok(())
    }

    fn require_admin(by: &Account) -> Result<(), PlatformError> {
        if by.has(Role::Admin) {
            Ok(())
        } else {
            Err(PlatformError::Forbidden("this needs the admin role".into()))
        }
    }

    async fn account_named(&self, username: &str) -> Result<Account, PlatformError> {
        let missing = || PlatformError::NotFound(format!("account {username} not found"));
        let username: Username = username.parse().map_err(|_| missing())?;
        self.db
            .account_by_username(&username)
            .await?
            .ok_or_else(missing)
    }

    fn forget_sessions_of(&self, account: &Account) {
        let mut sessions = lock(&self.sessions);
        sessions.revocations += 1;
        sessions
            .cached
            .retain(|_, cached| cached.value.id != account.id);
    }

    /// Replaces an account's roles (admin only).
    pub async fn set_roles(
        &self,
        by: &Account,
        username: &str,
        roles: Roles,
    ) -> Result<Account, PlatformError> {
        Self::require_admin(by)?;
        let account = self.account_named(username).await?;
        let updated = self
            .db
            .set_roles(&account.username, &roles)
            .await?
            .ok_or_else(|| PlatformError::NotFound(format!("account {username} not found")))?;
        self.forget_sessions_of(&account);
        Ok(updated)
    }

    /// Revokes every session of an account (admin only).
    pub async fn revoke_sessions(&self, by: &Account, username: &str) -> Result<(), PlatformError> {
        Self::require_admin(by)?;
        let account = self.account_named(username).await?;
        self.db.revoke_sessions(account.id).await?;
        self.forget_sessions_of(&account);
        Ok(())
    }

    /// Creates the first admin if no account has the admin role. Returns the
    /// password when it was generated here (none configured).
    pub async fn bootstrap_admin(
        &self,
        username: &Username,
        password: Option<String>,
    ) -> anyhow::Result<Option<String>> {
        if self.db.admin_exists().await? {
            return Ok(None);
        }
        let generated = password.is_none();
        let password = password.unwrap_or_else(|| hex::encode(rand::random::<[u8; 16]>()));
        let new = NewAccount {
            username: username.clone(),
            password: password.clone(),
            nickname: None,
            avatar_url: None,
            roles: Roles::new([Role::Admin]),
        };
        self.create_account(new)
            .await
            .map_err(|err| anyhow::anyhow!("creating the bootstrap admin {username}: {err}"))?;
        tracing::info!(%username, "bootstrap admin created");
        Ok(generated.then_some(password))
    }

    /// The scopes a user has granted, by app.
    pub async fn grants(&self, account: &Account) -> Result<Vec<Grant>, PlatformError> {
        Ok(self.db.grants(account.id).await?)
    }

    /// A user grants a scope to an app. Only ever through this host
    /// endpoint: no guest function can grant.
    pub async fn grant(
        &self,
        account: &Account,
        appid: &AppId,
        scope: Scope,
    ) -> Result<(), PlatformError> {
        if !self.db.grant(account.id, appid, scope).await? {
            return Err(PlatformError::NotFound(format!("app {appid} not found")));
        }
        Ok(())
    }

    /// A user refuses or revokes a scope (revoking what was never granted
    /// changes nothing).
    pub async fn revoke_grant(
        &self,
        account: &Account,
        appid: &AppId,
        scope: Scope,
    ) -> Result<(), PlatformError> {
        Ok(self.db.revoke_grant(account.id, appid, scope).await?)
    }
}

/// What an app stores about a user, as that user sees it.
#[derive(Debug, Serialize)]
pub struct StoredAbout {
    pub appid: AppId,
    pub keys: u64,
    pub bytes: u64,
    pub entries: Vec<crate::db::StoredKey>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next: Option<String>,
}

impl Platform {
    /// The keys an app keeps in a user's scope, a page at a time.
    pub async fn stored_about(
        &self,
        account: &Account,
        appid: &AppId,
        after: &str,
        limit: i64,
    ) -> Result<StoredAbout, PlatformError> {
        let partition = crate::storage::Partition::user(appid.clone(), account.id);
        let (keys, bytes) = self.db.kv_usage(&partition).await?;
        let mut entries = self.db.kv_listing(&partition, after, limit + 1).await?;
        let next = if entries.len() as i64 > limit {
            entries.truncate(limit as usize);
            entries.last().map(|entry| entry.key.clone())
        } else {
            None
        };
        Ok(StoredAbout {
            appid: appid.clone(),
            keys,
            bytes,
            entries,
            next,
        })
    }

    /// Deletes everything an app keeps in a user's scope.
    pub async fn clear_stored_about(
        &self,
        account: &Account,
        appid: &AppId,
    ) -> Result<(), PlatformError> {
        let partition = crate::storage::Partition::user(appid.clone(), account.id);
        self.storage
            .clear(&partition)
            .await
            .map_err(|err| PlatformError::Internal(anyhow::anyhow!("{err}")))
    }
}
