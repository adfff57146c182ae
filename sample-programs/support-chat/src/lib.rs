//! The messaging sample for customer service: answers what users write to
//! the app, once per message, and counts the messages and the answers.
//!
//! | route | answer |
//! |---|---|
//! | `GET /` | `{"name":"support-chat","hint":"write to this app at POST /v1/me/conversations/support-chat"}` |
//! | `GET /stats` | `{"received":n,"replied":n}`: the messages received and the replies sent, 0 before the first |
//!
//! A user writes to the app on the platform; the message reaches the
//! program as a `message.received` event, which it answers with
//! `messaging::reply`, picking the answer by keyword, case-insensitively:
//! a text that contains `hours` gets the opening hours, one that contains
//! `refund` (and not `hours`) how refunds work, any other a thank-you.
//!
//! Events arrive at least once, so each message is answered once, by its
//! `message_id`, through the app key `answered/<message_id>`:
//!
//! 1. `received`, created with compare-and-swap from nothing: the delivery
//!    that creates it counts the message (`received` counter);
//! 2. `replied` once the reply is sent (and the `replied` counter counted),
//!    or `refused` when the platform refused it for good.
//!
//! A redelivery that finds `replied` or `refused` does nothing more; one
//! that finds `received` (an earlier delivery failed before it finished)
//! replies now. So a message is never answered twice, except when storage
//! fails right after the reply went out: then the redelivery answers again,
//! which a user prefers to no answer. For the same reason the counters may
//! miss one message or reply when storage fails between two writes.
//!
//! A reply the platform answers `denied` (the user's 48 hours are over or
//! the app's 5 replies since their last message are used) is logged as a
//! `warn` line and the event acknowledged: no redelivery would change
//! that. So is any other refusal of the reply (logged as `error`). When
//! the platform is `unavailable`, or storage fails, the event is refused so
//! that the platform delivers it again; so is a payload the program cannot
//! read. Other topics are acknowledged.
//!
//! Errors of `GET /stats` answer `{"error":<kind>,"detail":"..."}` with the
//! status [`Error::status`] gives the host's error (503 `unavailable`, ...),
//! and 500 for a counter the program cannot read. It logs one `info` line
//! per request and per message, and imports `miniapp:host/storage`,
//! `miniapp:host/messaging` and `miniapp:host/log`; its manifest declares
//! the `identity`, `storage` and `messaging` capabilities and no
//! notification templates, as replies need none.

use miniapp_sdk::messaging::{self, MessageReceived};
use miniapp_sdk::storage::{self, Scope};
use miniapp_sdk::{Error, Event, MiniProgram, Request, Response, Router, error, info, json, warn};

/// The program's type, exported below.
pub struct SupportChat;

impl MiniProgram for SupportChat {
    fn handle(request: Request) -> Response {
        info!("{} {}", request.method, request.path);
        Router::new()
            .get("/", |_, _| about())
            .get("/stats", |_, _| stats())
            .handle(&request)
    }

    fn on_event(event: Event) -> Result<(), String> {
        let message = match MessageReceived::from_event(&event) {
            Ok(Some(message)) => message,
            Ok(None) => return Ok(()),
            Err(error) => return Err(format!("event {}: {error}", event.id)),
        };
        answer_once(&message).map_err(|error| {
            format!(
                "event {} (message {}): {error}",
                event.id, message.message_id
            )
        })
    }
}

miniapp_sdk::export!(SupportChat);

/// The app's name, as users reach it.
const NAME: &str = "support-chat";
/// Where a user writes to the app.
const HINT: &str = "write to this app at POST /v1/me/conversations/support-chat";
/// The counter of messages received.
const RECEIVED_KEY: &str = "received";
/// The counter of replies sent.
const REPLIED_KEY: &str = "replied";

const HOURS_ANSWER: &str = "We are open every day from 9:00 to 18:00.";
const REFUND_ANSWER: &str =
    "Refunds go back to your wallet at once; open your order in the shop to ask for one.";
const DEFAULT_ANSWER: &str = "Thanks for your message! We read every one and answer within a day.";

/// The answer to `text`, by keyword, case-insensitively: `hours` first,
/// then `refund`, else a thank-you.
fn answer_to(text: &str) -> &'static str {
    let text = text.to_lowercase();
    if text.contains("hours") {
        HOURS_ANSWER
    } else if text.contains("refund") {
        REFUND_ANSWER
    } else {
        DEFAULT_ANSWER
    }
}

/// How far the answer to one message got, stored at `answered/<id>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Progress {
    /// Counted, not answered yet.
    Received,
    /// Answered.
    Replied,
    /// The platform refused the reply; it will not be tried again.
    Refused,
}

impl Progress {
    fn as_str(self) -> &'static str {
        match self {
            Progress::Received => "received",
            Progress::Replied => "replied",
            Progress::Refused => "refused",
        }
    }

    fn parse(stored: &[u8]) -> Option<Self> {
        match stored {
            b"received" => Some(Progress::Received),
            b"replied" => Some(Progress::Replied),
            b"refused" => Some(Progress::Refused),
            _ => None,
        }
    }
}

fn answered_key(message_id: &str) -> String {
    format!("answered/{message_id}")
}

