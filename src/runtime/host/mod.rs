//! Host capabilities, one module each, implemented on a call's [`CallState`].
//!
//! Each capability follows the same life: its host functions are linked
//! once per engine (`Runtime::new`), what an app is granted is decided from
//! its manifest (`runtime::Grants`, built by the platform per call), and its
//! per-call state lives only in `CallState`. The grant check is the first
//! thing each host function does.
//! Host functions return `wasmtime::Result<Result<T, Error>>` where they can
//! fail: the outer error traps (a host fault), the inner one is what the
//! guest is told.
//!
//! [`CallState`]: crate::runtime::CallState

mod identity;
mod log;
mod messaging;
mod payment;
mod storage;
mod wasi;

pub use identity::IdentityGrant;
pub use messaging::MessagingGrant;
pub use payment::PaymentGrant;
pub use storage::StorageGrant;
