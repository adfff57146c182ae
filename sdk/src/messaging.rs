//! Messages to users: the `messaging` import, after WeChat's subscribe
//! messages and customer-service messages, and the event that tells a
//! program a user wrote to it.
//!
//! Messages land in the user's platform inbox, delivered live to their open
//! sessions. A program never learns a user's platform address, only the
//! openid it was given, and it messages nobody who did not ask for it:
//! each kind of message is gated by the user, never by the program.
//!
//! # Two kinds of message
//!
//! - **Notifications** ([`send_notification`]): a template the manifest
//!   declares, filled in with a value for each of its fields, sent to a
//!   user who subscribed to that template on the platform. A one-time
//!   subscription is used up by the send it allows; a long-term one holds
//!   until the user revokes it. On top of that the platform caps the
//!   notifications one app sends one user in a day; past the cap a send
//!   answers [`Error::QuotaExceeded`].
//! - **Customer-service replies** ([`reply`]): free text, in the user's
//!   conversation with the app, within 48 hours ([`REPLY_WINDOW_HOURS`]) of
//!   the user's last message to the app and at most 5
//!   ([`MAX_REPLIES`]) since it; then [`Error::Denied`] until the user
//!   writes again. A user's message reaches the program as an event, topic
//!   [`MESSAGE_RECEIVED`], read by [`MessageReceived::from_event`].
//!
//! A version uses this module only if its manifest declares the
//! `messaging` capability.
//!
//! # Declaring templates
//!
//! A program sends only the notification templates its manifest declares,
//! under `messaging.templates`:
//!
//! ```json
//! {
//!   "capabilities": ["identity", "storage", "messaging"],
//!   "messaging": {"templates": [
//!     {"id": "order_shipped", "title": "Your order has shipped", "fields": [
//!       {"key": "thing1", "type": "thing", "label": "Item"},
//!       {"key": "character_string2", "type": "character_string", "label": "Order number"},
//!       {"key": "amount3", "type": "amount", "label": "Paid"}
//!     ]}
//!   ]}
//! }
//! ```
//!
//! A template's `id` is 1 to 32 characters of `A-Z a-z 0-9 _ -`, its
//! `title` 1 to 64 characters, and it has at most 10 fields
//! ([`MAX_TEMPLATE_FIELDS`]). A field's `key` is 1 to 32 characters of
//! `a-z 0-9 _`, its `label` (what the user sees beside the value) 1 to 20
//! characters, and its `type` one of those below, which decides what a
//! value may be. The platform checks the manifest at upload and every
//! value at each send.
//!
//! | type | a value is |
//! |---|---|
//! | `thing` | any text of at most 20 characters, no control characters |
//! | `number` | at most 32 characters: an optional `-`, then digits with at most one `.` (`-12.5`) |
//! | `letter` | at most 32 ASCII letters |
//! | `symbol` | at most 5 ASCII punctuation characters |
//! | `character_string` | at most 32 ASCII letters, digits and punctuation (an order number) |
//! | `amount` | a decimal number with at most 2 decimals and at most 12 digits in all, optionally followed by `元` or preceded by `¥` (`24.00`, `¥24.00`, `24元`) |
//! | `date` | `YYYY-MM-DD` |
//! | `time` | `YYYY-MM-DD HH:MM` |
//! | `phone_number` | at most 17 digits, `+`, `-` and spaces |
//! | `name` | at most 10 characters |
//! | `phrase` | at most 5 characters |
//!
//! "Characters" are Unicode scalar values (`char`s), not bytes: a `thing`
//! may hold 20 Chinese characters. Truncate free text with
//! `text.chars().take(20).collect::<String>()`, never by bytes.
//!
//! # Errors
//!
//! Both functions may answer [`Error::Denied`] when the version's manifest
//! does not declare the `messaging` capability, and
//! [`Error::Unavailable`] when the platform could not serve the call;
//! trying again later may work. Each function's own errors are listed with
//! it. Off WebAssembly (in a program's unit tests, say) there is no host,
//! and both answer [`Error::Unavailable`].
//!
//! # Events
//!
//! | topic | payload members |
//! |---|---|
//! | `message.received` | `message_id` (unique per message), `from` (the writer's openid in this app), `text`, `sent_at` (unix milliseconds) |
//!
//! Events are delivered at least once: the same message may arrive again
//! (with the same [`Event::id`] and `message_id`), so remember what was
//! answered, by `message_id`, before answering again.
//!
//! # Example
//!
//! ```
//! use miniapp_sdk::messaging::{self, MessageReceived};
//! use miniapp_sdk::{Error, Event, warn};
//!
//! /// Answers every message once, if the user's window is open.
//! fn on_event(event: Event) -> Result<(), String> {
//!     let message = match MessageReceived::from_event(&event) {
//!         Ok(Some(message)) => message,
//!         Ok(None) => return Ok(()), // Another topic: acknowledge it.
//!         Err(error) => return Err(error.to_string()),
//!     };
//!     match messaging::reply(&message.from, "Thanks, we read every message!") {
//!         Ok(()) => Ok(()),
//!         // The user's 48 hours are over or their 5 replies used:
//!         // redelivering would not help.
//!         Err(Error::Denied(detail)) => {
//!             warn!("no reply to {}: {detail}", message.message_id);
//!             Ok(())
//!         }
//!         Err(error) => Err(error.to_string()),
//!     }
//! }
//!
//! /// Tells a buyer their order is on its way, if they subscribed.
//! fn order_shipped(buyer: &str, no: &str) -> Result<(), Error> {
//!     messaging::send_notification(
//!         buyer,
//!         "order_shipped",
//!         &[("thing1", "Jasmine tea"), ("character_string2", no), ("amount3", "24.00")],
//!         Some(&format!("/orders/{no}")),
//!     )
//! }
//!
//! // Off WebAssembly there is no host to ask.
//! let written = Event {
//!     id: "evt-1".into(),
//!     topic: messaging::MESSAGE_RECEIVED.into(),
//!     payload: r#"{"message_id":"msg-1","from":"o-1","text":"Hi!","sent_at":1700000000000}"#.into(),
//! };
//! assert!(on_event(written).unwrap_err().starts_with("unavailable"));
//! assert!(matches!(order_shipped("o-1", "shop-00000001"), Err(Error::Unavailable(_))));
//! ```
//!
//! [`Event::id`]: crate::Event::id

