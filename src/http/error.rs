//! The HTTP layer's one error type: a stable machine-readable code, a human
//! message, a fitting status, and no internal detail.

use axum::Json;
use axum::http::StatusCode;
use axum::http::header::{self, HeaderValue};
use axum::response::{IntoResponse, Response};

use crate::payment::PaymentError;
use crate::platform::PlatformError;
use crate::runtime::Rejection;

/// An error answered to an HTTP client as
/// `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// The call this error belongs to, for errors of a mini-program call.
    pub call_id: Option<String>,
    /// The request's body was refused unread: the connection must close, or
    /// the client would send its next request into the rest of this body.
    pub body_unread: bool,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            call_id: None,
            body_unread: false,
        }
    }

    /// Refused before the body is read.
    pub fn unauthorized() -> Self {
        ApiError {
            body_unread: true,
            ..ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this endpoint needs `Authorization: Bearer <token>`: sign in with POST /v1/sessions",
            )
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// Refused with the body read only up to the limit.
    pub fn too_large(what: &str, limit: usize) -> Self {
        ApiError {
            body_unread: true,
            ..ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("the {what} is larger than the limit of {limit} bytes"),
            )
        }
    }

    pub(super) fn internal(err: &anyhow::Error) -> Self {
        // The cause chain goes to the log, never to the client.
        tracing::error!(error = format!("{err:#}"), "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the platform failed to handle the request",
        )
    }
}

impl From<PlatformError> for ApiError {
    fn from(err: PlatformError) -> Self {
        let message = err.to_string();
        match err {
            PlatformError::Rejected(rejection) => {
                let code = match rejection {
                    Rejection::NotWasm => "not_wasm",
                    Rejection::CoreModule => "core_module",
                    Rejection::Malformed(_) => "malformed_component",
                    Rejection::ForbiddenImport(_) => "forbidden_import",
                    Rejection::IncompatibleContract { .. } => "incompatible_contract",
                    Rejection::MissingExport(_) => "missing_export",
                };
                ApiError::new(StatusCode::BAD_REQUEST, code, message)
            }
            PlatformError::TooLarge { limit, .. } => ApiError::too_large("component", limit),
            PlatformError::InvalidManifest(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_manifest", message)
            }
            PlatformError::Unauthenticated(_) => {
                ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
            }
            PlatformError::Forbidden(_) => {
                ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
            }
            PlatformError::Throttled(_) => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_attempts", message)
            }
            PlatformError::NotFound(_) => ApiError::not_found(message),
            PlatformError::Invalid(_) => ApiError::bad_request(message),
            PlatformError::Conflict(_) => ApiError::new(StatusCode::CONFLICT, "conflict", message),
            PlatformError::Transition(_) => {
                ApiError::new(StatusCode::CONFLICT, "invalid_transition", message)
            }
            PlatformError::Payment(err) => err.into(),
            PlatformError::Internal(err) => ApiError::internal(&err),
        }
    }
}

impl From<PaymentError> for ApiError {
    fn from(err: PaymentError) -> Self {
        let message = err.to_string();
        let (status, code) = match err {
            PaymentError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            PaymentError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            PaymentError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            PaymentError::InsufficientFunds(_) => (StatusCode::CONFLICT, "insufficient_balance"),
            PaymentError::LimitReached(_) => (StatusCode::CONFLICT, "limit_reached"),
            PaymentError::Denied(_) => (StatusCode::FORBIDDEN, "forbidden"),
            PaymentError::WrongPin { .. } => (StatusCode::FORBIDDEN, "wrong_pin"),
            PaymentError::Locked { .. } => (StatusCode::TOO_MANY_REQUESTS, "too_many_attempts"),
            PaymentError::NoPin => (StatusCode::CONFLICT, "no_pin"),
            PaymentError::Unavailable(err) => return ApiError::internal(&err),
        };
        ApiError::new(status, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = serde_json::json!({ "code": self.code, "message": self.message });
        if let Some(call_id) = &self.call_id {
            error["call_id"] = call_id.clone().into();
        }
        let mut response =
            (self.status, Json(serde_json::json!({ "error": error }))).into_response();
        if let Some(call_id) = self.call_id
            && let Ok(value) = call_id.parse()
        {
            response.headers_mut().insert(super::CALL_ID_HEADER, value);
        }
        if self.body_unread {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}
