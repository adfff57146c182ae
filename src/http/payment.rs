//! Money over HTTP: the user's PIN, wallet and confirmation step, an
//! admin's top-ups, and a developer's statement and events.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::auth::SignedIn;
use super::{ApiError, Shared, json_body, page_limit, parse_appid};
use crate::db::now_ms;
use crate::domain::{day_name, day_of, parse_day};

/// The most days one statement covers.
const MAX_STATEMENT_DAYS: i64 = 366;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetPin {
    password: String,
    pin: String,
}

pub async fn set_pin(
    state: Shared,
    signed_in: SignedIn,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let request: SetPin = json_body(body).await?;
    state
        .platform
        .set_payment_pin(&signed_in.account, request.password, &request.pin)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub struct Page {
    before: Option<i64>,
    limit: Option<i64>,
}

pub async fn wallet(
    state: Shared,
    signed_in: SignedIn,
    Query(page): Query<Page>,
) -> Result<Response, ApiError> {
    let limit = page_limit(page.limit)?;
    let wallet = state
        .platform
        .wallet(&signed_in.account, page.before, limit)
        .await?;
    Ok(Json(wallet).into_response())
}

pub async fn order(
    state: Shared,
    signed_in: SignedIn,
    Path(prepay_id): Path<String>,
) -> Result<Response, ApiError> {
    let order = state
        .platform
        .payment_order(&signed_in.account, &prepay_id)
        .await?;
    Ok(Json(order).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Confirm {
    pin: String,
}

pub async fn confirm(
    state: Shared,
    signed_in: SignedIn,
    Path(prepay_id): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let request: Confirm = json_body(body).await?;
    let order = state
        .platform
        .confirm_payment(&signed_in.account, &prepay_id, &request.pin)
        .await?;
    Ok(Json(order).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopUp {
    amount: u64,
}

pub async fn top_up(
    state: Shared,
    signed_in: SignedIn,
    Path(username): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let request: TopUp = json_body(body).await?;
    let balance = state
        .platform
        .top_up(&signed_in.account, &username, request.amount)
        .await?;
    Ok(Json(serde_json::json!({ "username": username, "balance": balance })).into_response())
}

#[derive(Deserialize)]
pub struct Days {
    from: Option<String>,
    to: Option<String>,
}

/// The developer's statement of the app's merchant account, by UTC day:
/// the last 30 days unless `from` and `to` (`YYYY-MM-DD`) say otherwise.
pub async fn statement(
    state: Shared,
    signed_in: SignedIn,
    Path(appid): Path<String>,
    Query(days): Query<Days>,
) -> Result<Response, ApiError> {
    let appid = parse_appid(&appid)?;
    let day = |name: Option<String>, field: &str, default: i64| match name {
        Some(name) => {
            parse_day(&name).map_err(|err| ApiError::bad_request(format!("{field}: {err}")))
        }
        None => Ok(default),
    };
    let today = day_of(now_ms());
    let to = day(days.to, "to", today)?;
    let from = day(days.from, "from", to - 29)?;
    if from > to || to - from >= MAX_STATEMENT_DAYS {
        return Err(ApiError::bad_request(format!(
            "from must not be after to, and a statement covers at most {MAX_STATEMENT_DAYS} days"
        )));
    }
    let statement = state
        .platform
        .merchant_statement(&signed_in.account, &appid, from, to)
        .await?;
    Ok(Json(serde_json::json!({
        "appid": appid,
        "from": day_name(from),
        "to": day_name(to),
        "balance": statement.balance,
        "days": statement.days,
    }))
    .into_response())
}

#[derive(Deserialize)]
pub struct EventsQuery {
    limit: Option<i64>,
}

pub async fn events(
    state: Shared,
    signed_in: SignedIn,
    Path(appid): Path<String>,
    Query(query): Query<EventsQuery>,
) -> Result<Response, ApiError> {
    let appid = parse_appid(&appid)?;
    let limit = page_limit(query.limit)?;
    let events = state
        .platform
        .app_events(&signed_in.account, &appid, limit)
        .await?;
    Ok(Json(serde_json::json!({ "events": events })).into_response())
}
