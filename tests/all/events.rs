//! The event entry point, through the runtime directly: acknowledged,
//! refused (to be redelivered), or stopped by the limits like any call.

use miniapp::domain::Sha256Digest;
use miniapp::runtime::{Event, Grants, Invocation, Limits, Outcome, Reply, Runtime, RuntimeConfig};

use crate::support::{HELLO, HOSTILE};

fn event(topic: &str) -> Invocation {
    Invocation::Event(Event {
        id: "event-1".into(),
        topic: topic.into(),
        payload: "{}".into(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_acknowledged_refused_or_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::new(RuntimeConfig::new(dir.path().join("artifacts"))).unwrap();
    let hello = runtime.prepare(&Sha256Digest::of(HELLO), HELLO).unwrap();
    let hostile = runtime
        .prepare(&Sha256Digest::of(HOSTILE), HOSTILE)
        .unwrap();
    let limits = Limits::platform_default();

    let acked = runtime
        .call(
            &hello,
            &limits,
            Grants::default(),
            event("payment.succeeded"),
        )
        .await;
    assert_eq!(acked.outcome, Outcome::Ok);
    assert!(
        matches!(acked.reply, Some(Reply::Event(Ok(())))),
        "{:?}",
        acked.reply
    );

    let refused = runtime
        .call(&hostile, &limits, Grants::default(), event("reject"))
        .await;
    assert_eq!(
        refused.outcome,
        Outcome::Ok,
        "refusing is an answer, not a fault"
    );
    match refused.reply {
        Some(Reply::Event(Err(reason))) => assert!(reason.contains("rejected"), "{reason}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(
        refused.log.contains("event event-1 reject"),
        "{}",
        refused.log
    );

    let short = Limits {
        fuel: 20_000_000_000,
        deadline_ms: 200,
        ..limits
    };
    let stuck = runtime
        .call(&hostile, &short, Grants::default(), event("spin"))
        .await;
    assert_eq!(stuck.outcome, Outcome::Deadline);
    assert!(stuck.reply.is_none());
    assert!(
        stuck.usage.wall_time.as_millis() >= 200,
        "{:?}",
        stuck.usage
    );
}
