//! The HTTP API (axum): the only module that knows routes, status codes and JSON.
//!
//! - `GET /healthz`, `GET /readyz`: liveness and readiness.
//! - `/v1/apps/{appid}/...`: the developer API (admin bearer token).
//! - `ANY /apps/{appid}/{*path}`: users reach a mini-program.

mod error;

use std::sync::Arc;

use axum::body::{Body, to_bytes};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post, put};
use axum::{Json, Router};
use sha2::{Digest as _, Sha256};
use tower_http::trace::TraceLayer;

pub use error::ApiError;

use crate::domain::AppId;
use crate::platform::{Invoked, Platform};
use crate::runtime::{Invocation, Limits, Outcome, Reply, Request};

/// Cap on the JSON bodies of the developer API: 16 KiB.
const MAX_JSON_BYTES: usize = 16 << 10;

/// Response header naming the call, to find its usage record and log.
pub const CALL_ID_HEADER: &str = "x-miniapp-call-id";

/// What every handler shares.
pub struct AppState {
    pub platform: Arc<Platform>,
    admin_token_sha256: [u8; 32],
    max_request_bytes: usize,
}

impl AppState {
    pub fn new(platform: Arc<Platform>, admin_token: &str, max_request_bytes: usize) -> Self {
        AppState {
            platform,
            admin_token_sha256: Sha256::digest(admin_token.as_bytes()).into(),
            max_request_bytes,
        }
    }
}

type Shared = State<Arc<AppState>>;

/// The complete router.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/v1/apps/{appid}/versions", post(upload).get(versions))
        .route(
            "/v1/apps/{appid}/limits",
            put(set_limits).delete(reset_limits),
        )
        .route("/v1/apps/{appid}/calls", get(recent_calls))
        .route("/v1/apps/{appid}/calls/{call_id}", get(call_detail))
        .route("/apps/{appid}", any(invoke))
        .route("/apps/{appid}/", any(invoke))
        .route("/apps/{appid}/{*path}", any(invoke))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// The load script's baseline: in native code, what the `hello` sample
/// answers for a path and query.
pub fn native_baseline() -> Router {
    async fn hello(Path(path): Path<String>, uri: Uri, method: Method) -> Response {
        let body = serde_json::json!({
            "greeting": "Hello, world!",
            "method": method.as_str(),
            "path": format!("/{path}"),
            "query": uri.query().unwrap_or_default(),
        });
        Json(body).into_response()
    }
    Router::new().route("/native/hello/{*path}", get(hello))
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

/// Proof that the request carries the admin token.
struct Admin;

impl FromRequestParts<Arc<AppState>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .ok_or_else(ApiError::unauthorized)?;
        // Comparing digests keeps the comparison's timing unrelated to the token.
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if presented != state.admin_token_sha256 {
            return Err(ApiError::unauthorized());
        }
        Ok(Admin)
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

fn parse_appid(raw: &str) -> Result<AppId, ApiError> {
    raw.parse().map_err(|msg: String| ApiError::not_found(msg))
}

async fn upload(
    State(state): Shared,
    _admin: Admin,
    Path(appid): Path<String>,
    body: Body,
) -> Result<(StatusCode, Response), ApiError> {
    let limit = state.platform.max_component_bytes();
    let bytes = read_body(body, limit, "component").await?;
    let appid: AppId = appid.parse().map_err(ApiError::bad_request)?;
    let uploaded = state.platform.upload(&appid, bytes.to_vec()).await?;
    Ok((StatusCode::CREATED, Json(uploaded).into_response()))
}

async fn versions(
    State(state): Shared,
    _admin: Admin,
    Path(appid): Path<String>,
) -> Result<Response, ApiError> {
    let appid = parse_appid(&appid)?;
    let versions = state.platform.versions(&appid).await?;
    Ok(Json(serde_json::json!({ "versions": versions })).into_response())
}

async fn set_limits(
    State(state): Shared,
    _admin: Admin,
    Path(appid): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let body = read_body(body, MAX_JSON_BYTES, "request body").await?;
    let appid = parse_appid(&appid)?;
    let limits: Limits = serde_json::from_slice(&body).map_err(|err| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_limits",
            format!("invalid limits: {err}"),
        )
    })?;
    let limits = state.platform.set_limits(&appid, Some(limits)).await?;
    Ok(Json(limits).into_response())
}

async fn reset_limits(
    State(state): Shared,
    _admin: Admin,
    Path(appid): Path<String>,
) -> Result<Response, ApiError> {
    let appid = parse_appid(&appid)?;
    let limits = state.platform.set_limits(&appid, None).await?;
    Ok(Json(limits).into_response())
}

#[derive(serde::Deserialize)]
struct CallsQuery {
    limit: Option<i64>,
}

