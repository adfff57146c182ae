//! Accounts, sessions, platform secrets, scope grants and login codes.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Db, now_ms};
use crate::accounts::{Account, AccountId, Roles, Username};
use crate::domain::AppId;
use crate::lifecycle::Scope;

const ACCOUNT_COLUMNS: &str = "a.id, a.username, a.nickname, a.avatar_url, a.roles, a.created_at";

fn account(row: &AnyRow) -> anyhow::Result<Account> {
    let username: String = row.try_get(1)?;
    let roles: String = row.try_get(4)?;
    Ok(Account {
        id: row.try_get(0)?,
        username: username.parse().map_err(anyhow::Error::msg)?,
        nickname: row.try_get(2)?,
        avatar_url: row.try_get(3)?,
        roles: Roles::from_column(&roles).map_err(anyhow::Error::msg)?,
        created_at: row.try_get(5)?,
    })
}

/// A user's grant of a scope to an app.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Grant {
    pub appid: String,
    pub scope: String,
    pub granted_at: i64,
}

impl Db {
    /// Creates an account; `None` if the username is taken.
    pub async fn create_account(
        &self,
        username: &Username,
        password_hash: &str,
        nickname: &str,
        avatar_url: &str,
        roles: &Roles,
    ) -> anyhow::Result<Option<Account>> {
        let row = sqlx::query(
            "INSERT INTO accounts (username, password_hash, nickname, avatar_url, roles, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (username) DO NOTHING \
             RETURNING id, username, nickname, avatar_url, roles, created_at",
        )
        .bind(username.as_str())
        .bind(password_hash)
        .bind(nickname)
        .bind(avatar_url)
        .bind(roles.to_column())
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(account).transpose()
    }

    /// An account, its password hash and until when its sign-in is
    /// locked (unix ms), by username.
    pub async fn account_for_login(
        &self,
        username: &Username,
    ) -> anyhow::Result<Option<(Account, String, i64)>> {
        let row = sqlx::query(&format!(
            "SELECT {ACCOUNT_COLUMNS}, a.password_hash, a.locked_until FROM accounts a \
             WHERE a.username = $1"
        ))
        .bind(username.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| Ok((account(&row)?, row.try_get(6)?, row.try_get(7)?)))
            .transpose()
    }

