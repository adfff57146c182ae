//! Host capabilities, one module each, implemented on a call's [`CallState`].
//!
//! Each capability follows the same life: its host functions are linked
//! once per engine (`Runtime::new`), what an app is granted is decided from
//! its manifest, and its per-call state lives only in `CallState`.
//! Host functions return `wasmtime::Result<Result<T, Error>>` where they can
//! fail: the outer error traps (a host fault), the inner one is what the
//! guest is told.

mod log;
mod wasi;
