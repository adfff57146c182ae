//! Accounts and sessions: sign-up, sign-in, sign-out, roles.

use axum::Json;
use axum::body::Body;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::auth::{MaybeSignedIn, SignedIn};
use super::{ApiError, Shared, json_body};
use crate::accounts::Roles;
use crate::platform::NewAccount;

pub async fn sign_up(
    state: Shared,
    MaybeSignedIn(by): MaybeSignedIn,
    body: Body,
) -> Result<Response, ApiError> {
    let new: NewAccount = json_body(body).await?;
    let account = state.platform.sign_up(by.as_ref(), new).await?;
    Ok((StatusCode::CREATED, Json(account)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Credentials {
    username: String,
    password: String,
}

pub async fn login(state: Shared, body: Body) -> Result<Response, ApiError> {
    let credentials: Credentials = json_body(body).await?;
    let session = state
        .platform
        .login(&credentials.username, credentials.password)
        .await?;
    Ok((StatusCode::CREATED, Json(session)).into_response())
}

pub async fn logout(state: Shared, signed_in: SignedIn) -> Result<StatusCode, ApiError> {
    state.platform.logout(&signed_in.token).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn me(signed_in: SignedIn) -> Json<crate::accounts::Account> {
    Json(signed_in.account)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RolesBody {
    roles: Roles,
}

pub async fn set_roles(
    state: Shared,
    signed_in: SignedIn,
    Path(username): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let RolesBody { roles } = json_body(body).await?;
    let account = state
        .platform
        .set_roles(&signed_in.account, &username, roles)
        .await?;
    Ok(Json(account).into_response())
}

pub async fn revoke_sessions(
    state: Shared,
    signed_in: SignedIn,
    Path(username): Path<String>,
) -> Result<StatusCode, ApiError> {
    state
        .platform
        .revoke_sessions(&signed_in.account, &username)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
