//! The event dispatcher: delivers the outbox's events to programs' event
//! entry point, at least once. An event is claimed under a lease, delivered
//! in a fresh instance like any call, and marked delivered only when the
//! program acknowledges it; a refusal, trap or limit retries it later on
//! the retry schedule. Everything lives in the database, so a restarted
//! node (or another node) carries on where a dead one stopped.

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::future::join_all;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use super::{Channel, Platform, PlatformError};
use crate::db::{PendingEvent, event_id, now_ms};
use crate::domain::storable_text;
use crate::runtime::{Event, Invocation, Outcome, Reply};

/// WeChat Pay's notification schedule: the wait before each retry. After
/// the last, an event is given up (state `failed`).
pub const DEFAULT_RETRY_SCHEDULE: &[Duration] = &[
    Duration::from_secs(15),
    Duration::from_secs(15),
    Duration::from_secs(30),
    Duration::from_secs(3 * 60),
    Duration::from_secs(10 * 60),
    Duration::from_secs(20 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(60 * 60),
    Duration::from_secs(3 * 3600),
    Duration::from_secs(3 * 3600),
    Duration::from_secs(3 * 3600),
    Duration::from_secs(6 * 3600),
    Duration::from_secs(6 * 3600),
];

/// How long a node holds the events it claimed. Longer than any call may
/// run, so a live node always finishes first; a dead node's events fall
/// due again after it.
const LEASE: Duration = Duration::from_secs(120);

/// Events claimed at once.
const BATCH: i64 = 32;

/// The longest a dispatcher sleeps before looking again, for retries
/// falling due and for signals of other nodes that were lost.
const IDLE_POLL: Duration = Duration::from_secs(1);

/// How often unpaid orders past their expiry are closed, and old delivered
/// events and usage records forgotten.
const SWEEP: Duration = Duration::from_secs(60);

/// Rows of usage records (each up to 1 MiB of records) deleted per
/// statement by the sweep: few enough that the write lock is never held
/// long, on SQLite most of all.
const CALL_BATCHES_FORGOTTEN_PER_STATEMENT: i64 = 64;

/// How long a delivered event stays in the outbox, for its developer to
/// look at: 30 days. Events given up on stay until the app is deleted.
pub const DELIVERED_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

/// A running dispatcher.
pub(super) struct Dispatcher {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Dispatcher {
    /// Starts delivering events for `platform`, woken early by `wake`.
    pub(super) fn start(platform: Weak<Platform>, wake: Arc<Notify>) -> Dispatcher {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(platform, wake, stopped));
        Dispatcher { stop, task }
    }

    /// Stops after the deliveries in flight.
    pub(super) async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

async fn run(platform: Weak<Platform>, wake: Arc<Notify>, mut stopped: watch::Receiver<bool>) {
    // `None` until the first pass, which sweeps at once.
    let mut last_sweep: Option<tokio::time::Instant> = None;
    loop {
        if *stopped.borrow() {
            return;
        }
        let Some(live) = platform.upgrade() else {
            return;
        };
        if last_sweep.is_none_or(|at| at.elapsed() >= SWEEP) {
            last_sweep = Some(tokio::time::Instant::now());
            if let Err(err) = live.payments.close_expired().await {
                tracing::warn!(error = %err, "closing expired orders failed");
            }
            let cutoff = now_ms() - DELIVERED_RETENTION.as_millis() as i64;
            if let Err(err) = live.db.forget_delivered_events(cutoff).await {
                tracing::warn!(error = format!("{err:#}"), "forgetting old events failed");
            }
            let cutoff = now_ms() - live.settings.call_retention.as_millis() as i64;
            match live
                .db
                .forget_calls(cutoff, CALL_BATCHES_FORGOTTEN_PER_STATEMENT)
                .await
            {
                Ok(0) => {}
                Ok(forgotten) => tracing::info!(forgotten, "forgot old usage records"),
                Err(err) => {
                    tracing::warn!(
                        error = format!("{err:#}"),
                        "forgetting old usage records failed"
                    )
                }
            }
        }
        let now = now_ms();
        let claimed = live
            .db
            .claim_events(now, now + LEASE.as_millis() as i64, BATCH)
            .await;
        let wait = match claimed {
            Ok(events) => {
                let full = events.len() as i64 == BATCH;
                join_all(events.iter().map(|event| live.dispatch(event))).await;
                if full {
                    continue;
                }
                match live.db.next_event_due().await {
                    Ok(Some(due)) => Duration::from_millis(
                        (due - now_ms()).clamp(0, IDLE_POLL.as_millis() as i64) as u64,
                    ),
                    _ => IDLE_POLL,
                }
            }
            Err(err) => {
                tracing::warn!(error = format!("{err:#}"), "claiming events failed");
                IDLE_POLL
            }
        };
        drop(live);
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = stopped.changed() => {}
        }
    }
}

impl Platform {
    /// Delivers one claimed event and records how it went.
    async fn dispatch(&self, event: &PendingEvent) {
        let result = self.deliver(event).await;
        let now = now_ms();
        let recorded = match &result {
            Ok(()) => self.db.event_delivered(event, now).await,
            Err(reason) => {
                let retry_at = self
                    .settings
                    .event_retry_schedule
                    .get(event.attempts as usize)
                    .map(|wait| now + wait.as_millis() as i64);
                tracing::info!(
                    appid = %event.appid, event = event.id, topic = event.topic,
                    attempt = event.attempts + 1, reason, gave_up = retry_at.is_none(),
                    "event not delivered"
                );
                self.db
                    .event_failed(event, &stored_reason(reason), retry_at)
                    .await
            }
        };
        if let Err(err) = recorded {
            // The lease runs out and the event is delivered again.
            tracing::warn!(
                error = format!("{err:#}"),
                event = event.id,
                "recording a delivery failed"
            );
        }
    }

    /// Runs the event entry point of the newest version on the event's
    /// channel: `Ok` when the program acknowledged it.
    async fn deliver(&self, event: &PendingEvent) -> Result<(), String> {
        let channel = match event.channel.as_str() {
            "trial" => Channel::Trial,
            _ => Channel::Release,
        };
        let app = self.app_route(&event.appid).await.map_err(describe)?;
        let version = match channel {
            Channel::Release => app.route.released_version,
            Channel::Trial => app.route.trial_version,
        }
        .ok_or_else(|| format!("the app has no {} version to deliver to", channel.as_str()))?;
        let invocation = Invocation::Event(Event {
            id: event_id(event.id),
            topic: event.topic.clone(),
            payload: event.payload.clone(),
        });
        let invoked = self
            .run(&event.appid, &app, version, channel, None, invocation)
            .await
            .map_err(describe)?;
        match (invoked.report.outcome, invoked.report.reply) {
            (Outcome::Ok, Some(Reply::Event(Ok(())))) => Ok(()),
            (Outcome::Ok, Some(Reply::Event(Err(reason)))) => {
                Err(format!("the program refused it: {reason}"))
            }
            (outcome, _) => Err(match outcome.detail() {
                Some(detail) => format!("the call ended in {}: {detail}", outcome.kind()),
                None => format!("the call ended in {}", outcome.kind()),
            }),
        }
    }
}

/// The longest reason kept for a failed delivery, in bytes.
const MAX_REASON_BYTES: usize = 1024;

/// A failed delivery's reason as stored: a program's refusal is its own
/// text, so it is cut to [`MAX_REASON_BYTES`] (the cut marked) and its NUL
/// characters replaced, which PostgreSQL text cannot hold.
fn stored_reason(reason: &str) -> String {
    let end = reason.floor_char_boundary(MAX_REASON_BYTES);
    let mut stored = storable_text(reason[..end].to_string());
    if end < reason.len() {
        stored.push_str(&format!(" [{} more bytes cut]", reason.len() - end));
    }
    stored
}

fn describe(err: PlatformError) -> String {
    match err {
        PlatformError::Internal(err) => format!("the platform failed: {err:#}"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_stored_bounded_and_without_nul() {
        assert_eq!(stored_reason("out of stock"), "out of stock");
        assert_eq!(stored_reason("a\0b"), "a\u{FFFD}b");
        let long = "é".repeat(MAX_REASON_BYTES);
        let stored = stored_reason(&long);
        assert!(stored.starts_with(&"é".repeat(MAX_REASON_BYTES / 2)));
        assert!(
            stored.ends_with(&format!(" [{} more bytes cut]", MAX_REASON_BYTES)),
            "{stored}"
        );
        let odd = format!("x{long}");
        let stored = stored_reason(&odd);
        assert!(stored.starts_with('x'));
        // 1 + 1024 × 2 bytes, cut at the last char boundary before 1024: 1023.
        assert!(stored.ends_with(&format!(" [{} more bytes cut]", MAX_REASON_BYTES + 2)));
    }
}
