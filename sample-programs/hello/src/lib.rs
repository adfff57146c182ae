//! The sample mini-program: greets, and echoes back the request it got.
//!
//! - `GET /` answers `Hello from miniapp!` as text;
//! - `GET /hello/:name` answers `{"greeting":"Hello, <name>!"}`;
//! - any other path, under any method, answers a JSON echo of the request:
//!   `{"greeting":"Hello, world!","method":"GET","path":"/a/b","query":"x=1","body_bytes":0}`.
//!
//! It logs one `info` line per request and imports nothing but
//! `miniapp:host/log`.

use miniapp_sdk::{MiniProgram, Params, Request, Response, Router, info, json};

/// The program's type, exported below.
pub struct Hello;

impl MiniProgram for Hello {
    fn handle(request: Request) -> Response {
        info!("{} {}", request.method, request.path);
        Router::new()
            .get("/", |_, _| Response::text(200, "Hello from miniapp!"))
            .get("/hello/:name", greet)
            .fallback(echo)
            .handle(&request)
    }
}

fn greet(_: &Request, params: &Params) -> Response {
    let name = params.get("name").unwrap_or("world");
    let body = json::Object::new()
        .string("greeting", &format!("Hello, {name}!"))
        .finish();
    Response::json_raw(200, body)
}

fn echo(request: &Request, _: &Params) -> Response {
    let body = json::Object::new()
        .string("greeting", "Hello, world!")
        .string("method", &request.method)
        .string("path", &request.path)
        .string("query", &request.query)
        .number("body_bytes", request.body.len())
        .finish();
    Response::json_raw(200, body)
}

miniapp_sdk::export!(Hello);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_says_hello() {
        let response = Hello::handle(Request::new("GET", "/"));
        assert_eq!(response.body_text(), Ok("Hello from miniapp!"));
    }

    #[test]
    fn other_paths_are_echoed_with_escaping() {
        let response = Hello::handle(Request::new("POST", "/a/\"b\"?x=1").with_body("hi"));
        assert_eq!(
            response.body_text(),
            Ok(
                r#"{"greeting":"Hello, world!","method":"POST","path":"/a/\"b\"","query":"x=1","body_bytes":2}"#
            )
        );
    }

    #[test]
    fn names_are_greeted_decoded() {
        let response = Hello::handle(Request::new("GET", "/hello/J%C3%B6rg"));
        assert_eq!(response.body_text(), Ok(r#"{"greeting":"Hello, Jörg!"}"#));
    }
}
