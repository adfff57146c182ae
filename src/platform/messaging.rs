//! Messaging as users reach it: subscriptions, writing to an app, the
//! inbox.

use super::{Platform, PlatformError};
use crate::accounts::Account;
use crate::domain::AppId;
use crate::lifecycle::Capability;
use crate::messaging::{InboxMessage, MessagingError, Subscription, SubscriptionKind};

impl From<MessagingError> for PlatformError {
    fn from(err: MessagingError) -> Self {
        match err {
            MessagingError::Invalid(detail) => PlatformError::Invalid(detail),
            MessagingError::Denied(detail) => PlatformError::Forbidden(detail),
            MessagingError::QuotaExceeded(detail) => PlatformError::Throttled(detail),
            MessagingError::NotFound(detail) => PlatformError::NotFound(detail),
            MessagingError::Unavailable(err) => PlatformError::Internal(err),
        }
    }
}

impl Platform {
    /// The user subscribes to a template the app's release declares.
    pub async fn subscribe(
        &self,
        account: &Account,
        appid: &AppId,
        template_id: &str,
        kind: SubscriptionKind,
    ) -> Result<Subscription, PlatformError> {
        let app = self.app_route(appid).await?;
        let version = app
            .route
            .released_version
            .ok_or_else(|| PlatformError::NotFound(format!("app {appid} has no release yet")))?;
        let ready = self.ready(appid, version).await?;
        if ready.manifest.messaging.template(template_id).is_none() {
            return Err(PlatformError::NotFound(format!(
                "app {appid} has no notification template {template_id:?}"
            )));
        }
        let openid = self.identity.app_user(appid, app.owner, account.id).openid;
        Ok(self
            .messaging
            .subscribe(account.id, appid, &openid, template_id, kind)
            .await?)
    }

    pub async fn unsubscribe(
        &self,
        account: &Account,
        appid: &AppId,
        template_id: &str,
    ) -> Result<(), PlatformError> {
        if self
            .messaging
            .unsubscribe(account.id, appid, template_id)
            .await?
        {
            Ok(())
        } else {
            Err(PlatformError::NotFound(format!(
                "no subscription to {template_id:?} of app {appid}"
            )))
        }
    }

    pub async fn subscriptions(
        &self,
        account: &Account,
    ) -> Result<Vec<Subscription>, PlatformError> {
        Ok(self.messaging.subscriptions(account.id).await?)
    }

    /// The user writes to an app's customer service: an app whose release
    /// has the messaging capability, which can answer.
    pub async fn write_to_app(
        &self,
        account: &Account,
        appid: &AppId,
        text: &str,
    ) -> Result<String, PlatformError> {
        let app = self.app_route(appid).await?;
        let no_service = || PlatformError::NotFound(format!("app {appid} takes no messages"));
        let version = app.route.released_version.ok_or_else(no_service)?;
        if !self
            .ready(appid, version)
            .await?
            .manifest
            .declares(Capability::Messaging)
        {
            return Err(no_service());
        }
        let openid = self.identity.app_user(appid, app.owner, account.id).openid;
        Ok(self
            .messaging
            .user_writes(appid, account.id, &openid, text)
            .await?)
    }

    pub async fn inbox(
        &self,
        account: &Account,
        after: i64,
        limit: i64,
    ) -> Result<(Vec<InboxMessage>, i64), PlatformError> {
        let messages = self.messaging.inbox(account.id, after, limit).await?;
        let unread = self.messaging.unread(account.id).await?;
        Ok((messages, unread))
    }

    pub async fn mark_read(&self, account: &Account, up_to: i64) -> Result<u64, PlatformError> {
        Ok(self.messaging.mark_read(account.id, up_to).await?)
    }
}
