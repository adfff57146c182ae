//! Users reach a mini-program: the HTTP request becomes the guest's
//! request (credentials stripped), and the guest's response or the call's
//! outcome becomes the HTTP response (with the platform's safety headers).

use axum::body::Body;
use axum::extract::State;
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use super::auth::MaybeSignedIn;
use super::{ApiError, Shared, parse_appid, read_body};
use crate::accounts::Account;
use crate::platform::{Channel, Invoked};
use crate::runtime::{Invocation, Outcome, Reply, Request};

/// Response header naming the call, to find its usage record and log.
pub const CALL_ID_HEADER: &str = "x-miniapp-call-id";

pub async fn release(
    state: Shared,
    MaybeSignedIn(caller): MaybeSignedIn,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    invoke(state, Channel::Release, caller, method, uri, headers, body).await
}

pub async fn trial(
    state: Shared,
    MaybeSignedIn(caller): MaybeSignedIn,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    invoke(state, Channel::Trial, caller, method, uri, headers, body).await
}

async fn invoke(
    State(state): Shared,
    channel: Channel,
    caller: Option<Account>,
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
        .invoke(
            &appid,
            channel,
            caller.as_ref(),
            Invocation::Request(request),
        )
        .await?;
    Ok(respond(invoked))
}

/// Splits `/apps/{appid}/rest` (or `/trial/{appid}/rest`) into the appid
/// and the path the program sees (`/rest`, or `/`), still percent-encoded as
/// the user sent it.
fn split_app_path(raw: &str) -> (&str, &str) {
    let after = raw
        .strip_prefix("/apps/")
        .or_else(|| raw.strip_prefix("/trial/"))
        .unwrap_or_default();
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
        assert_eq!(split_app_path("/trial/hello/x"), ("hello", "/x"));
    }
}
