//! Who is calling: the `identity` import, for the caller's ids in this app,
//! their profile, and login codes for the app's own server.
//!
//! The host, never the program, decides who the caller is: a program sees
//! ids scoped to its app (or its developer), never the platform's own user
//! id. A version uses this module only if its manifest declares the
//! `identity` capability; otherwise every function answers
//! [`Error::Denied`]. So does every function when the call has no signed-in
//! user (an anonymous request, a platform event).
//!
//! Off WebAssembly (in a program's unit tests, say) there is no host, and
//! every function answers [`Error::Unavailable`].

use crate::Error;
use crate::bindings::miniapp::host::identity as wit;

/// The signed-in user who made a call, as this app knows them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Caller {
    /// The user's id in this app: the same on every call of the same user to
    /// this app, and unrelated to their openid in any other app. Key a user's
    /// data by it.
    pub openid: String,
    /// The user's id across this app's developer: the same in every app of
    /// that developer, so their apps can recognize one user.
    pub unionid: String,
}

/// The caller's profile: the data behind the `profile` scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Profile {
    /// The name the user chose to show.
    pub nickname: String,
    /// The address of the user's avatar image.
    pub avatar_url: String,
}

/// The signed-in user who made this call.
///
/// # Errors
///
/// [`Error::Denied`] when the call has no signed-in user (an anonymous
/// request, a platform event) or the version's manifest does not declare the
/// `identity` capability.
///
/// ```
/// use miniapp_sdk::{Error, Response, identity, json};
///
/// fn whoami() -> Response {
///     match identity::caller() {
///         Ok(caller) => {
///             let body = json::Object::new().string("openid", &caller.openid).finish();
///             Response::json_raw(200, body)
///         }
///         Err(Error::Denied(_)) => Response::text(401, "sign in first"),
///         Err(error) => Response::text(500, error.to_string()),
///     }
/// }
///
/// // Off WebAssembly there is no host to ask.
/// assert_eq!(whoami().status, 500);
/// ```
pub fn caller() -> Result<Caller, Error> {
    host::caller().map(Caller::from).map_err(Error::from)
}

/// The caller's profile.
///
/// # Errors
///
/// [`Error::Denied`] unless the version's manifest declares the `profile`
/// scope *and* the user granted that scope to this app. Users grant and
/// revoke scopes through the platform, never through the program, so a
/// program asks them to and tries again later. Denied as well when the call
/// has no signed-in user.
///
/// ```
/// use miniapp_sdk::{Error, identity};
///
/// let greeting = match identity::profile() {
///     Ok(profile) => format!("Hello, {}!", profile.nickname),
///     // Not granted (or not signed in): do without the name.
///     Err(Error::Denied(_)) => "Hello!".to_owned(),
///     Err(error) => format!("Hello! ({error})"),
/// };
/// assert!(greeting.starts_with("Hello"));
/// ```
pub fn profile() -> Result<Profile, Error> {
    host::profile().map(Profile::from).map_err(Error::from)
}

/// A one-time login code for the app's own server.
///
/// The program hands the code to its server (through the user's client);
/// the server exchanges it, with the appid and the app secret, at the
/// platform's code-to-session endpoint
/// (`GET /v1/sns/jscode2session?appid=&secret=&js_code=&grant_type=authorization_code`)
/// for the caller's openid and unionid. A code is valid for 5 minutes and
/// for one exchange only. The secret never reaches the program.
///
/// # Errors
///
/// [`Error::Denied`] when the call has no signed-in user or the version's
/// manifest does not declare the `identity` capability.
///
/// ```
/// use miniapp_sdk::{Response, identity, json};
///
/// fn login() -> Response {
///     match identity::login_code() {
///         Ok(code) => Response::json_raw(200, json::Object::new().string("code", &code).finish()),
///         Err(error) => Response::text(401, error.to_string()),
///     }
/// }
/// # let _ = login();
/// ```
pub fn login_code() -> Result<String, Error> {
    host::login_code().map_err(Error::from)
}

impl From<wit::AppUser> for Caller {
    fn from(caller: wit::AppUser) -> Self {
        Self {
            openid: caller.openid,
            unionid: caller.unionid,
        }
    }
}

impl From<wit::UserProfile> for Profile {
    fn from(profile: wit::UserProfile) -> Self {
        Self {
            nickname: profile.nickname,
            avatar_url: profile.avatar_url,
        }
    }
}

/// The host's functions: the imports on WebAssembly, stand-ins that answer
/// `unavailable` elsewhere.
#[cfg(target_arch = "wasm32")]
mod host {
    pub(super) use super::wit::{caller, login_code, profile};
}

#[cfg(not(target_arch = "wasm32"))]
mod host {
    use super::wit;
    use crate::error::no_host;

    pub(super) fn caller() -> Result<wit::AppUser, wit::Error> {
        Err(no_host("identity.caller"))
    }

    pub(super) fn profile() -> Result<wit::UserProfile, wit::Error> {
        Err(no_host("identity.profile"))
    }

    pub(super) fn login_code() -> Result<String, wit::Error> {
        Err(no_host("identity.login-code"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_wasm_every_function_is_unavailable_and_names_itself() {
        let errors = [
            caller().unwrap_err(),
            profile().unwrap_err(),
            login_code().unwrap_err(),
        ];
        let functions = ["identity.caller", "identity.profile", "identity.login-code"];
        for (error, function) in errors.iter().zip(functions) {
            assert!(matches!(error, Error::Unavailable(_)), "{error:?}");
            assert!(error.detail().starts_with(function), "{error}");
        }
    }

    #[test]
    fn the_host_records_convert_field_by_field() {
        let caller = Caller::from(wit::AppUser {
            openid: "o-1".into(),
            unionid: "u-1".into(),
        });
        assert_eq!(caller.openid, "o-1");
        assert_eq!(caller.unionid, "u-1");
        let profile = Profile::from(wit::UserProfile {
            nickname: "Ada".into(),
            avatar_url: "https://example.com/ada.png".into(),
        });
        assert_eq!(profile.nickname, "Ada");
        assert_eq!(profile.avatar_url, "https://example.com/ada.png");
    }
}
