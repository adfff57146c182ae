//! Messaging over HTTP: a user's subscriptions, their messages to apps,
//! their inbox, and its live stream (Server-Sent Events, resumable with
//! `Last-Event-ID`).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use super::auth::SignedIn;
use super::{ApiError, AppState, Shared, json_body, page_limit, parse_appid};
use crate::messaging::{CLOSING, InboxMessage, SubscriptionKind};

/// Messages a stream reads from the database at once.
const STREAM_BATCH: i64 = 100;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subscribe {
    kind: SubscriptionKind,
}

pub async fn subscribe(
    state: Shared,
    signed_in: SignedIn,
    Path((appid, template_id)): Path<(String, String)>,
    body: Body,
) -> Result<Response, ApiError> {
    let appid = parse_appid(&appid)?;
    let request: Subscribe = json_body(body).await?;
    let subscription = state
        .platform
        .subscribe(&signed_in.account, &appid, &template_id, request.kind)
        .await?;
    Ok(Json(subscription).into_response())
}

pub async fn unsubscribe(
    state: Shared,
    signed_in: SignedIn,
    Path((appid, template_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let appid = parse_appid(&appid)?;
    state
        .platform
        .unsubscribe(&signed_in.account, &appid, &template_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn subscriptions(state: Shared, signed_in: SignedIn) -> Result<Response, ApiError> {
    let subscriptions = state.platform.subscriptions(&signed_in.account).await?;
    Ok(Json(serde_json::json!({ "subscriptions": subscriptions })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Write {
    text: String,
}

pub async fn write(
    state: Shared,
    signed_in: SignedIn,
    Path(appid): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let appid = parse_appid(&appid)?;
    let request: Write = json_body(body).await?;
    let id = state
        .platform
        .write_to_app(&signed_in.account, &appid, &request.text)
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "message_id": id })),
    )
        .into_response())
}

#[derive(Deserialize)]
pub struct InboxQuery {
    #[serde(default)]
    after: i64,
    limit: Option<i64>,
}

pub async fn inbox(
    state: Shared,
    signed_in: SignedIn,
    Query(query): Query<InboxQuery>,
) -> Result<Response, ApiError> {
    let limit = page_limit(query.limit)?;
    let (messages, unread) = state
        .platform
        .inbox(&signed_in.account, query.after, limit)
        .await?;
    Ok(Json(serde_json::json!({ "messages": messages, "unread": unread })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarkRead {
    up_to: i64,
}

pub async fn mark_read(
    state: Shared,
    signed_in: SignedIn,
    body: Body,
) -> Result<Response, ApiError> {
    let request: MarkRead = json_body(body).await?;
    let marked = state
        .platform
        .mark_read(&signed_in.account, request.up_to)
        .await?;
    Ok(Json(serde_json::json!({ "marked": marked })).into_response())
}

/// How long a quiet stream goes before it checks that its session still
/// holds; a stream with news checks before every batch.
const SESSION_RECHECK: Duration = Duration::from_secs(30);

#[derive(Deserialize)]
pub struct StreamQuery {
    after: Option<i64>,
}

/// The user's inbox as it grows: every message after the `Last-Event-ID`
/// header (or `?after=`), then each new one as it lands, on whichever
/// node it was sent. Without either, only messages from now on. The stream
/// ends when its session does (sign-out, revocation, expiry).
pub async fn stream(
    state: Shared,
    signed_in: SignedIn,
    headers: HeaderMap,
    Query(query): Query<StreamQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let account = signed_in.account.id;
    let resume = match headers.get("last-event-id") {
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|id| id.trim().parse::<i64>().ok())
                .ok_or_else(|| ApiError::bad_request("Last-Event-ID must be a message number"))?,
        ),
        None => query.after,
    };
    let messaging = state.platform.messaging_service();
    // Watch before reading, so nothing lands unseen in between.
    let watch = messaging.watch();
    let last = match resume {
        Some(last) => last,
        None => messaging
            .last_seq(account)
            .await
            .map_err(|err| ApiError::from(crate::platform::PlatformError::from(err)))?,
    };
    struct Streaming {
        state: Arc<AppState>,
        token: String,
        watch: tokio::sync::broadcast::Receiver<i64>,
        last: i64,
        pending: VecDeque<InboxMessage>,
    }
    let start = Streaming {
        state: state.0.clone(),
        token: signed_in.token,
        watch,
        last,
        pending: VecDeque::new(),
    };
    let events = futures_util::stream::unfold(start, move |mut s| async move {
        loop {
            if let Some(message) = s.pending.pop_front() {
                s.last = message.seq;
                let event = Event::default()
                    .id(message.seq.to_string())
                    .event("message")
                    .json_data(&message)
                    .unwrap_or_else(|_| Event::default().comment("unserializable message"));
                return Some((Ok(event), s));
            }
            let messaging = s.state.platform.messaging_service();
            let batch = messaging.inbox(account, s.last, STREAM_BATCH).await;
            // Ends with its session: signed out or revoked, no more
            // messages. Checked after the read, so a message sent after the
            // session ended is never delivered.
            if s.state.platform.authenticate(&s.token).await.is_err() {
                return None;
            }
            match batch {
                Ok(messages) if !messages.is_empty() => {
                    s.pending.extend(messages);
                    continue;
                }
                Ok(_) => {}
                Err(err) => {
                    // The client reconnects with its Last-Event-ID.
                    tracing::warn!(error = %err, "reading an inbox for its stream failed");
                    return None;
                }
            }
            loop {
                let Ok(signal) = tokio::time::timeout(SESSION_RECHECK, s.watch.recv()).await else {
                    break;
                };
                match signal {
                    Ok(CLOSING) | Err(RecvError::Closed) => return None,
                    Ok(id) if id == account || id == 0 => break,
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => break,
                }
            }
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
