//! The miniapp SDK: write a mini-program in Rust against the `miniapp:host` contract.
//!
//! A mini-program is a WebAssembly component targeting the `mini-program`
//! world of `host-api/wit/host.wit`. The host calls it once per user request
//! ([`MiniProgram::handle`]) and once per platform event
//! ([`MiniProgram::on_event`]), each time in a fresh instance: nothing kept in
//! memory survives from one call to the next.
//!
//! This crate hides the generated bindings behind a few plain types:
//!
//! - [`Request`] and [`Response`], with helpers for headers, query parameters
//!   and bodies;
//! - [`Router`], which dispatches on method and path, with `:param` segments,
//!   answering 404 (or the program's fallback) and 405 on its own;
//! - [`MiniProgram`] and [`export!`], which turn a type into the component's
//!   exports;
//! - [`trace!`], [`debug!`], [`info!`], [`warn!`] and [`error!`], which write
//!   to the call's log that the developer reads back through the platform;
//! - [`identity`], who the caller is: their app-scoped ids, their profile
//!   (with their consent) and login codes for the app's own server;
//! - [`storage`], what outlives a call: a key-value store per app, with a
//!   part private to each user, versioned keys, compare-and-swap, counters
//!   and batches;
//! - [`payment`], money after WeChat Pay's flow: orders the user confirms
//!   on the platform, refunds, payouts from the app's merchant account, and
//!   the `payment.succeeded` and `refund.succeeded` events;
//! - [`messaging`], messages to users after WeChat's: notifications from
//!   the manifest's templates to users who subscribed, customer-service
//!   replies within 48 hours of a user's message, and the
//!   `message.received` event;
//! - [`Error`], what every fallible host function answers, one case per
//!   case of the contract's `error`, with a default HTTP status for each
//!   and [`Response::error`] to pass one on to the user;
//! - [`json::Object`], a small writer for JSON objects, and
//!   [`json::parse_flat`], a reader for flat ones (a request body, an
//!   event's payload), so that a program needs no serializer for JSON.
//!
//! # Example
//!
//! ```
//! use miniapp_sdk::{MiniProgram, Params, Request, Response, Router, info, json};
//!
//! struct Greeter;
//!
//! impl MiniProgram for Greeter {
//!     fn handle(request: Request) -> Response {
//!         info!("{} {}", request.method, request.path);
//!         Router::new()
//!             .get("/", |_, _| Response::text(200, "Hello from a mini-program!"))
//!             .get("/hello/:name", hello)
//!             .handle(&request)
//!     }
//! }
//!
//! fn hello(request: &Request, params: &Params) -> Response {
//!     let name = params.get("name").unwrap_or("stranger");
//!     let greeting = request.query_param("greeting").unwrap_or_else(|| "Hello".into());
//!     let body = json::Object::new()
//!         .string("message", &format!("{greeting}, {name}!"))
//!         .finish();
//!     Response::json_raw(200, body)
//! }
//!
//! miniapp_sdk::export!(Greeter);
//!
//! // The same code runs on the host, which makes a program easy to unit test.
//! let response = Greeter::handle(Request::new("GET", "/hello/Ada?greeting=Hi"));
//! assert_eq!(response.status, 200);
//! assert_eq!(response.body_text(), Ok(r#"{"message":"Hi, Ada!"}"#));
//! ```
//!
//! # Building
//!
//! A mini-program is a `cdylib` crate built for `wasm32-unknown-unknown`; the
//! core module it yields carries the world's type information in a custom
//! section, and `wit-component` (or `wasm-tools component new`) turns it into
//! the component the platform accepts. See `scripts/build-samples.sh` in the
//! repository for the exact commands.
//!
//! Linking with `-C link-arg=--import-memory` makes a call cheaper for a
//! program whose imports only read its memory: the component then defines
//! the memory before the module is instantiated, so such imports (`log`)
//! are called directly rather than through a table of indirect calls that
//! two extra core instances fill in on every call (`hello`: 0.925 of the
//! time). Imports that return strings or lists (storage's, for one) still
//! go through that table, so a program that uses them gains nothing
//! measurable (`notes`: 1.005). And an imported memory has no copy-on-write
//! image: a program with large data segments (hundreds of KiB) pays to
//! copy them on every call, and is better off without the flag. The
//! platform runs either kind.
//!
//! Off WebAssembly (for example in unit tests), the log macros write to
//! standard error instead of the host's log, and every other host function
//! answers [`Error::Unavailable`]: a program still builds and runs its unit
//! tests there.

mod error;
mod program;
mod request;
mod response;
mod router;

pub mod identity;
pub mod json;
pub mod log;
pub mod messaging;
pub mod payment;
pub mod storage;

pub use crate::error::Error;
pub use crate::program::{Event, MiniProgram};
pub use crate::request::Request;
pub use crate::response::Response;
pub use crate::router::{Handler, Params, Router};

// Lets the generated bindings and the exported macros name this crate by the
// same path inside it and in the programs that use it.
extern crate self as miniapp_sdk;

/// Bindings generated by `wit-bindgen` from `host-api/wit`; not a stable API.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../host-api/wit",
        world: "mini-program",
        pub_export_macro: true,
        export_macro_name: "__export_mini_program",
        default_bindings_module: "miniapp_sdk::bindings",
        runtime_path: "miniapp_sdk::__private::wit_bindgen::rt",
    });
}

/// What the exported macros need from this crate; not a stable API.
#[doc(hidden)]
pub mod __private {
    pub use crate::program::Adapter;
    pub use std::format;
    pub use wit_bindgen;
}
