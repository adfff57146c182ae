//! Signals between nodes on one PostgreSQL: the transaction that writes a
//! user's message or queues an event `NOTIFY`s, and every node `LISTEN`s.
//! A signal only says "look again"; the database says what to deliver, so
//! a lost signal costs a delay, never a message.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::db::{EVENTS_CHANNEL, INBOX_CHANNEL};
use crate::messaging::Messaging;

/// Listens until aborted: wakes this node's streams of a user's inbox, and
/// its dispatcher when an event is queued on any node. A lost connection
/// wakes every stream and the dispatcher, since what was sent meanwhile is
/// not repeated.
pub(super) fn listen(
    url: String,
    messaging: Arc<Messaging>,
    events: Arc<Notify>,
) -> JoinHandle<()> {
    let wake_all = move |messaging: &Messaging, events: &Notify| {
        messaging.wake(0);
        events.notify_one();
    };
    tokio::spawn(async move {
        loop {
            let mut listener = match PgListener::connect(&url).await {
                Ok(listener) => listener,
                Err(err) => {
                    tracing::warn!(error = %err, "connecting the signal listener failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if let Err(err) = listener.listen_all([INBOX_CHANNEL, EVENTS_CHANNEL]).await {
                tracing::warn!(error = %err, "listening for signals failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            // Anything signalled before this point is in the database.
            wake_all(&messaging, &events);
            loop {
                match listener.try_recv().await {
                    Ok(Some(signal)) if signal.channel() == EVENTS_CHANNEL => events.notify_one(),
                    Ok(Some(signal)) => match signal.payload().parse() {
                        Ok(account) => messaging.wake(account),
                        Err(_) => {
                            tracing::warn!(payload = signal.payload(), "unreadable inbox signal")
                        }
                    },
                    // Lost and reconnecting: what was signalled meanwhile is gone.
                    Ok(None) => wake_all(&messaging, &events),
                    Err(err) => {
                        tracing::warn!(error = %err, "the signal listener failed");
                        break;
                    }
                }
            }
        }
    })
}
