//! The `messaging` capability: notifications under the user's
//! subscription and customer-service replies. The guest names a user only
//! by the openid it was given; the host finds whose inbox through the
//! user's own subscription or conversation, never through the guest.

use std::sync::Arc;

use crate::domain::AppId;
use crate::messaging::{Messaging, MessagingError, MessagingSettings, Notification};
use crate::runtime::CallState;
use crate::runtime::miniapp::host::messaging::Host;
use crate::runtime::miniapp::host::types::Error;

/// What one call may send through `messaging`: granted when the version's
/// manifest declares the capability.
pub struct MessagingGrant {
    pub service: Arc<Messaging>,
    pub appid: AppId,
    /// The templates the manifest declares.
    pub settings: Arc<MessagingSettings>,
}

type Answer<T> = wasmtime::Result<Result<T, Error>>;

fn to_guest(err: MessagingError) -> Error {
    let detail = err.to_string();
    match err {
        MessagingError::Invalid(_) => Error::Invalid(detail),
        MessagingError::Denied(_) => Error::Denied(detail),
        MessagingError::QuotaExceeded(_) => Error::QuotaExceeded(detail),
        MessagingError::NotFound(_) => Error::NotFound(detail),
        MessagingError::Unavailable(cause) => {
            tracing::warn!(error = format!("{cause:#}"), "messaging unavailable");
            Error::Unavailable("the platform's messaging is unavailable; retry later".into())
        }
    }
}

impl CallState {
    fn messaging(&mut self) -> Result<&MessagingGrant, Error> {
        self.host_calls += 1;
        self.grants.messaging.as_ref().ok_or_else(|| {
            Error::Denied("the version's manifest does not declare the messaging capability".into())
        })
    }
}

impl Host for CallState {
    async fn send_notification(
        &mut self,
        openid: String,
        template_id: String,
        fields: Vec<(String, String)>,
        page: Option<String>,
    ) -> Answer<()> {
        let grant = match self.messaging() {
            Ok(grant) => grant,
            Err(denied) => return Ok(Err(denied)),
        };
        let (service, appid, settings) = (
            grant.service.clone(),
            grant.appid.clone(),
            grant.settings.clone(),
        );
        let Some(template) = settings.template(&template_id) else {
            return Ok(Err(Error::Invalid(format!(
                "the manifest declares no template {template_id:?}"
            ))));
        };
        let fields = match template.fill(&fields) {
            Ok(fields) => fields,
            Err(err) => return Ok(Err(to_guest(err))),
        };
        let notification = Notification {
            appid: &appid,
            template,
            openid: &openid,
            fields,
            page,
        };
        Ok(service.notify(notification).await.map_err(to_guest))
    }

    async fn reply(&mut self, openid: String, text: String) -> Answer<()> {
        let grant = match self.messaging() {
            Ok(grant) => grant,
            Err(denied) => return Ok(Err(denied)),
        };
        let (service, appid) = (grant.service.clone(), grant.appid.clone());
        Ok(service
            .reply(&appid, &openid, &text)
            .await
            .map_err(to_guest))
    }
}
