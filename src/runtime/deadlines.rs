//! Deadlines of calls waiting in the host, kept by the engine's epoch
//! ticker: one thread for every call, never a timer per call.
//!
//! The epoch stops a guest that runs wasm past its deadline; a guest
//! waiting on a host call (a database query, say) runs no wasm, so nothing
//! would stop it. Such a call registers its deadline and waker here when it
//! first waits, and the ticker wakes it at the first tick past its
//! deadline (within [`super::EPOCH_TICK`]), whereupon [`within`] ends it.
//!
//! A tokio timer per call did the same, but registering one wakes the
//! runtime's timer thread whenever it is the earliest (as it is for a lone
//! call), a wake-up of an idle CPU on every call that waits.

use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::Mutex;
use std::task::{Poll, Waker};
use std::time::Instant;

use slab::Slab;

/// The calls waiting in the host, with their deadlines.
#[derive(Default)]
pub struct Deadlines {
    waiting: Mutex<Slab<Waiting>>,
}

struct Waiting {
    deadline: Instant,
    waker: Waker,
}

impl Deadlines {
    fn waiting(&self) -> std::sync::MutexGuard<'_, Slab<Waiting>> {
        // Nothing panics while holding the lock; a poisoned one still holds
        // consistent entries.
        self.waiting
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Wakes every call whose deadline is at or before `now`. The ticker
    /// calls it each tick; a woken call that has not yet ended is woken
    /// again at the next.
    pub fn wake_expired(&self, now: Instant) {
        let expired: Vec<Waker> = self
            .waiting()
            .iter()
            .filter(|(_, waiting)| waiting.deadline <= now)
            .map(|(_, waiting)| waiting.waker.clone())
            .collect();
        for waker in expired {
            waker.wake();
        }
    }

    /// How many calls are waiting with a deadline.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.waiting().len()
    }
}

/// A call's place in [`Deadlines`], given up when the call ends.
struct Registration<'a> {
    deadlines: &'a Deadlines,
    key: usize,
}

impl<'a> Registration<'a> {
    fn new(deadlines: &'a Deadlines, deadline: Instant, waker: &Waker) -> Self {
        let key = deadlines.waiting().insert(Waiting {
            deadline,
            waker: waker.clone(),
        });
        Registration { deadlines, key }
    }

    /// Keeps the waker current: a task may be polled with another one.
    fn update(&self, waker: &Waker) {
        if let Some(waiting) = self.deadlines.waiting().get_mut(self.key)
            && !waiting.waker.will_wake(waker)
        {
            waiting.waker = waker.clone();
        }
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.deadlines.waiting().try_remove(self.key);
    }
}

/// Runs `call` to completion, or to `deadline`: `None` when the deadline
/// came first.
///
/// Host calls count against the deadline too: the epoch only stops a guest
/// that is running wasm, this also stops one waiting in the host. A call
/// registers with `deadlines` only once it first waits (on a host call, or
/// yielding at an epoch tick): a call that runs straight through is bounded
/// by the epoch alone.
pub async fn within<F: Future>(
    deadlines: &Deadlines,
    deadline: Instant,
    call: F,
) -> Option<F::Output> {
    let mut call = pin!(call);
    let mut registration: Option<Registration> = None;
    poll_fn(|cx| {
        if let Poll::Ready(output) = call.as_mut().poll(cx) {
            return Poll::Ready(Some(output));
        }
        if Instant::now() >= deadline {
            return Poll::Ready(None);
        }
        match &registration {
            Some(registration) => registration.update(cx.waker()),
            None => registration = Some(Registration::new(deadlines, deadline, cx.waker())),
        }
        Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_call_ends_at_its_deadline_only_once_woken_and_leaves_nothing_behind() {
        let deadlines = std::sync::Arc::new(Deadlines::default());
        let deadline = Instant::now() + Duration::from_millis(20);
        let waiting = tokio::spawn({
            let deadlines = deadlines.clone();
            async move { within(&deadlines, deadline, std::future::pending::<()>()).await }
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(deadlines.len(), 1, "a waiting call is registered");
        deadlines.wake_expired(Instant::now());
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(
            !waiting.is_finished(),
            "woken before its deadline, it waits on"
        );
        tokio::time::sleep_until((deadline + Duration::from_millis(1)).into()).await;
        deadlines.wake_expired(Instant::now());
        assert_eq!(waiting.await.unwrap(), None, "past its deadline, it ends");
        assert_eq!(deadlines.len(), 0, "an ended call is forgotten");
    }

    #[tokio::test]
    async fn a_call_that_finishes_first_gives_its_answer() {
        let deadlines = Deadlines::default();
        let far = Instant::now() + Duration::from_secs(60);
        let answer = within(&deadlines, far, async {
            tokio::task::yield_now().await;
            7
        })
        .await;
        assert_eq!(answer, Some(7));
        assert_eq!(deadlines.len(), 0);
    }
}
