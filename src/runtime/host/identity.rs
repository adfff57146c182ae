//! The `identity` capability: who the caller is, as this app may know them.
//! The host decides the caller (from the request's session, never from
//! anything the guest says) and hands out only pseudonyms: openid, unionid.

use std::sync::Arc;

use crate::accounts::AccountId;
use crate::domain::AppId;
use crate::identity::Identity;
use crate::lifecycle::Scope;
use crate::runtime::CallState;
use crate::runtime::miniapp::host::identity::{AppUser, Host, UserProfile};
use crate::runtime::miniapp::host::types::Error;

/// What one call may learn through `identity`: granted when the version's
/// manifest declares the capability.
pub struct IdentityGrant {
    pub service: Arc<Identity>,
    pub appid: AppId,
    /// The app's developer, whose apps share a unionid space.
    pub owner: Option<AccountId>,
    /// The signed-in user who made the call, if any.
    pub caller: Option<AccountId>,
    /// The scopes the manifest declares; the user's grant is checked per use.
    pub scopes: Vec<Scope>,
}

type Answer<T> = wasmtime::Result<Result<T, Error>>;

impl CallState {
    /// The grant and the signed-in caller, or what to tell the guest.
    fn identity_caller(&mut self) -> Result<(&IdentityGrant, AccountId), Error> {
        self.host_calls += 1;
        let Some(grant) = &self.grants.identity else {
            return Err(Error::Denied(
                "the version's manifest does not declare the identity capability".into(),
            ));
        };
        let Some(caller) = grant.caller else {
            return Err(Error::Denied("the call has no signed-in user".into()));
        };
        Ok((grant, caller))
    }
}

impl Host for CallState {
    async fn caller(&mut self) -> Answer<AppUser> {
        let (grant, account) = match self.identity_caller() {
            Ok(found) => found,
            Err(denied) => return Ok(Err(denied)),
        };
        let user = grant.service.app_user(&grant.appid, grant.owner, account);
        Ok(Ok(AppUser {
            openid: user.openid,
            unionid: user.unionid,
        }))
    }

    async fn profile(&mut self) -> Answer<UserProfile> {
        let (grant, account) = match self.identity_caller() {
            Ok(found) => found,
            Err(denied) => return Ok(Err(denied)),
        };
        if !grant.scopes.contains(&Scope::Profile) {
            return Ok(Err(Error::Denied(
                "the version's manifest does not declare the profile scope".into(),
            )));
        }
        match grant.service.profile(&grant.appid, account).await {
            Ok(Some(profile)) => Ok(Ok(UserProfile {
                nickname: profile.nickname,
                avatar_url: profile.avatar_url,
            })),
            Ok(None) => Ok(Err(Error::Denied(
                "the user has not granted the profile scope to this app".into(),
            ))),
            Err(err) => {
                tracing::warn!(error = %err, "identity.profile: database unavailable");
                Ok(Err(Error::Unavailable(
                    "the platform could not read the profile".into(),
                )))
            }
        }
    }

    async fn login_code(&mut self) -> Answer<String> {
        let (grant, account) = match self.identity_caller() {
            Ok(found) => found,
            Err(denied) => return Ok(Err(denied)),
        };
        match grant.service.issue_login_code(&grant.appid, account).await {
            Ok(Some(code)) => Ok(Ok(code)),
            Ok(None) => Ok(Err(Error::Denied(crate::db::app_deleted(
                grant.appid.as_str(),
            )))),
            Err(err) => {
                tracing::warn!(error = %err, "identity.login-code: database unavailable");
                Ok(Err(Error::Unavailable(
                    "the platform could not issue a code".into(),
                )))
            }
        }
    }
}
