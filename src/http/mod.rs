//! The HTTP API (axum): the only module that knows routes, status codes and JSON.
//!
//! - `GET /healthz`, `GET /readyz`: liveness and readiness.
//! - `/v1/accounts`, `/v1/sessions`, `/v1/me`: accounts and sign-in ([`accounts`]).
//! - `/v1/apps/...`: developers' apps and their lifecycle ([`apps`]).
//! - `/v1/review/...`: the reviewers' queue and decisions ([`review`]).
//! - `/v1/directory`, `/v1/launch`, `/v1/sns/jscode2session`: users and
//!   apps' own servers ([`users`]).
//! - `/v1/me/payment-pin`, `/v1/me/wallet`, `/v1/pay/orders/...`,
//!   `/v1/admin/wallets/...`, `/v1/apps/{appid}/statement|events`: money
//!   ([`payment`]).
//! - `/v1/me/subscriptions`, `/v1/me/conversations/{appid}`,
//!   `/v1/me/messages[/read|/stream]`: messages ([`messaging`]).
//! - `ANY /apps/{appid}/{*path}`, `ANY /trial/{appid}/{*path}`: users reach
//!   a mini-program ([`invoke`]).

mod accounts;
mod apps;
mod auth;
mod error;
mod invoke;
mod messaging;
mod payment;
mod review;
mod users;

use std::sync::Arc;

use axum::body::{Body, to_bytes};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post, put};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use tower_http::trace::TraceLayer;

pub use error::ApiError;
pub use invoke::CALL_ID_HEADER;

use crate::domain::AppId;
use crate::platform::Platform;

/// Cap on the JSON bodies of the API: 16 KiB.
const MAX_JSON_BYTES: usize = 16 << 10;

/// What every handler shares.
pub struct AppState {
    pub platform: Arc<Platform>,
    max_request_bytes: usize,
}

impl AppState {
    pub fn new(platform: Arc<Platform>, max_request_bytes: usize) -> Self {
        AppState {
            platform,
            max_request_bytes,
        }
    }
}

type Shared = State<Arc<AppState>>;

