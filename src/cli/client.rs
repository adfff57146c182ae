//! `Client`: the platform's HTTP API from the command line — a server URL,
//! perhaps a session token, JSON in and JSON out.

use reqwest::{Method, RequestBuilder};
use serde_json::Value;

/// Why a request to the server failed.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The server answered with an error: `{"error": {"code", "message"}}`.
    #[error("{message} ({code}, HTTP {status})")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    /// No answer at all: the server is down, or the URL is wrong.
    #[error("cannot reach the server at {server}: {cause}")]
    Unreachable { server: String, cause: String },
    /// An answer that is not the API's JSON.
    #[error("the server at {server} answered HTTP {status} with something other than JSON")]
    NotJson { server: String, status: u16 },
}

/// One server, and the session token sent to it (if any).
pub struct Client {
    server: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Client {
    /// A client of `server` (a base URL without a trailing `/`), sending
    /// `token` as `Authorization: Bearer` when there is one.
    pub fn new(server: &str, token: Option<&str>) -> Client {
        Client {
            server: server.to_string(),
            token: token.map(str::to_string),
            http: reqwest::Client::builder()
                .user_agent(concat!("miniapp-cli/", env!("CARGO_PKG_VERSION")))
                .build()
                .expect("a default reqwest client builds"),
        }
    }

    pub async fn get(&self, path: &str) -> Result<Value, RequestError> {
        self.send(self.request(Method::GET, path)).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, RequestError> {
        self.send(self.request(Method::POST, path).json(body)).await
    }

    pub async fn delete(&self, path: &str) -> Result<Value, RequestError> {
        self.send(self.request(Method::DELETE, path)).await
    }

    pub async fn post_multipart(
        &self,
        path: &str,
        form: reqwest::multipart::Form,
    ) -> Result<Value, RequestError> {
        self.send(self.request(Method::POST, path).multipart(form))
            .await
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.server));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Sends a request; a success is its JSON body (`Null` when empty), a
    /// failure the server's error or why there was no answer.
    async fn send(&self, request: RequestBuilder) -> Result<Value, RequestError> {
        let unreachable = |err: reqwest::Error| RequestError::Unreachable {
            server: self.server.clone(),
            cause: root_cause(&err),
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let body = response.bytes().await.map_err(unreachable)?;
        let not_json = || RequestError::NotJson {
            server: self.server.clone(),
            status: status.as_u16(),
        };
        if status.is_success() {
            if body.is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_slice(&body).map_err(|_| not_json());
        }
        let value: Value = serde_json::from_slice(&body).map_err(|_| not_json())?;
        match (
            value["error"]["code"].as_str(),
            value["error"]["message"].as_str(),
        ) {
            (Some(code), Some(message)) => Err(RequestError::Api {
                status: status.as_u16(),
                code: code.to_string(),
                message: message.to_string(),
            }),
            _ => Err(not_json()),
        }
    }
}

/// The innermost cause of an error: for a failed connection, the likes of
/// "Connection refused (os error 111)" rather than reqwest's outer layers.
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_errors_read_message_code_and_status() {
        let err = RequestError::Api {
            status: 409,
            code: "conflict".into(),
            message: "version 2 is released, not development".into(),
        };
        assert_eq!(
            err.to_string(),
            "version 2 is released, not development (conflict, HTTP 409)"
        );
    }

    #[tokio::test]
    async fn a_server_that_is_not_there_is_named() {
        // Bind then drop a listener: its port is (almost certainly) closed.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let server = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let err = Client::new(&server, None).get("/v1/me").await.unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with(&format!("cannot reach the server at {server}: ")),
            "{message}"
        );
    }
}