use crate::program::Payload;
use crate::{Error, Event};

/// The topic of the event that says a user wrote to the app.
pub const MESSAGE_RECEIVED: &str = "message.received";

/// How long after a user's last message the app may reply: 48 hours.
pub const REPLY_WINDOW_HOURS: u64 = 48;

/// How many replies the app may send since a user's last message: 5.
pub const MAX_REPLIES: u32 = 5;

/// The longest reply, in characters: 1000.
pub const MAX_REPLY_CHARS: usize = 1000;

/// The most fields a notification template may have: 10.
pub const MAX_TEMPLATE_FIELDS: usize = 10;

/// Sends the notification `template_id` to the user `openid`, with a value
/// for every field of the template, as `(key, value)` pairs; `page` is a
/// path of this app the message opens, such as `/orders/shop-00000001`.
///
/// The user must hold a subscription to the template, which they make on
/// the platform; a one-time subscription is used up by this send. See the
/// [module docs](self) for declaring templates and for what each field
/// type accepts.
///
/// # Errors
///
/// - [`Error::Denied`] when the user holds no subscription to the template
///   (never made, used up, or revoked), or the manifest does not declare
///   the `messaging` capability;
/// - [`Error::Invalid`] for a template the manifest does not declare, a
///   field missing or unknown, or a value its field's type refuses (a
///   `thing` over 20 characters, say);
/// - [`Error::QuotaExceeded`] past the platform's daily cap of
///   notifications from this app to this user;
/// - [`Error::Unavailable`] when the platform could not serve the call.
///
/// ```
/// use miniapp_sdk::messaging;
///
/// let sent = messaging::send_notification(
///     "o-1",
///     "order_shipped",
///     &[("thing1", "Moon cake"), ("character_string2", "shop-00000042"), ("amount3", "25.00")],
///     Some("/orders/shop-00000042"),
/// );
/// # assert!(sent.is_err());
/// ```
pub fn send_notification(
    openid: &str,
    template_id: &str,
    fields: &[(&str, &str)],
    page: Option<&str>,
) -> Result<(), Error> {
    let fields: Vec<(String, String)> = fields
        .iter()
        .map(|&(key, value)| (key.to_owned(), value.to_owned()))
        .collect();
    host::send_notification(openid, template_id, &fields, page).map_err(Error::from)
}