/// The complete router; with `native_baseline`, `/native/hello/{*path}`
/// too (see [`native_hello`]).
pub fn router(state: Arc<AppState>, native_baseline: bool) -> Router {
    // Room for the manifest and the multipart framing around the largest component.
    let upload_limit = state.platform.max_component_bytes() + apps::MAX_MANIFEST_BYTES + 4096;
    let mut routes = Router::new();
    if native_baseline {
        routes = routes.route("/native/hello/{*path}", get(native_hello));
    }
    routes
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/v1/accounts", post(accounts::sign_up))
        .route("/v1/accounts/{username}/roles", put(accounts::set_roles))
        .route(
            "/v1/accounts/{username}/sessions",
            axum::routing::delete(accounts::revoke_sessions),
        )
        .route("/v1/sessions", post(accounts::login))
        .route(
            "/v1/sessions/current",
            axum::routing::delete(accounts::logout),
        )
        .route("/v1/me", get(accounts::me))
        .route("/v1/me/grants", get(users::grants))
        .route(
            "/v1/me/storage/{appid}",
            get(users::stored_about).delete(users::clear_stored_about),
        )
        .route(
            "/v1/me/grants/{appid}/{scope}",
            put(users::grant).delete(users::revoke_grant),
        )
        .route("/v1/me/subscriptions", get(messaging::subscriptions))
        .route(
            "/v1/me/subscriptions/{appid}/{template_id}",
            put(messaging::subscribe).delete(messaging::unsubscribe),
        )
        .route("/v1/me/conversations/{appid}", post(messaging::write))
        .route("/v1/me/messages", get(messaging::inbox))
        .route("/v1/me/messages/read", post(messaging::mark_read))
        .route("/v1/me/messages/stream", get(messaging::stream))
        .route("/v1/me/payment-pin", put(payment::set_pin))
        .route("/v1/me/wallet", get(payment::wallet))
        .route("/v1/pay/orders/{prepay_id}", get(payment::order))
        .route("/v1/pay/orders/{prepay_id}/confirm", post(payment::confirm))
        .route("/v1/admin/wallets/{username}/top-up", post(payment::top_up))
        .route("/v1/apps", post(apps::create).get(apps::list))
        .route("/v1/apps/{appid}", get(apps::status).delete(apps::delete))
        .route("/v1/apps/{appid}/secret", post(apps::rotate_secret))
        .route("/v1/apps/{appid}/testers", put(apps::set_testers))
        .route(
            "/v1/apps/{appid}/versions",
            post(apps::upload)
                .layer(DefaultBodyLimit::max(upload_limit))
                .get(apps::versions),
        )
        .route("/v1/apps/{appid}/versions/{version}", get(apps::version))
        .route(
            "/v1/apps/{appid}/versions/{version}/{action}",
            post(apps::transition),
        )
        .route("/v1/apps/{appid}/release", post(apps::release))
        .route("/v1/apps/{appid}/rollback", post(apps::rollback))
        .route("/v1/apps/{appid}/audit", get(apps::audit))
        .route("/v1/apps/{appid}/calls", get(apps::recent_calls))
        .route("/v1/apps/{appid}/statement", get(payment::statement))
        .route("/v1/apps/{appid}/events", get(payment::events))
        .route("/v1/apps/{appid}/calls/{call_id}", get(apps::call_detail))
        .route("/v1/review/queue", get(review::queue))
        .route("/v1/review/{appid}/{version}", get(review::detail))
        .route(
            "/v1/review/{appid}/{version}/{decision}",
            post(review::decide),
        )
        .route("/v1/directory", get(users::directory))
        .route("/v1/launch", post(users::launch))
        .route("/v1/sns/jscode2session", get(users::code_to_session))
        .route("/apps/{appid}", any(invoke::release))
        .route("/apps/{appid}/", any(invoke::release))
        .route("/apps/{appid}/{*path}", any(invoke::release))
        .route("/trial/{appid}", any(invoke::trial))
        .route("/trial/{appid}/", any(invoke::trial))
        .route("/trial/{appid}/{*path}", any(invoke::trial))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// The load script's baseline: in native code, what the `hello` sample
/// answers for a path and query, served through the same layers as the
/// routes to mini-programs.
async fn native_hello(Path(path): Path<String>, uri: Uri, method: Method) -> Response {
    let body = serde_json::json!({
        "greeting": "Hello, world!",
        "method": method.as_str(),
        "path": format!("/{path}"),
        "query": uri.query().unwrap_or_default(),
    });
    Json(body).into_response()
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): Shared) -> Response {
    let platform = &state.platform;
    let stats = platform.runtime().stats();
    let database = match platform.db().engine() {
        crate::db::Engine::Sqlite => "sqlite",
        crate::db::Engine::Postgres => "postgres",
    };
    let body = |status: &str| {
        serde_json::json!({
            "status": status,
            "database": database,
            "runtime": stats,
        })
    };
    match platform.db().ping().await {
        Ok(()) => Json(body("ready")).into_response(),
        Err(err) => {
            tracing::warn!(error = %err, "database not ready");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(body("database unavailable")),
            )
                .into_response()
        }
    }
}

/// Reads a whole request body of at most `limit` bytes. Past the limit the
/// answer is 413 naming `what`; a body that breaks off is a 400.
async fn read_body(body: Body, limit: usize, what: &str) -> Result<axum::body::Bytes, ApiError> {
    to_bytes(body, limit).await.map_err(|err| {
        let over_limit = err
            .into_inner()
            .downcast_ref::<http_body_util::LengthLimitError>()
            .is_some();
        if over_limit {
            ApiError::too_large(what, limit)
        } else {
            ApiError {
                body_unread: true,
                ..ApiError::bad_request(format!("the {what} could not be read"))
            }
        }
    })
}

/// Reads a JSON request body (at most 16 KiB) into `T`; what is wrong with
/// it is named in the 400.
async fn json_body<T: DeserializeOwned>(body: Body) -> Result<T, ApiError> {
    let bytes = read_body(body, MAX_JSON_BYTES, "request body").await?;
    parse_json(&bytes)
}

/// [`json_body`] for bodies that may be left out: an empty body is `T::default()`.
async fn optional_json_body<T: DeserializeOwned + Default>(body: Body) -> Result<T, ApiError> {
    let bytes = read_body(body, MAX_JSON_BYTES, "request body").await?;
    if bytes.is_empty() {
        return Ok(T::default());
    }
    parse_json(&bytes)
}

fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|err| ApiError::bad_request(format!("invalid request body: {err}")))
}

/// An appid from a path: one that cannot exist is simply not found.
fn parse_appid(raw: &str) -> Result<AppId, ApiError> {
    raw.parse().map_err(|msg: String| ApiError::not_found(msg))
}

/// A listing's `limit` query parameter: 100 unless given, 1 to 1000.
fn page_limit(limit: Option<i64>) -> Result<i64, ApiError> {
    let limit = limit.unwrap_or(100);
    if (1..=1000).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::bad_request("limit must be between 1 and 1000"))
    }
}

/// A version number from a path.
fn parse_version(raw: &str) -> Result<i64, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::not_found(format!("version {raw:?} not found")))
}
