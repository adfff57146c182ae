//! What users do around mini-programs: find them, launch them, grant
//! scopes; and the code-to-session exchange for apps' own servers.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::auth::SignedIn;
use super::{ApiError, Shared, json_body, page_limit, parse_appid};
use crate::identity::CodeError;
use crate::lifecycle::{Scene, Scope};
use crate::platform::Channel;

pub async fn grants(state: Shared, signed_in: SignedIn) -> Result<Response, ApiError> {
    let grants = state.platform.grants(&signed_in.account).await?;
    Ok(Json(serde_json::json!({ "grants": grants })).into_response())
}

#[derive(Deserialize)]
pub struct StoredQuery {
    #[serde(default)]
    after: String,
    limit: Option<i64>,
}

pub async fn stored_about(
    state: Shared,
    signed_in: SignedIn,
    Path(appid): Path<String>,
    Query(query): Query<StoredQuery>,
) -> Result<Response, ApiError> {
    let appid = parse_appid(&appid)?;
    let limit = page_limit(query.limit)?;
    let stored = state
        .platform
        .stored_about(&signed_in.account, &appid, &query.after, limit)
        .await?;
    Ok(Json(stored).into_response())
}

pub async fn clear_stored_about(
    state: Shared,
    signed_in: SignedIn,
    Path(appid): Path<String>,
) -> Result<StatusCode, ApiError> {
    let appid = parse_appid(&appid)?;
    state
        .platform
        .clear_stored_about(&signed_in.account, &appid)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

fn parse_scope(raw: &str) -> Result<Scope, ApiError> {
    raw.parse().map_err(ApiError::not_found)
}

pub async fn grant(
    state: Shared,
    signed_in: SignedIn,
    Path((appid, scope)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let appid = parse_appid(&appid)?;
    let scope = parse_scope(&scope)?;
    state
        .platform
        .grant(&signed_in.account, &appid, scope)
        .await?;
    Ok(Json(serde_json::json!({ "appid": appid, "scope": scope })).into_response())
}

pub async fn revoke_grant(
    state: Shared,
    signed_in: SignedIn,
    Path((appid, scope)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let appid = parse_appid(&appid)?;
    let scope = parse_scope(&scope)?;
    state
        .platform
        .revoke_grant(&signed_in.account, &appid, scope)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub struct DirectoryQuery {
    #[serde(default)]
    q: String,
    limit: Option<i64>,
}

pub async fn directory(
    state: Shared,
    Query(query): Query<DirectoryQuery>,
) -> Result<Response, ApiError> {
    let limit = query.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::bad_request("limit must be between 1 and 200"));
    }
    let apps = state.platform.directory(&query.q, limit).await?;
    Ok(Json(serde_json::json!({ "apps": apps })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LaunchBody {
    appid: String,
    #[serde(default = "root")]
    path: String,
    #[serde(default)]
    query: String,
    scene: Scene,
    #[serde(default)]
    trial: bool,
}

fn root() -> String {
    "/".into()
}

pub async fn launch(state: Shared, signed_in: SignedIn, body: Body) -> Result<Response, ApiError> {
    let body: LaunchBody = json_body(body).await?;
    let appid = parse_appid(&body.appid)?;
    let channel = if body.trial {
        Channel::Trial
    } else {
        Channel::Release
    };
    let launch = state
        .platform
        .launch(
            &signed_in.account,
            &appid,
            &body.path,
            &body.query,
            body.scene,
            channel,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(launch)).into_response())
}

/// WeChat's `code2Session` shape: the app's server trades a login code.
#[derive(Deserialize)]
pub struct CodeQuery {
    appid: String,
    secret: String,
    js_code: String,
    grant_type: String,
}

pub async fn code_to_session(
    state: Shared,
    Query(query): Query<CodeQuery>,
) -> Result<Response, ApiError> {
    if query.grant_type != "authorization_code" {
        return Err(ApiError::bad_request(
            "grant_type must be authorization_code",
        ));
    }
    let unknown = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_secret",
            CodeError::WrongSecret.to_string(),
        )
    };
    let appid = query.appid.parse().map_err(|_| unknown())?;
    match state
        .platform
        .identity()
        .exchange_login_code(&appid, &query.secret, &query.js_code)
        .await
    {
        Ok(user) => Ok(Json(user).into_response()),
        Err(CodeError::WrongSecret) => Err(unknown()),
        Err(err @ CodeError::Invalid) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_code",
            err.to_string(),
        )),
        Err(CodeError::Internal(err)) => Err(crate::platform::PlatformError::Internal(err).into()),
    }
}