/// Replies to the user `openid` in their customer-service conversation
/// with this app: 1 to 1000 characters ([`MAX_REPLY_CHARS`]) of text.
///
/// # Errors
///
/// - [`Error::Denied`] when the user never wrote to the app, their last
///   message is more than 48 hours old, or the app already sent 5 replies
///   since it (it may reply again once the user writes again); also when
///   the manifest does not declare the `messaging` capability;
/// - [`Error::Invalid`] when `text` is empty or over 1000 characters;
/// - [`Error::Unavailable`] when the platform could not serve the call.
///
/// ```
/// use miniapp_sdk::messaging;
///
/// let replied = messaging::reply("o-1", "We are open every day from 9:00 to 18:00.");
/// # assert!(replied.is_err());
/// ```
pub fn reply(openid: &str, text: &str) -> Result<(), Error> {
    host::reply(openid, text).map_err(Error::from)
}

/// The payload of a [`MESSAGE_RECEIVED`] event: a user wrote to the app.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MessageReceived {
    /// The platform's id for the message, unique per message; the same on
    /// a redelivery of its event.
    pub message_id: String,
    /// The writer's openid in this app: whom to [`reply`] to.
    pub from: String,
    /// What they wrote.
    pub text: String,
    /// When they sent it, in unix milliseconds.
    pub sent_at: u64,
}

impl MessageReceived {
    /// Reads `event` if its topic is [`MESSAGE_RECEIVED`]: `Ok(None)` for
    /// any other topic, which a program should acknowledge (or read with
    /// another capability's reader).
    ///
    /// Members of the payload it does not know are ignored, so that the
    /// platform may add some.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] when the payload is not a flat JSON object or
    /// lacks a member (or has one of another type); the detail says which.
    ///
    /// ```
    /// use miniapp_sdk::Event;
    /// use miniapp_sdk::messaging::{MESSAGE_RECEIVED, MessageReceived};
    ///
    /// let event = Event {
    ///     id: "evt-7".into(),
    ///     topic: MESSAGE_RECEIVED.into(),
    ///     payload: r#"{"message_id":"msg-7","from":"o-1","text":"Opening \"hours\"?","sent_at":1700000000000}"#.into(),
    /// };
    /// let message = MessageReceived::from_event(&event).unwrap().expect("a message");
    /// assert_eq!((message.from.as_str(), message.text.as_str()), ("o-1", "Opening \"hours\"?"));
    /// ```
    pub fn from_event(event: &Event) -> Result<Option<Self>, Error> {
        if event.topic != MESSAGE_RECEIVED {
            return Ok(None);
        }
        let payload = Payload::read(event)?;
        Ok(Some(Self {
            message_id: payload.string("message_id")?,
            from: payload.string("from")?,
            text: payload.string("text")?,
            sent_at: payload.number("sent_at")?,
        }))
    }
}

/// The host's functions: the imports on WebAssembly, stand-ins that answer
/// `unavailable` elsewhere.
#[cfg(target_arch = "wasm32")]
mod host {
    pub(super) use crate::bindings::miniapp::host::messaging::{reply, send_notification};
}

#[cfg(not(target_arch = "wasm32"))]
mod host {
    use crate::bindings::miniapp::host::types::Error;
    use crate::error::no_host;