/// Answers `message` unless an earlier delivery of it did.
fn answer_once(message: &MessageReceived) -> Result<(), Error> {
    let id = &message.message_id;
    let key = answered_key(id);
    match storage::compare_and_swap(Scope::App, &key, 0, Progress::Received.as_str()) {
        Ok(_) => {
            storage::increment(Scope::App, RECEIVED_KEY, 1)?;
        }
        Err(Error::Conflict(_)) => {
            let progress = storage::get(Scope::App, &key)?
                .ok_or_else(|| Error::Conflict(format!("{key} vanished")))?;
            match Progress::parse(&progress.value) {
                Some(Progress::Received) => {
                    info!("message {id}: an earlier delivery did not reply")
                }
                Some(done) => {
                    info!("message {id} {} already", done.as_str());
                    return Ok(());
                }
                None => return Err(Error::Invalid(format!("{key} is unreadable"))),
            }
        }
        Err(error) => return Err(error),
    }
    let progress = match messaging::reply(&message.from, answer_to(&message.text)) {
        Ok(()) => Progress::Replied,
        Err(error @ Error::Unavailable(_)) => return Err(error),
        Err(Error::Denied(detail)) => {
            warn!("message {id}: no reply, the conversation is closed: {detail}");
            Progress::Refused
        }
        Err(other) => {
            error!("message {id}: the reply was refused: {other}");
            Progress::Refused
        }
    };
    storage::set(Scope::App, &key, progress.as_str())?;
    if progress == Progress::Replied {
        storage::increment(Scope::App, REPLIED_KEY, 1)?;
        info!("message {id} replied");
    }
    Ok(())
}

fn about() -> Response {
    let body = json::Object::new()
        .string("name", NAME)
        .string("hint", HINT)
        .finish();
    Response::json_raw(200, body)
}

fn stats() -> Response {
    match (counter(RECEIVED_KEY), counter(REPLIED_KEY)) {
        (Ok(received), Ok(replied)) => Response::json_raw(200, stats_json(received, replied)),
        (Err(error), _) | (_, Err(error)) => {
            let status = match error {
                Error::Invalid(_) => 500,
                ref other => other.status(),
            };
            Response::error(status, &error)
        }
    }
}

fn stats_json(received: u64, replied: u64) -> String {
    json::Object::new()
        .number("received", received)
        .number("replied", replied)
        .finish()
}

/// The counter at `key`, 0 before its first increment.
fn counter(key: &str) -> Result<u64, Error> {
    let Some(entry) = storage::get(Scope::App, key)? else {
        return Ok(0);
    };
    entry
        .text()
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| Error::Invalid(format!("the counter {key} is unreadable")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer_of(response: Response) -> (u16, String) {
        let body = response.body_text().unwrap().to_owned();
        (response.status, body)
    }

    #[test]
    fn hours_are_answered_whatever_the_case() {
        for text in [
            "What are your hours?",
            "OPENING HOURS",
            "hours",
            "Your Hours and refund policy?",
        ] {
            assert_eq!(answer_to(text), HOURS_ANSWER, "{text}");
        }
    }

    #[test]
    fn refunds_are_answered_whatever_the_case() {
        for text in [
            "I want a refund",
            "REFUND!",
            "Refunds?",
            "how do I get refunded",
        ] {
            assert_eq!(answer_to(text), REFUND_ANSWER, "{text}");
        }
    }

    #[test]
    fn anything_else_is_thanked() {
        for text in ["Hello", "", "hour", "re fund", "what time do you open?"] {
            assert_eq!(answer_to(text), DEFAULT_ANSWER, "{text}");
        }
    }

    #[test]
    fn the_answers_fit_a_reply() {
        for answer in [HOURS_ANSWER, REFUND_ANSWER, DEFAULT_ANSWER] {
            assert!((1..=messaging::MAX_REPLY_CHARS).contains(&answer.chars().count()));
        }
    }

    #[test]
    fn the_root_names_the_app_and_where_to_write() {
        assert_eq!(
            answer_of(SupportChat::handle(Request::new("GET", "/"))),
            (
                200,
                r#"{"name":"support-chat","hint":"write to this app at POST /v1/me/conversations/support-chat"}"#.to_owned()
            )
        );
    }

    #[test]
    fn stats_are_two_numbers() {
        assert_eq!(stats_json(3, 2), r#"{"received":3,"replied":2}"#);
    }

    #[test]
    fn progress_reads_back_what_it_stores() {
        for progress in [Progress::Received, Progress::Replied, Progress::Refused] {
            assert_eq!(
                Progress::parse(progress.as_str().as_bytes()),
                Some(progress)
            );
        }
        assert_eq!(Progress::parse(b"answered"), None);
        assert_eq!(answered_key("msg-1"), "answered/msg-1");
    }

    fn event(topic: &str, payload: &str) -> Event {
        Event {
            id: "evt-1".into(),
            topic: topic.into(),
            payload: payload.into(),
        }
    }

    #[test]
    fn other_topics_are_acknowledged() {
        assert_eq!(
            SupportChat::on_event(event("payment.succeeded", "{}")),
            Ok(())
        );
    }

    #[test]
    fn messages_that_cannot_be_answered_yet_are_refused() {
        let written = event(
            messaging::MESSAGE_RECEIVED,
            r#"{"message_id":"msg-1","from":"o-1","text":"hours?","sent_at":1}"#,
        );
        // Off WebAssembly, storage is unavailable: the platform must retry.
        let refused = SupportChat::on_event(written).unwrap_err();
        assert!(refused.contains("unavailable"), "{refused}");
        assert!(refused.contains("msg-1"), "{refused}");
        let unreadable =
            SupportChat::on_event(event(messaging::MESSAGE_RECEIVED, "{")).unwrap_err();
        assert!(unreadable.contains("invalid"), "{unreadable}");
    }

    #[test]
    fn off_wasm_stats_reach_no_host() {
        let (status, body) = answer_of(SupportChat::handle(Request::new("GET", "/stats")));
        assert_eq!(status, 503);
        assert!(body.contains(r#""error":"unavailable""#), "{body}");
        assert_eq!(
            SupportChat::handle(Request::new("POST", "/stats")).status,
            405
        );
        assert_eq!(
            SupportChat::handle(Request::new("GET", "/nowhere")).status,
            404
        );
    }
}
