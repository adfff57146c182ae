//! The [`MiniProgram`] trait and the [`export!`](crate::export!) macro that
//! makes a type the component's exports.

use std::marker::PhantomData;

use crate::bindings::exports::miniapp::host::{events, handler};
use crate::bindings::miniapp::host::types as wit;
use crate::{Error, Request, Response, json};

/// What a mini-program does: answer requests and receive platform events.
///
/// Implement it on a type of your own (usually a unit struct) and pass that
/// type to [`export!`](crate::export!). Each call runs in a fresh instance, so
/// the type has no `self`: state that must outlive a call goes through the
/// host's storage.
pub trait MiniProgram {
    /// Answers one request from a user.
    ///
    /// A program that runs out of fuel, time or memory, or panics, is stopped
    /// and the user gets an error response from the host.
    fn handle(request: Request) -> Response;

    /// Handles one platform event (a payment result, a message, ...).
    ///
    /// Return `Ok` once the event is processed, `Err` with a reason to have the
    /// platform deliver it again later with backoff. Events arrive at least
    /// once: use [`Event::id`] to deduplicate.
    ///
    /// Defaults to acknowledging every event, which is the right answer for
    /// topics the program does not know.
    fn on_event(event: Event) -> Result<(), String> {
        let _ = event;
        Ok(())
    }
}

/// A platform event, delivered at least once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Unique per event; the same on a redelivery.
    pub id: String,
    /// What happened, e.g. `payment.succeeded` or `message.received`.
    pub topic: String,
    /// The event's data as a JSON document.
    pub payload: String,
}

/// The payload of an event of a known topic, read as a flat JSON object:
/// what the capability modules' typed events (`payment::Notification`,
/// `messaging::MessageReceived`) are read from, so that every topic
/// reports a bad payload the same way.
pub(crate) struct Payload<'a> {
    topic: &'a str,
    members: json::FlatObject,
}

impl<'a> Payload<'a> {
    /// Reads `event`'s payload.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] when it is not a flat JSON object, naming the topic.
    pub(crate) fn read(event: &'a Event) -> Result<Self, Error> {
        let topic = event.topic.as_str();
        let members = json::parse_flat(&event.payload).map_err(|error| {
            Error::Invalid(format!(
                "the payload of {topic} is not a flat JSON object: {error}"
            ))
        })?;
        Ok(Self { topic, members })
    }

    /// The string member `name`.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] when it is absent or not a string.
    pub(crate) fn string(&self, name: &str) -> Result<String, Error> {
        self.members
            .str(name)
            .map(str::to_owned)
            .ok_or_else(|| self.missing(name, "a string"))
    }

    /// The member `name`, a whole number that fits in 64 bits.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] when it is absent or not such a number.
    pub(crate) fn number(&self, name: &str) -> Result<u64, Error> {
        self.members
            .u64(name)
            .ok_or_else(|| self.missing(name, "a whole number"))
    }

    fn missing(&self, name: &str, kind: &str) -> Error {
        Error::Invalid(format!(
            "the payload of {} lacks `{name}`, {kind}",
            self.topic
        ))
    }
}

impl From<events::Event> for Event {
    fn from(event: events::Event) -> Self {
        Self {
            id: event.id,
            topic: event.topic,
            payload: event.payload,
        }
    }
}

/// Implements the generated exports for a [`MiniProgram`]; used by
/// [`export!`](crate::export!), not a stable API.
pub struct Adapter<P>(PhantomData<P>);

impl<P: MiniProgram> handler::Guest for Adapter<P> {
    fn handle(request: wit::Request) -> wit::Response {
        P::handle(request.into()).into()
    }
}

impl<P: MiniProgram> events::Guest for Adapter<P> {
    fn on_event(event: events::Event) -> Result<(), String> {
        P::on_event(event.into())
    }
}

/// Makes a [`MiniProgram`] type the exports of the component being built.
///
/// Invoke it once, at the top level of the program's crate:
///
/// ```
/// use miniapp_sdk::{MiniProgram, Request, Response};
///
/// struct Hello;
///
/// impl MiniProgram for Hello {
///     fn handle(_: Request) -> Response {
///         Response::text(200, "hello")
///     }
/// }
///
/// miniapp_sdk::export!(Hello);
/// ```
#[macro_export]
macro_rules! export {
    ($program:ty) => {
        const _: () = {
            type MiniappSdkExports = $crate::__private::Adapter<$program>;
            $crate::bindings::__export_mini_program!(
                MiniappSdkExports with_types_in $crate::bindings
            );
        };
    };
}