    pub(super) fn send_notification(
        _: &str,
        _: &str,
        _: &[(String, String)],
        _: Option<&str>,
    ) -> Result<(), Error> {
        Err(no_host("messaging.send-notification"))
    }

    pub(super) fn reply(_: &str, _: &str) -> Result<(), Error> {
        Err(no_host("messaging.reply"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_wasm_every_function_is_unavailable_and_names_itself() {
        let errors = [
            send_notification("o-1", "order_shipped", &[("thing1", "tea")], None).unwrap_err(),
            reply("o-1", "hello").unwrap_err(),
        ];
        let functions = ["messaging.send-notification", "messaging.reply"];
        for (error, function) in errors.iter().zip(functions) {
            assert!(matches!(error, Error::Unavailable(_)), "{error:?}");
            assert!(error.detail().starts_with(function), "{error}");
        }
    }

    fn event(topic: &str, payload: &str) -> Event {
        Event {
            id: "evt-1".into(),
            topic: topic.into(),
            payload: payload.into(),
        }
    }

    fn message(text: &str) -> MessageReceived {
        MessageReceived {
            message_id: "msg-1".into(),
            from: "o-1".into(),
            text: text.into(),
            sent_at: 1_700_000_000_123,
        }
    }

    #[test]
    fn a_message_event_reads_every_member() {
        let written = event(
            MESSAGE_RECEIVED,
            r#"{"message_id":"msg-1","from":"o-1","text":"What are your hours?","sent_at":1700000000123,"later":"ignored"}"#,
        );
        assert_eq!(
            MessageReceived::from_event(&written),
            Ok(Some(message("What are your hours?")))
        );
    }

    #[test]
    fn the_text_unescapes_quotes_backslashes_newlines_and_unicode() {
        let written = event(
            MESSAGE_RECEIVED,
            r#"{"message_id":"msg-1","from":"o-1","text":"say \"hi\"\\ C:\\tmp\nline 2\t\u00e9\u4e2d\ud83e\udde7 🧧","sent_at":1700000000123}"#,
        );
        assert_eq!(
            MessageReceived::from_event(&written),
            Ok(Some(message("say \"hi\"\\ C:\\tmp\nline 2\té中🧧 🧧")))
        );
    }

    #[test]
    fn other_topics_are_none_whatever_their_payload() {
        for topic in ["payment.succeeded", "message.received.v2", ""] {
            assert_eq!(
                MessageReceived::from_event(&event(topic, "not json")),
                Ok(None)
            );
        }
    }

    #[test]
    fn a_bad_payload_is_invalid_and_says_what_is_wrong() {
        let cases = [
            (r#"{"message_id":"msg-1""#, "not a flat JSON object"),
            (
                r#"{"message_id":"msg-1","from":"o-1","text":"a \ud83e alone","sent_at":1}"#,
                "not a flat JSON object",
            ),
            (
                r#"{"message_id":7,"from":"o-1","text":"hi","sent_at":1}"#,
                "lacks `message_id`, a string",
            ),
            (
                r#"{"message_id":"msg-1","text":"hi","sent_at":1}"#,
                "lacks `from`, a string",
            ),
            (
                r#"{"message_id":"msg-1","from":"o-1","text":null,"sent_at":1}"#,
                "lacks `text`, a string",
            ),
            (
                r#"{"message_id":"msg-1","from":"o-1","text":"hi","sent_at":-1}"#,
                "lacks `sent_at`, a whole number",
            ),
            (
                r#"{"message_id":"msg-1","from":"o-1","text":"hi","sent_at":"1700000000000"}"#,
                "lacks `sent_at`, a whole number",
            ),
        ];
        for (payload, says) in cases {
            let error = MessageReceived::from_event(&event(MESSAGE_RECEIVED, payload)).unwrap_err();
            assert!(matches!(error, Error::Invalid(_)), "{error:?}");
            assert!(error.detail().contains(says), "{payload}: {error}");
            assert!(error.detail().contains(MESSAGE_RECEIVED), "{error}");
        }
    }
}
