//! Who is calling: bearer tokens to accounts, as axum extractors.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

use super::{ApiError, AppState};
use crate::accounts::Account;

/// The bearer token a request carries, if any. A malformed `Authorization`
/// header is refused rather than ignored.
fn bearer(parts: &Parts) -> Result<Option<&str>, ApiError> {
    let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(|token| Some(token.trim()))
        .ok_or_else(ApiError::unauthorized)
}

/// A signed-in caller: the request carries a live session's token.
pub struct SignedIn {
    pub account: Account,
    pub token: String,
}

impl FromRequestParts<Arc<AppState>> for SignedIn {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let token = bearer(parts)?.ok_or_else(ApiError::unauthorized)?;
        let account = state
            .platform
            .authenticate(token)
            .await
            .map_err(|err| ApiError {
                body_unread: true,
                ..ApiError::from(err)
            })?;
        Ok(SignedIn {
            account,
            token: token.to_string(),
        })
    }
}

/// A caller who may be anonymous; a token, if sent, must be live.
pub struct MaybeSignedIn(pub Option<Account>);

impl FromRequestParts<Arc<AppState>> for MaybeSignedIn {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        if bearer(parts)?.is_none() {
            return Ok(MaybeSignedIn(None));
        }
        let signed_in = SignedIn::from_request_parts(parts, state).await?;
        Ok(MaybeSignedIn(Some(signed_in.account)))
    }
}
