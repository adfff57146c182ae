//! The identity sample: tells a signed-in user who they are to this app.
//!
//! | route | answer |
//! |---|---|
//! | `GET /` | `{"openid":"...","unionid":"..."}`; 401 when there is no signed-in caller |
//! | `GET /profile` | `{"nickname":"...","avatar_url":"..."}`; 403 when the user has not granted the `profile` scope (or is not signed in) |
//! | `POST /login` | `{"code":"..."}`, a one-time code for the app's own server; 401 when there is no signed-in caller |
//!
//! A refusal answers `{"error":"denied","detail":"..."}` with the status
//! above; any other host error answers 500 with the error's kind in place of
//! `denied`. It logs one `info` line per request and imports
//! `miniapp:host/identity` and `miniapp:host/log`; its manifest declares the
//! `identity` capability and the `profile` scope.

use miniapp_sdk::identity::{self, Caller, Profile};
use miniapp_sdk::{Error, MiniProgram, Request, Response, Router, info, json};

/// The program's type, exported below.
pub struct Whoami;

impl MiniProgram for Whoami {
    fn handle(request: Request) -> Response {
        info!("{} {}", request.method, request.path);
        Router::new()
            .get("/", |_, _| caller_response(identity::caller()))
            .get("/profile", |_, _| profile_response(identity::profile()))
            .post("/login", |_, _| login_response(identity::login_code()))
            .handle(&request)
    }
}

miniapp_sdk::export!(Whoami);

/// 401: the request has no signed-in caller, or the app may not know them.
const UNAUTHORIZED: u16 = 401;
/// 403: the caller is known but has not let the app see their profile.
const FORBIDDEN: u16 = 403;

fn caller_response(caller: Result<Caller, Error>) -> Response {
    match caller {
        Ok(caller) => {
            let body = json::Object::new()
                .string("openid", &caller.openid)
                .string("unionid", &caller.unionid)
                .finish();
            Response::json_raw(200, body)
        }
        Err(error) => error_response(&error, UNAUTHORIZED),
    }
}

fn profile_response(profile: Result<Profile, Error>) -> Response {
    match profile {
        Ok(profile) => {
            let body = json::Object::new()
                .string("nickname", &profile.nickname)
                .string("avatar_url", &profile.avatar_url)
                .finish();
            Response::json_raw(200, body)
        }
        Err(error) => error_response(&error, FORBIDDEN),
    }
}

fn login_response(code: Result<String, Error>) -> Response {
    match code {
        Ok(code) => Response::json_raw(200, json::Object::new().string("code", &code).finish()),
        Err(error) => error_response(&error, UNAUTHORIZED),
    }
}

/// `{"error":<kind>,"detail":<detail>}`, with `denied_status` for a refusal
/// and 500 for anything else.
fn error_response(error: &Error, denied_status: u16) -> Response {
    let status = match error {
        Error::Denied(_) => denied_status,
        _ => 500,
    };
    Response::error(status, error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(response: Response) -> (u16, String) {
        let body = response.body_text().unwrap().to_owned();
        (response.status, body)
    }

    #[test]
    fn the_caller_is_answered_with_both_ids() {
        let caller = Caller {
            openid: "o-1".into(),
            unionid: "u-\"1\"".into(),
        };
        assert_eq!(
            answer(caller_response(Ok(caller))),
            (200, r#"{"openid":"o-1","unionid":"u-\"1\""}"#.to_owned())
        );
    }

    #[test]
    fn no_caller_is_401() {
        let denied = Error::Denied("no signed-in user".into());
        assert_eq!(
            answer(caller_response(Err(denied.clone()))),
            (
                401,
                r#"{"error":"denied","detail":"no signed-in user"}"#.to_owned()
            )
        );
        assert_eq!(login_response(Err(denied)).status, 401);
    }

    #[test]
    fn the_profile_is_answered_with_snake_case_names() {
        let profile = Profile {
            nickname: "Ada".into(),
            avatar_url: "https://example.com/ada.png".into(),
        };
        assert_eq!(
            answer(profile_response(Ok(profile))),
            (
                200,
                r#"{"nickname":"Ada","avatar_url":"https://example.com/ada.png"}"#.to_owned()
            )
        );
    }

    #[test]
    fn a_profile_not_granted_is_403() {
        let denied = Error::Denied("scope profile not granted".into());
        assert_eq!(
            answer(profile_response(Err(denied))),
            (
                403,
                r#"{"error":"denied","detail":"scope profile not granted"}"#.to_owned()
            )
        );
    }

    #[test]
    fn a_login_code_is_answered_as_code() {
        assert_eq!(
            answer(login_response(Ok("c0de".into()))),
            (200, r#"{"code":"c0de"}"#.to_owned())
        );
    }

    #[test]
    fn other_errors_are_500_with_their_kind() {
        let error = Error::QuotaExceeded("too many codes".into());
        for response in [
            caller_response(Err(error.clone())),
            profile_response(Err(error.clone())),
            login_response(Err(error.clone())),
        ] {
            assert_eq!(
                answer(response),
                (
                    500,
                    r#"{"error":"quota-exceeded","detail":"too many codes"}"#.to_owned()
                )
            );
        }
    }

    #[test]
    fn off_wasm_the_routes_reach_no_host() {
        let response = Whoami::handle(Request::new("GET", "/"));
        assert_eq!(response.status, 500);
        assert!(
            response
                .body_text()
                .unwrap()
                .contains(r#""error":"unavailable""#)
        );
        assert_eq!(Whoami::handle(Request::new("GET", "/login")).status, 405);
        assert_eq!(Whoami::handle(Request::new("GET", "/nowhere")).status, 404);
    }
}
