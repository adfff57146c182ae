//! [`Error`]: what a fallible host function tells a program, the `error`
//! variant of the contract.

use std::fmt;

use crate::bindings::miniapp::host::types as wit;

/// Why the host refused or failed a call, as every capability reports it.
///
/// Branch on the case; the string is a human-readable detail for the
/// developer's logs, and its wording may change between platform releases.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Error {
    /// The capability, scope or consent this call needs was not granted, or
    /// the call has no signed-in user to act for.
    Denied(String),
    /// The call would exceed a quota (size, count or rate).
    QuotaExceeded(String),
    /// The thing named does not exist, or is not visible to this program.
    NotFound(String),
    /// An argument is malformed or out of range.
    Invalid(String),
    /// The call conflicts with the current state (a stale version, a
    /// duplicate id with different content).
    Conflict(String),
    /// The platform could not serve the call right now; retrying later may
    /// work. Off WebAssembly, where there is no host, every host call fails
    /// with this case.
    Unavailable(String),
}

impl Error {
    /// The case's name as the contract spells it: `denied`,
    /// `quota-exceeded`, `not-found`, `invalid`, `conflict` or `unavailable`.
    /// Stable, so fit for a machine-readable error code.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Denied(_) => "denied",
            Error::QuotaExceeded(_) => "quota-exceeded",
            Error::NotFound(_) => "not-found",
            Error::Invalid(_) => "invalid",
            Error::Conflict(_) => "conflict",
            Error::Unavailable(_) => "unavailable",
        }
    }

    /// The HTTP status that fits the case, for a program that passes a host
    /// error on to its user (see [`Response::error`](crate::Response::error)):
    /// `denied` 403, `quota-exceeded` 413, `not-found` 404, `invalid` 400,
    /// `conflict` 409 and `unavailable` 503.
    ///
    /// A default, not a rule: a program whose `denied` means "sign in first"
    /// answers 401 instead, say.
    ///
    /// ```
    /// use miniapp_sdk::Error;
    ///
    /// assert_eq!(Error::NotFound("no order shop-7".into()).status(), 404);
    /// assert_eq!(Error::Unavailable("database".into()).status(), 503);
    /// ```
    pub fn status(&self) -> u16 {
        match self {
            Error::Denied(_) => 403,
            Error::QuotaExceeded(_) => 413,
            Error::NotFound(_) => 404,
            Error::Invalid(_) => 400,
            Error::Conflict(_) => 409,
            Error::Unavailable(_) => 503,
        }
    }

    /// The human-readable detail the host gave.
    pub fn detail(&self) -> &str {
        match self {
            Error::Denied(detail)
            | Error::QuotaExceeded(detail)
            | Error::NotFound(detail)
            | Error::Invalid(detail)
            | Error::Conflict(detail)
            | Error::Unavailable(detail) => detail,
        }
    }
}

impl fmt::Display for Error {
    /// `kind: detail`, or the kind alone when the detail is empty.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.detail() {
            "" => f.write_str(self.kind()),
            detail => write!(f, "{}: {detail}", self.kind()),
        }
    }
}

impl std::error::Error for Error {}

impl From<wit::Error> for Error {
    fn from(error: wit::Error) -> Self {
        match error {
            wit::Error::Denied(detail) => Error::Denied(detail),
            wit::Error::QuotaExceeded(detail) => Error::QuotaExceeded(detail),
            wit::Error::NotFound(detail) => Error::NotFound(detail),
            wit::Error::Invalid(detail) => Error::Invalid(detail),
            wit::Error::Conflict(detail) => Error::Conflict(detail),
            wit::Error::Unavailable(detail) => Error::Unavailable(detail),
        }
    }
}

/// What a host function answers off WebAssembly, where there is no host: the
/// `unavailable` case, naming the function (`identity.caller`, say), so that
/// a program using a capability still builds and runs its unit tests there.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn no_host(function: &str) -> wit::Error {
    wit::Error::Unavailable(format!(
        "{function}: there is no host off WebAssembly; the program runs on the platform only as a component"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_case_of_the_contract_maps_to_its_own_kind() {
        let cases = [
            (wit::Error::Denied("d".into()), "denied"),
            (wit::Error::QuotaExceeded("q".into()), "quota-exceeded"),
            (wit::Error::NotFound("n".into()), "not-found"),
            (wit::Error::Invalid("i".into()), "invalid"),
            (wit::Error::Conflict("c".into()), "conflict"),
            (wit::Error::Unavailable("u".into()), "unavailable"),
        ];
        for (from_host, kind) in cases {
            let error = Error::from(from_host);
            assert_eq!(error.kind(), kind);
            assert_eq!(error.detail(), &kind[..1]);
        }
    }

    #[test]
    fn every_kind_has_its_own_default_status() {
        let cases = [
            (Error::Denied(String::new()), 403),
            (Error::QuotaExceeded(String::new()), 413),
            (Error::NotFound(String::new()), 404),
            (Error::Invalid(String::new()), 400),
            (Error::Conflict(String::new()), 409),
            (Error::Unavailable(String::new()), 503),
        ];
        for (error, status) in cases {
            assert_eq!(error.status(), status, "{error}");
        }
    }

    #[test]
    fn display_is_kind_then_detail() {
        let error = Error::QuotaExceeded("100 keys at most".into());
        assert_eq!(error.to_string(), "quota-exceeded: 100 keys at most");
        assert_eq!(Error::Denied(String::new()).to_string(), "denied");
    }

    #[test]
    fn it_is_a_std_error() {
        let boxed: Box<dyn std::error::Error> = Box::new(Error::Invalid("bad".into()));
        assert_eq!(boxed.to_string(), "invalid: bad");
    }

    #[test]
    #[cfg(not(target_arch = "wasm32"))]
    fn off_wasm_host_calls_are_unavailable() {
        let error = Error::from(no_host("identity.caller"));
        assert_eq!(error.kind(), "unavailable");
        assert!(error.detail().starts_with("identity.caller: "), "{error}");
    }
}
