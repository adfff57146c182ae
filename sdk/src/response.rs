//! The response a mini-program gives, and builders for the common kinds.

use crate::bindings::miniapp::host::types as wit;
use crate::{Error, json};

/// A mini-program's answer to a request.
///
/// The host drops hop-by-hop headers and `set-cookie`, and answers 502 in the
/// program's place when `status` is outside 100 to 599.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The HTTP status code, 100 to 599.
    pub status: u16,
    /// The headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// A response with `status`, no headers and an empty body.
    pub fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A `text/plain; charset=utf-8` response.
    pub fn text(status: u16, text: impl Into<String>) -> Self {
        Self::bytes(status, "text/plain; charset=utf-8", text.into())
    }

    /// An `application/json` response whose body is `json`, sent as given:
    /// the caller vouches that it is a JSON document (see [`crate::json`]).
    pub fn json_raw(status: u16, json: impl Into<String>) -> Self {
        Self::bytes(status, "application/json", json.into())
    }

    /// A response with `body` and the given `content-type`.
    pub fn bytes(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            headers: vec![("content-type".to_owned(), content_type.to_owned())],
            body: body.into(),
        }
    }

    /// An `application/json` response that passes `error` on to the user:
    /// `{"error":<kind>,"detail":<detail>}`, the kind as [`Error::kind`]
    /// spells it. Pick the status yourself, or take the case's default with
    /// [`Error::status`].
    ///
    /// ```
    /// use miniapp_sdk::{Error, Response};
    ///
    /// let error = Error::Denied("no signed-in user".into());
    /// // The default for `denied` is 403; this program means "sign in first".
    /// let response = Response::error(401, &error);
    /// assert_eq!(response.status, 401);
    /// assert_eq!(response.body_text(), Ok(r#"{"error":"denied","detail":"no signed-in user"}"#));
    /// assert_eq!(Response::error(error.status(), &error).status, 403);
    /// ```
    pub fn error(status: u16, error: &Error) -> Self {
        let body = json::Object::new()
            .string("error", error.kind())
            .string("detail", error.detail())
            .finish();
        Self::json_raw(status, body)
    }

    /// `404 Not Found`, with a short text body.
    pub fn not_found() -> Self {
        Self::text(404, "not found")
    }

    /// `405 Method Not Allowed`, with an `allow` header listing `allowed`.
    pub fn method_not_allowed(allowed: &[&str]) -> Self {
        Self::text(405, "method not allowed").with_header("allow", &allowed.join(", "))
    }

    /// This response with one more header; the name is stored in lower case.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .push((name.to_ascii_lowercase(), value.to_owned()));
        self
    }

    /// The value of the first header called `name`, compared without regard
    /// to case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(candidate, _)| candidate.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The body as UTF-8 text.
    pub fn body_text(&self) -> Result<&str, std::str::Utf8Error> {
        std::str::from_utf8(&self.body)
    }
}

impl From<Response> for wit::Response {
    fn from(response: Response) -> Self {
        Self {
            status: response.status,
            headers: response.headers,
            body: response.body,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_sets_the_content_type() {
        let response = Response::text(201, "made");
        assert_eq!(response.status, 201);
        assert_eq!(
            response.header("Content-Type"),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(response.body_text(), Ok("made"));
    }

    #[test]
    fn json_raw_sends_the_document_as_given() {
        let response = Response::json_raw(200, r#"{"ok":true}"#);
        assert_eq!(response.header("content-type"), Some("application/json"));
        assert_eq!(response.body, br#"{"ok":true}"#);
    }

    #[test]
    fn error_answers_kind_and_detail_in_json_with_the_status_given() {
        let response = Response::error(409, &Error::Conflict("say \"stale\"".into()));
        assert_eq!(response.status, 409);
        assert_eq!(response.header("content-type"), Some("application/json"));
        assert_eq!(
            response.body_text(),
            Ok(r#"{"error":"conflict","detail":"say \"stale\""}"#)
        );
        let response = Response::error(500, &Error::QuotaExceeded(String::new()));
        assert_eq!(
            (response.status, response.body_text()),
            (500, Ok(r#"{"error":"quota-exceeded","detail":""}"#))
        );
    }

    #[test]
    fn with_header_lowercases_the_name() {
        let response = Response::new(204).with_header("X-Trace", "abc");
        assert_eq!(response.headers, vec![("x-trace".into(), "abc".into())]);
    }
}
