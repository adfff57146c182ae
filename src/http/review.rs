//! The reviewers' API: the queue, a version's detail, approve or reject.

use axum::Json;
use axum::body::Body;
use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::auth::SignedIn;
use super::{ApiError, Shared, parse_appid, parse_version};

pub async fn queue(state: Shared, signed_in: SignedIn) -> Result<Response, ApiError> {
    let queue = state.platform.review_queue(&signed_in.account).await?;
    Ok(Json(serde_json::json!({ "queue": queue })).into_response())
}

pub async fn detail(
    state: Shared,
    signed_in: SignedIn,
    Path((appid, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let appid = parse_appid(&appid)?;
    let version = parse_version(&version)?;
    let detail = state
        .platform
        .review_detail(&signed_in.account, &appid, version)
        .await?;
    Ok(Json(detail).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Decision {
    #[serde(default)]
    reason: Option<String>,
}

pub async fn decide(
    state: Shared,
    signed_in: SignedIn,
    Path((appid, version, decision)): Path<(String, String, String)>,
    body: Body,
) -> Result<Response, ApiError> {
    let appid = parse_appid(&appid)?;
    let version = parse_version(&version)?;
    let approve = match decision.as_str() {
        "approve" => true,
        "reject" => false,
        other => {
            return Err(ApiError::not_found(format!(
                "no decision {other:?}: a reviewer may approve or reject"
            )));
        }
    };
    let decision: Decision = super::optional_json_body(body).await?;
    let summary = state
        .platform
        .review(
            &signed_in.account,
            &appid,
            version,
            approve,
            decision.reason.as_deref(),
        )
        .await?;
    Ok(Json(summary).into_response())
}
