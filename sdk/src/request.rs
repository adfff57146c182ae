//! The request a mini-program answers, and decoding of its query string.

use std::borrow::Cow;

use crate::bindings::miniapp::host::types as wit;

/// A request from a user, in the shape of HTTP.
///
/// The host strips credentials before the program sees a request: there is
/// no `authorization` or `cookie` header, and no hop-by-hop header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method in upper case: `GET`, `POST`, `PUT`, `PATCH`, `DELETE`, ...
    pub method: String,
    /// The path inside the mini-program, starting with `/`, still
    /// percent-encoded.
    pub path: String,
    /// The raw query string, without the leading `?`; empty when absent.
    pub query: String,
    /// The headers, names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    /// The body, bounded by the platform's request size limit.
    pub body: Vec<u8>,
}

impl Request {
    /// A request with no headers and no body, for tests and tools.
    ///
    /// `target` is a path with an optional query, as in an HTTP request line:
    /// `Request::new("GET", "/search?q=tea")` has path `/search` and query
    /// `q=tea`.
    pub fn new(method: &str, target: &str) -> Self {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        Self {
            method: method.to_ascii_uppercase(),
            path: path.to_owned(),
            query: query.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// This request with one more header; the name is stored in lower case.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .push((name.to_ascii_lowercase(), value.to_owned()));
        self
    }

    /// This request with `body` as its body.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
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

    /// The first value of the query parameter `name`, percent-decoded (and
    /// `+` read as a space, as browsers encode forms).
    ///
    /// A parameter given without `=` (`?verbose`) has the empty value.
    pub fn query_param(&self, name: &str) -> Option<String> {
        query_pairs(&self.query)
            .find(|(key, _)| key == name)
            .map(|(_, value)| value)
    }

    /// Every query parameter in order, names and values percent-decoded.
    pub fn query_params(&self) -> Vec<(String, String)> {
        query_pairs(&self.query).collect()
    }

    /// The body as UTF-8 text.
    pub fn body_text(&self) -> Result<&str, std::str::Utf8Error> {
        std::str::from_utf8(&self.body)
    }
}

impl From<wit::Request> for Request {
    fn from(request: wit::Request) -> Self {
        Self {
            method: request.method,
            path: request.path,
            query: request.query,
            headers: request.headers,
            body: request.body,
        }
    }
}

/// The decoded `(name, value)` pairs of a query string, skipping empty pieces
/// (`a=1&&b=2` has two pairs).
pub(crate) fn query_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query
        .split('&')
        .filter(|piece| !piece.is_empty())
        .map(|piece| {
            let (name, value) = piece.split_once('=').unwrap_or((piece, ""));
            (decode_query_component(name), decode_query_component(value))
        })
}

/// Decodes one name or value of a query string: `+` is a space, `%XX` a byte.
fn decode_query_component(encoded: &str) -> String {
    if encoded.contains('+') {
        percent_decode(&encoded.replace('+', " ")).into_owned()
    } else {
        percent_decode(encoded).into_owned()
    }
}

/// Decodes `%XX` escapes into bytes and reads the result as UTF-8.
///
/// A `%` not followed by two hex digits stays as it is, and bytes that do not
/// form UTF-8 become U+FFFD: a program gets a best-effort string, never an
/// error, for what a user typed into an address bar.
pub(crate) fn percent_decode(encoded: &str) -> Cow<'_, str> {
    if !encoded.contains('%') {
        return Cow::Borrowed(encoded);
    }
    let bytes = encoded.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escaped = match bytes.get(index..index + 3) {
            Some([b'%', high, low]) => hex_value(*high).zip(hex_value(*low)),
            _ => None,
        };
        match escaped {
            Some((high, low)) => {
                decoded.push(high << 4 | low);
                index += 3;
            }
            None => {
                decoded.push(bytes[index]);
                index += 1;
            }
        }
    }
    match String::from_utf8(decoded) {
        Ok(text) => Cow::Owned(text),
        Err(error) => Cow::Owned(String::from_utf8_lossy(error.as_bytes()).into_owned()),
    }
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_splits_the_target_into_path_and_query() {
        let request = Request::new("get", "/search?q=tea&page=2");
        assert_eq!(request.method, "GET");
        assert_eq!(request.path, "/search");
        assert_eq!(request.query, "q=tea&page=2");

        let request = Request::new("GET", "/plain");
        assert_eq!(request.query, "");
    }

    #[test]
    fn query_param_decodes_percent_escapes_and_plus() {
        let request = Request::new("GET", "/?name=J%C3%B6rg+Smith&city=S%C3%A3o%20Paulo");
        assert_eq!(request.query_param("name").as_deref(), Some("Jörg Smith"));
        assert_eq!(request.query_param("city").as_deref(), Some("São Paulo"));
    }

    #[test]
    fn query_param_keeps_an_encoded_plus_and_ampersand() {
        let request = Request::new("GET", "/?expr=1%2B1%3D2&q=a%26b");
        assert_eq!(request.query_param("expr").as_deref(), Some("1+1=2"));
        assert_eq!(request.query_param("q").as_deref(), Some("a&b"));
    }

    #[test]
    fn query_param_returns_the_first_of_repeated_names() {
        let request = Request::new("GET", "/?tag=a&tag=b");
        assert_eq!(request.query_param("tag").as_deref(), Some("a"));
        assert_eq!(
            request.query_params(),
            vec![("tag".into(), "a".into()), ("tag".into(), "b".into())]
        );
    }

    #[test]
    fn query_param_without_a_value_is_empty() {
        let request = Request::new("GET", "/?verbose&n=1");
        assert_eq!(request.query_param("verbose").as_deref(), Some(""));
        assert_eq!(request.query_param("missing"), None);
    }

    #[test]
    fn query_names_are_decoded_too() {
        let request = Request::new("GET", "/?first%20name=Ada");
        assert_eq!(request.query_param("first name").as_deref(), Some("Ada"));
    }

    #[test]
    fn empty_pieces_of_a_query_are_skipped() {
        let request = Request::new("GET", "/?&a=1&&b=2&");
        assert_eq!(
            request.query_params(),
            vec![("a".into(), "1".into()), ("b".into(), "2".into())]
        );
    }

    #[test]
    fn malformed_escapes_stay_as_written() {
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%41%4a%4A"), "AJJ");
    }

    #[test]
    fn invalid_utf8_becomes_the_replacement_character() {
        assert_eq!(percent_decode("a%FFb"), "a\u{FFFD}b");
    }

    #[test]
    fn header_lookup_ignores_case() {
        let request = Request::new("GET", "/").with_header("Content-Type", "text/plain");
        assert_eq!(request.header("content-type"), Some("text/plain"));
        assert_eq!(request.header("CONTENT-TYPE"), Some("text/plain"));
        assert_eq!(request.header("accept"), None);
    }

    #[test]
    fn body_text_rejects_invalid_utf8() {
        assert_eq!(
            Request::new("POST", "/").with_body("hi").body_text(),
            Ok("hi")
        );
        assert!(
            Request::new("POST", "/")
                .with_body(vec![0xff])
                .body_text()
                .is_err()
        );
    }
}
