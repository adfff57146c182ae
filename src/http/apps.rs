//! Developers' apps: registration, upload, the lifecycle, usage records.

use axum::Json;
use axum::body::Body;
use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::auth::SignedIn;
use super::{ApiError, Shared, json_body, page_limit, parse_appid, parse_version};
use crate::accounts::Username;
use crate::lifecycle::Action;
use crate::platform::NewApp;

/// Cap on an uploaded manifest: 64 KiB.
pub const MAX_MANIFEST_BYTES: usize = 64 << 10;

pub async fn create(state: Shared, signed_in: SignedIn, body: Body) -> Result<Response, ApiError> {
    let new: NewApp = json_body(body).await?;
    let (status, secret) = state.platform.create_app(&signed_in.account, new).await?;
    let mut body = serde_json::to_value(status)
        .map_err(|err| crate::platform::PlatformError::Internal(err.into()))?;
    body["secret"] = secret.into();
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

pub async fn list(state: Shared, signed_in: SignedIn) -> Result<Response, ApiError> {
    let apps = state.platform.apps(&signed_in.account).await?;
    Ok(Json(serde_json::json!({ "apps": apps })).into_response())
}

pub async fn status(
    state: Shared,
    signed_in: SignedIn,
    Path(appid): Path<String>,
) -> Result<Response, ApiError> {
    let appid = parse_appid(&appid)?;
    let status = state
        .platform
        .app_status(&signed_in.account, &appid)
        .await?;
    Ok(Json(status).into_response())
}

pub async fn delete(
    state: Shared,
    signed_in: SignedIn,
    Path(appid): Path<String>,
) -> Result<StatusCode, ApiError> {
    let appid = parse_appid(&appid)?;
    state
        .platform
        .delete_app(&signed_in.account, &appid)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn rotate_secret(
    state: Shared,
    signed_in: SignedIn,
    Path(appid): Path<String>,
) -> Result<Response, ApiError> {
    let appid = parse_appid(&appid)?;
    let secret = state
        .platform
        .rotate_secret(&signed_in.account, &appid)
        .await?;
    Ok(Json(serde_json::json!({ "secret": secret })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Testers {
    testers: Vec<Username>,
}

pub async fn set_testers(
    state: Shared,
    signed_in: SignedIn,
    Path(appid): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let appid = parse_appid(&appid)?;
    let Testers { testers } = json_body(body).await?;
    let testers = state
        .platform
        .set_testers(&signed_in.account, &appid, testers)
        .await?;
    Ok(Json(serde_json::json!({ "testers": testers })).into_response())
}

/// `multipart/form-data` with a `manifest` part (JSON) and a `component`
/// part (the component's bytes).
pub async fn upload(
    state: Shared,
    signed_in: SignedIn,
    Path(appid): Path<String>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    let appid = parse_appid(&appid)?;
    let shape = "an upload is multipart/form-data with a `manifest` part (JSON) and a \
                 `component` part (the .wasm bytes)";
    let mut multipart = multipart.map_err(|_| ApiError {
        body_unread: true,
        ..ApiError::bad_request(shape)
    })?;
    let limit = state.platform.max_component_bytes();
    let (mut manifest, mut component) = (None, None);
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(err) => return Err(multipart_error(err, limit)),
        };
        let name = field.name().unwrap_or_default().to_string();
        let bytes = field
            .bytes()
            .await
            .map_err(|err| multipart_error(err, limit))?;
        match name.as_str() {
            "manifest" if bytes.len() > MAX_MANIFEST_BYTES => {
                return Err(ApiError::too_large("manifest", MAX_MANIFEST_BYTES));
            }
            "manifest" => manifest = Some(bytes),
            "component" => component = Some(bytes),
            other => {
                return Err(ApiError::bad_request(format!(
                    "unexpected part {other:?}: {shape}"
                )));
            }
        }
    }
    let (Some(manifest), Some(component)) = (manifest, component) else {
        return Err(ApiError::bad_request(format!("a part is missing: {shape}")));
    };
    let detail = state
        .platform
        .upload(&signed_in.account, &appid, &manifest, component.to_vec())
        .await?;
    Ok((StatusCode::CREATED, Json(detail)).into_response())
}

fn multipart_error(err: axum::extract::multipart::MultipartError, limit: usize) -> ApiError {
    if err.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::too_large("component", limit)
    } else {
        ApiError {
            body_unread: true,
            ..ApiError::bad_request(format!(
                "the multipart body is malformed: {}",
                err.body_text()
            ))
        }
    }
}

pub async fn versions(
    state: Shared,
    signed_in: SignedIn,
    Path(appid): Path<String>,
) -> Result<Response, ApiError> {
    let appid = parse_appid(&appid)?;
    let versions = state.platform.versions(&signed_in.account, &appid).await?;
    Ok(Json(serde_json::json!({ "versions": versions })).into_response())
}

pub async fn version(
    state: Shared,
    signed_in: SignedIn,
    Path((appid, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let appid = parse_appid(&appid)?;
    let version = parse_version(&version)?;
    let detail = state
        .platform
        .version_detail(&signed_in.account, &appid, version)
        .await?;
    Ok(Json(detail).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TransitionBody {
    #[serde(default)]
    notes: String,
}

pub async fn transition(
    state: Shared,
    signed_in: SignedIn,
    Path((appid, version, action)): Path<(String, String, String)>,
    body: Body,
) -> Result<Response, ApiError> {
    let appid = parse_appid(&appid)?;
    let version = parse_version(&version)?;
    let action = match action.as_str() {
        "trial" => Action::Trial,
        "submit" => Action::Submit,
        "withdraw" => Action::Withdraw,
        other => {
            return Err(ApiError::not_found(format!(
                "no transition {other:?}: a developer may trial, submit or withdraw a version"
            )));
        }
    };
    let body: TransitionBody = super::optional_json_body(body).await?;
    let summary = state
        .platform
        .developer_transition(&signed_in.account, &appid, version, action, &body.notes)
        .await?;
    Ok(Json(summary).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReleaseBody {
    version: i64,
    #[serde(default = "full")]
    percent: u8,
}

fn full() -> u8 {
    100
}

pub async fn release(
    state: Shared,
    signed_in: SignedIn,
    Path(appid): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let appid = parse_appid(&appid)?;
    let ReleaseBody { version, percent } = json_body(body).await?;
    let status = state
        .platform
        .release(&signed_in.account, &appid, version, percent)
        .await?;
    Ok(Json(status).into_response())
}

pub async fn rollback(
    state: Shared,
    signed_in: SignedIn,
    Path(appid): Path<String>,
) -> Result<Response, ApiError> {
    let appid = parse_appid(&appid)?;
    let status = state.platform.rollback(&signed_in.account, &appid).await?;
    Ok(Json(status).into_response())
}

pub async fn audit(
    state: Shared,
    signed_in: SignedIn,
    Path(appid): Path<String>,
) -> Result<Response, ApiError> {
    let appid = parse_appid(&appid)?;
    let entries = state.platform.audit_log(&signed_in.account, &appid).await?;
    Ok(Json(serde_json::json!({ "entries": entries })).into_response())
}

#[derive(Deserialize)]
pub struct CallsQuery {
    limit: Option<i64>,
}

pub async fn recent_calls(
    state: Shared,
    signed_in: SignedIn,
    Path(appid): Path<String>,
    Query(query): Query<CallsQuery>,
) -> Result<Response, ApiError> {
    let appid = parse_appid(&appid)?;
    let limit = page_limit(query.limit)?;
    let calls = state
        .platform
        .recent_calls(&signed_in.account, &appid, limit)
        .await?;
    Ok(Json(serde_json::json!({ "calls": calls })).into_response())
}

pub async fn call_detail(
    state: Shared,
    signed_in: SignedIn,
    Path((appid, call_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let appid = parse_appid(&appid)?;
    let call = state
        .platform
        .call(&signed_in.account, &appid, &call_id)
        .await?;
    Ok(Json(call).into_response())
}