    pub async fn account_by_id(&self, id: AccountId) -> anyhow::Result<Option<Account>> {
        let row = sqlx::query(&format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts a WHERE a.id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(account).transpose()
    }

    pub async fn account_by_username(
        &self,
        username: &Username,
    ) -> anyhow::Result<Option<Account>> {
        let row = sqlx::query(&format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts a WHERE a.username = $1"
        ))
        .bind(username.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(account).transpose()
    }

    /// Replaces an account's roles; `None` if there is no such account.
    pub async fn set_roles(
        &self,
        username: &Username,
        roles: &Roles,
    ) -> anyhow::Result<Option<Account>> {
        sqlx::query("UPDATE accounts SET roles = $1 WHERE username = $2")
            .bind(roles.to_column())
            .bind(username.as_str())
            .execute(&self.pool)
            .await?;
        self.account_by_username(username).await
    }

    /// Whether any account holds the admin role.
    pub async fn admin_exists(&self) -> anyhow::Result<bool> {
        let row = sqlx::query("SELECT 1 FROM accounts WHERE roles LIKE '%admin%' LIMIT 1")
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    pub async fn insert_session(
        &self,
        token_sha256: &str,
        account: AccountId,
        expires_at: i64,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO sessions (token_sha256, account_id, created_at, expires_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(token_sha256)
        .bind(account)
        .bind(now_ms())
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The account of a live (unexpired, unrevoked) session.
    pub async fn session_account(&self, token_sha256: &str) -> anyhow::Result<Option<Account>> {
        let row = sqlx::query(&format!(
            "SELECT {ACCOUNT_COLUMNS} FROM sessions s JOIN accounts a ON a.id = s.account_id \
             WHERE s.token_sha256 = $1 AND s.revoked_at IS NULL AND s.expires_at > $2"
        ))
        .bind(token_sha256)
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(account).transpose()
    }

    pub async fn revoke_session(&self, token_sha256: &str) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE sessions SET revoked_at = $1 WHERE token_sha256 = $2 AND revoked_at IS NULL",
        )
        .bind(now_ms())
        .bind(token_sha256)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Revokes every live session of an account.
    pub async fn revoke_sessions(&self, account: AccountId) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE sessions SET revoked_at = $1 WHERE account_id = $2 AND revoked_at IS NULL",
        )
        .bind(now_ms())
        .bind(account)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The stored secret `name`, storing `fresh` first if there is none:
    /// every node ends up with the value the first one stored.
    pub async fn platform_secret(&self, name: &str, fresh: &str) -> anyhow::Result<String> {
        sqlx::query(
            "INSERT INTO platform_secrets (name, value) VALUES ($1, $2) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(fresh)
        .execute(&self.pool)
        .await?;
        let row = sqlx::query("SELECT value FROM platform_secrets WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get(0)?)
    }

    pub async fn has_grant(
        &self,
        account: AccountId,
        appid: &AppId,
        scope: Scope,
    ) -> anyhow::Result<bool> {
        let row =
            sqlx::query("SELECT 1 FROM grants WHERE account_id = $1 AND appid = $2 AND scope = $3")
                .bind(account)
                .bind(appid.as_str())
                .bind(scope.as_str())
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.is_some())
    }

    /// Records a grant (again granting changes nothing); false when there
    /// is no such app.
    pub async fn grant(
        &self,
        account: AccountId,
        appid: &AppId,
        scope: Scope,
    ) -> anyhow::Result<bool> {
        let grant = sqlx::query(
            "INSERT INTO grants (account_id, appid, scope, granted_at) \
             SELECT $1, $2, $3, $4 WHERE EXISTS (SELECT 1 FROM apps WHERE appid = $2) \
             ON CONFLICT (account_id, appid, scope) DO UPDATE SET granted_at = grants.granted_at \
             RETURNING 1",
        )
        .bind(account)
        .bind(appid.as_str())
        .bind(scope.as_str())
        .bind(now_ms());
        Ok(self.write_for_app(appid.as_str(), grant).await?.is_some())
    }

    pub async fn revoke_grant(
        &self,
        account: AccountId,
        appid: &AppId,
        scope: Scope,
    ) -> anyhow::Result<()> {
        sqlx::query("DELETE FROM grants WHERE account_id = $1 AND appid = $2 AND scope = $3")
            .bind(account)
            .bind(appid.as_str())
            .bind(scope.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn grants(&self, account: AccountId) -> anyhow::Result<Vec<Grant>> {
        let rows = sqlx::query(
            "SELECT appid, scope, granted_at FROM grants WHERE account_id = $1 \
             ORDER BY appid, scope",
        )
        .bind(account)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Grant {
                    appid: row.try_get(0)?,
                    scope: row.try_get(1)?,
                    granted_at: row.try_get(2)?,
                })
            })
            .collect()
    }

    /// Stores a login code; false when there is no such app (a call
    /// still running after its app was deleted).
    pub async fn insert_login_code(
        &self,
        code_sha256: &str,
        appid: &AppId,
        account: AccountId,
        expires_at: i64,
    ) -> anyhow::Result<bool> {
        let code = sqlx::query(
            "INSERT INTO login_codes (code_sha256, appid, account_id, expires_at) \
             SELECT $1, $2, $3, $4 WHERE EXISTS (SELECT 1 FROM apps WHERE appid = $2) \
             RETURNING 1",
        )
        .bind(code_sha256)
        .bind(appid.as_str())
        .bind(account)
        .bind(expires_at);
        Ok(self.write_for_app(appid.as_str(), code).await?.is_some())
    }

    /// Marks a login code used and returns its account, if the code is
    /// this app's, unused and unexpired at `now`. One statement, so two
    /// concurrent exchanges of one code cannot both succeed.
    pub async fn redeem_login_code(
        &self,
        code_sha256: &str,
        appid: &AppId,
        now: i64,
    ) -> anyhow::Result<Option<AccountId>> {
        let row = sqlx::query(
            "UPDATE login_codes SET used_at = $1 \
             WHERE code_sha256 = $2 AND appid = $3 AND used_at IS NULL AND expires_at > $1 \
             RETURNING account_id",
        )
        .bind(now)
        .bind(code_sha256)
        .bind(appid.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| Ok(row.try_get(0)?)).transpose()
    }
}