async fn recent_calls(
    State(state): Shared,
    _admin: Admin,
    Path(appid): Path<String>,
    Query(query): Query<CallsQuery>,
) -> Result<Response, ApiError> {
    let appid = parse_appid(&appid)?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("limit must be between 1 and 1000"));
    }
    let calls = state.platform.recent_calls(&appid, limit).await?;
    Ok(Json(serde_json::json!({ "calls": calls })).into_response())
}

async fn call_detail(
    State(state): Shared,
    _admin: Admin,
    Path((appid, call_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let appid = parse_appid(&appid)?;
    match state.platform.call(&appid, &call_id).await? {
        Some(call) => Ok(Json(call).into_response()),
        None => Err(ApiError::not_found(format!(
            "call {call_id} of app {appid} not found"
        ))),
    }
}

async fn invoke(
    State(state): Shared,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let body = read_body(body, state.max_request_bytes, "request body").await?;
    let (appid, path) = split_app_path(uri.path());
    let appid = parse_appid(appid)?;
    let request = Request {
        method: method.as_str().to_string(),
        path: path.to_string(),
        query: uri.query().unwrap_or_default().to_string(),
        headers: forwarded_headers(&headers),
        body: body.to_vec(),
    };
    let invoked = state
        .platform
        .invoke(&appid, Invocation::Request(request))
        .await?;
    Ok(respond(invoked))
}

/// Splits `/apps/{appid}/rest` into the appid and the path the program sees
/// (`/rest`, or `/`), still percent-encoded as the user sent it.
fn split_app_path(raw: &str) -> (&str, &str) {
    let after = raw.strip_prefix("/apps/").unwrap_or_default();
    match after.find('/') {
        Some(slash) => (&after[..slash], &after[slash..]),
        None => (after, "/"),
    }
}

/// Headers a mini-program may see: never the platform's credentials, never
/// hop-by-hop headers.
fn forwarded_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(name, _)| !is_private_request_header(name))
        .filter_map(|(name, value)| {
            Some((name.as_str().to_string(), value.to_str().ok()?.to_string()))
        })
        .collect()
}

fn is_private_request_header(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "authorization"
            | "cookie"
            | "proxy-authorization"
            | "connection"
            | "keep-alive"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "proxy-connection"
    )
}

/// Headers a mini-program may not set: hop-by-hop, framing (the host frames
/// the body), and cookies on the platform's origin.
fn is_forbidden_response_header(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "proxy-connection"
            | "content-length"
            | "set-cookie"
            | "content-security-policy"
    )
}

fn respond(invoked: Invoked) -> Response {
    let Invoked {
        call_id, report, ..
    } = invoked;
    let (status, code, message) = match (&report.outcome, report.reply) {
        (Outcome::Ok, Some(Reply::Response(guest))) => return guest_response(&call_id, guest),
        (Outcome::Ok, _) => (
            StatusCode::BAD_GATEWAY,
            "trap",
            "the mini-program gave no response".to_string(),
        ),
        (Outcome::Trap(detail), _) => (
            StatusCode::BAD_GATEWAY,
            "trap",
            format!("the mini-program failed: {detail}"),
        ),
        (Outcome::OutOfFuel, _) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "out_of_fuel",
            "the mini-program used up its instruction budget".to_string(),
        ),
        (Outcome::MemoryLimit, _) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "memory_limit",
            "the mini-program exceeded its memory limit".to_string(),
        ),
        (Outcome::Deadline, _) => (
            StatusCode::GATEWAY_TIMEOUT,
            "deadline",
            "the mini-program did not finish before its deadline".to_string(),
        ),
        (Outcome::HostError(detail), _) => {
            tracing::error!(call_id, detail, "host error during call");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "host_error",
                "the platform failed while running the mini-program".to_string(),
            )
        }
    };
    let mut error = ApiError::new(status, code, message);
    error.call_id = Some(call_id);
    error.into_response()
}

fn guest_response(call_id: &str, guest: crate::runtime::Response) -> Response {
    let mut response = Response::new(Body::from(guest.body));
    *response.status_mut() = StatusCode::from_u16(guest.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let headers = response.headers_mut();
    for (name, value) in guest.headers {
        let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value))
        else {
            continue;
        };
        if !is_forbidden_response_header(&name) {
            headers.append(name, value);
        }
    }
    // Mini-programs share the platform's origin: a sandboxed CSP gives any
    // page they serve an opaque origin, so its scripts cannot read the
    // platform's (or another app's) cookies and storage.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox allow-scripts allow-forms allow-popups"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(value) = HeaderValue::from_str(call_id) {
        headers.insert(CALL_ID_HEADER, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::split_app_path;

    #[test]
    fn the_program_sees_its_path_still_encoded() {
        assert_eq!(split_app_path("/apps/hello"), ("hello", "/"));
        assert_eq!(split_app_path("/apps/hello/"), ("hello", "/"));
        assert_eq!(split_app_path("/apps/hello/a%2Fb/c"), ("hello", "/a%2Fb/c"));
    }
}
