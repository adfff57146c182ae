//! The messaging capability: consent gates every notification and a
//! one-time grant is used up; the 48-hour reply window, on a clock the test
//! moves; the inbox's live stream resumes with no loss and no duplicate
//! under a storm of reconnects; a message sent through one server process
//! reaches a user streaming from another (PostgreSQL).

use std::sync::Arc;
use std::time::Duration;

use miniapp::accounts::AccountId;
use miniapp::db::Db;
use miniapp::domain::AppId;
use miniapp::messaging::{
    Clock, FieldType, Messaging, MessagingError, Notification, SubscriptionKind, Template,
    TemplateField,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::support::{
    ProcessServer, SUPPORT_CHAT, TestServer, config, on_each_engine, register_apps,
};

fn appid(name: &str) -> AppId {
    name.parse().unwrap()
}

fn shipped() -> Template {
    Template {
        id: "order_shipped".into(),
        title: "Your order has shipped".into(),
        fields: vec![TemplateField {
            key: "thing1".into(),
            kind: FieldType::Thing,
            label: "Item".into(),
        }],
    }
}

async fn notify(
    messaging: &Messaging,
    app: &AppId,
    template: &Template,
    openid: &str,
    item: &str,
) -> Result<(), MessagingError> {
    let fields = template.fill(&[("thing1".to_string(), item.to_string())])?;
    messaging
        .notify(Notification {
            appid: app,
            template,
            openid,
            fields,
            page: Some("/orders/1".into()),
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_need_the_users_subscription() {
    on_each_engine(|_, test_db| async move {
        let db = Db::connect(&test_db.url).await.unwrap();
        register_apps(&db, &["shop"]).await;
        let clock = Clock::manual(1_800_000_000_000);
        let messaging = Messaging::new(db.clone(), clock.clone(), 4, Arc::new(Notify::new()));
        let (shop, template) = (appid("shop"), shipped());
        let (alice, openid): (AccountId, &str) = (7, "openid-of-alice");

        let denied = notify(&messaging, &shop, &template, openid, "tea").await;
        assert!(
            matches!(denied, Err(MessagingError::Denied(_))),
            "{denied:?}"
        );

        // Two one-time grants allow two messages, then nothing.
        for _ in 0..2 {
            messaging
                .subscribe(
                    alice,
                    &shop,
                    openid,
                    "order_shipped",
                    SubscriptionKind::OneTime,
                )
                .await
                .unwrap();
        }
        let listed = messaging.subscriptions(alice).await.unwrap();
        assert_eq!(
            (listed.len(), listed[0].one_time, listed[0].long_term),
            (1, 2, false)
        );
        notify(&messaging, &shop, &template, openid, "tea")
            .await
            .unwrap();
        notify(&messaging, &shop, &template, openid, "cake")
            .await
            .unwrap();
        assert!(matches!(
            notify(&messaging, &shop, &template, openid, "more").await,
            Err(MessagingError::Denied(_))
        ));
        assert!(messaging.subscriptions(alice).await.unwrap().is_empty());
        // Another app, or another user's openid, gets nothing from Alice's grant.
        messaging
            .subscribe(
                alice,
                &shop,
                openid,
                "order_shipped",
                SubscriptionKind::LongTerm,
            )
            .await
            .unwrap();
        assert!(matches!(
            notify(&messaging, &appid("other"), &template, openid, "x").await,
            Err(MessagingError::Denied(_))
        ));
        assert!(matches!(
            notify(&messaging, &shop, &template, "openid-of-bob", "x").await,
            Err(MessagingError::Denied(_))
        ));
        // Long-term: until the daily cap (4 a day, 2 sent), then the next day again.
        notify(&messaging, &shop, &template, openid, "lantern")
            .await
            .unwrap();
        notify(&messaging, &shop, &template, openid, "tea")
            .await
            .unwrap();
        assert!(matches!(
            notify(&messaging, &shop, &template, openid, "over").await,
            Err(MessagingError::QuotaExceeded(_))
        ));
        clock.advance(Duration::from_secs(24 * 3600));
        notify(&messaging, &shop, &template, openid, "next day")
            .await
            .unwrap();
        // Revoked: nothing more.
        messaging
            .unsubscribe(alice, &shop, "order_shipped")
            .await
            .unwrap();
        assert!(matches!(
            notify(&messaging, &shop, &template, openid, "after").await,
            Err(MessagingError::Denied(_))
        ));

        // Alice's inbox: five notifications, numbered 1 to 5, unread.
        let inbox = messaging.inbox(alice, 0, 100).await.unwrap();
        let seqs: Vec<i64> = inbox.iter().map(|message| message.seq).collect();
        assert_eq!(seqs, [1, 2, 3, 4, 5]);
        assert_eq!(inbox[0].title, "Your order has shipped");
        assert_eq!(inbox[0].content["fields"][0]["value"], "tea");
        assert_eq!(inbox[0].content["fields"][0]["label"], "Item");
        assert_eq!(inbox[0].page.as_deref(), Some("/orders/1"));
        assert_eq!(messaging.unread(alice).await.unwrap(), 5);
        assert_eq!(messaging.mark_read(alice, 3).await.unwrap(), 3);
        assert_eq!(messaging.unread(alice).await.unwrap(), 2);
        assert_eq!(messaging.inbox(alice, 3, 100).await.unwrap().len(), 2);
        db.close().await;
        test_db
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_only_within_48_hours_and_five_at_a_time() {
    on_each_engine(|_, test_db| async move {
        let db = Db::connect(&test_db.url).await.unwrap();
        register_apps(&db, &["support"]).await;
        let clock = Clock::manual(1_800_000_000_000);
        let messaging = Messaging::new(db.clone(), clock.clone(), 20, Arc::new(Notify::new()));
        let support = appid("support");
        let (bob, openid) = (9, "openid-of-bob");

        let never = messaging.reply(&support, openid, "hello?").await;
        assert!(
            matches!(&never, Err(MessagingError::Denied(d)) if d.contains("never wrote")),
            "{never:?}"
        );

        let id = messaging
            .user_writes(&support, bob, openid, "Where is my order?")
            .await
            .unwrap();
        let events = db.app_events(&support, 10).await.unwrap();
        assert_eq!(events[0].topic, "message.received");
        let payload: Value = serde_json::from_str(&events[0].payload).unwrap();
        assert_eq!(payload["message_id"], id);
        assert_eq!(
            (payload["from"].as_str(), payload["text"].as_str()),
            (Some(openid), Some("Where is my order?"))
        );

        for n in 1..=5 {
            messaging
                .reply(&support, openid, &format!("answer {n}"))
                .await
                .unwrap();
        }
        let sixth = messaging.reply(&support, openid, "one more").await;
        assert!(
            matches!(&sixth, Err(MessagingError::Denied(d)) if d.contains("5 replies")),
            "{sixth:?}"
        );

        // Writing again opens the window again, for 48 hours.
        clock.advance(Duration::from_secs(10 * 3600));
        messaging
            .user_writes(&support, bob, openid, "Thanks!")
            .await
            .unwrap();
        clock.advance(Duration::from_secs(48 * 3600) - Duration::from_millis(1));
        messaging
            .reply(&support, openid, "just in time")
            .await
            .unwrap();
        clock.advance(Duration::from_millis(1));
        let late = messaging.reply(&support, openid, "too late").await;
        assert!(
            matches!(&late, Err(MessagingError::Denied(d)) if d.contains("48 hours")),
            "{late:?}"
        );

        for bad in ["", &"x".repeat(1001), "bell\u{7}"] {
            assert!(matches!(
                messaging.user_writes(&support, bob, openid, bad).await,
                Err(MessagingError::Invalid(_))
            ));
        }
        let inbox = messaging.inbox(bob, 0, 100).await.unwrap();
        assert_eq!(inbox.len(), 6);
        assert_eq!(inbox[5].content["text"], "just in time");
        assert_eq!(inbox[5].kind, "reply");

        // A user's write reaching an app deleted meanwhile (past the API's
        // check that the app exists) is refused, and stores nothing.
        db.delete_app(&support).await.unwrap();
        let gone = messaging.user_writes(&support, bob, openid, "Hello?").await;
        assert!(
            matches!(&gone, Err(MessagingError::NotFound(d)) if d.contains("deleted")),
            "{gone:?}"
        );
        let gone = messaging
            .subscribe(
                bob,
                &support,
                openid,
                "order_shipped",
                SubscriptionKind::OneTime,
            )
            .await;
        assert!(
            matches!(&gone, Err(MessagingError::NotFound(d)) if d.contains("deleted")),
            "{gone:?}"
        );
        assert!(db.app_events(&support, 10).await.unwrap().is_empty());
        assert!(messaging.subscriptions(bob).await.unwrap().is_empty());
        db.close().await;
        test_db
    })
    .await;
}

/// Reads a Server-Sent Events stream: each message's id and data, up to
/// `count` of them.
async fn read_events(response: reqwest::Response, count: usize) -> Vec<(i64, Value)> {
    use futures_util::StreamExt;
    let mut body = response.bytes_stream();
    let mut buffer = String::new();
    let mut events = Vec::new();
    while events.len() < count {
        let Some(chunk) = body.next().await else {
            break;
        };
        buffer.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            let (mut id, mut data) = (None, None);
            for line in frame.lines() {
                if let Some(value) = line.strip_prefix("id:") {
                    id = value.trim().parse().ok();
                } else if let Some(value) = line.strip_prefix("data:") {
                    data = serde_json::from_str(value.trim()).ok();
                }
            }
            if let (Some(id), Some(data)) = (id, data) {
                events.push((id, data));
            }
        }
    }
    events
}

async fn open_stream(
    api: &crate::support::Api,
    token: &str,
    last: Option<i64>,
) -> reqwest::Response {
    let mut request = api
        .client
        .get(api.url("/v1/me/messages/stream"))
        .bearer_auth(token);
    if let Some(last) = last {
        request = request.header("Last-Event-ID", last.to_string());
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_inbox_resumes_without_loss_or_repeats() {
    on_each_engine(|_, test_db| async move {
        const MESSAGES: i64 = 300;
        let dir = tempfile::tempdir().unwrap();
        let mut settings = config(&test_db, dir.path());
        settings.daily_notifications = 1000;
        let server = TestServer::start(settings).await;
        let alice = server.account("alice", &[]).await;
        let (_, me) = server.get_as(&alice, "/v1/me").await;
        let account: AccountId = me["id"].as_i64().unwrap();
        let messaging = server.platform.messaging_service();
        register_apps(server.platform.db(), &["news"]).await;
        let (news, template) = (appid("news"), shipped());
        messaging
            .subscribe(
                account,
                &news,
                "openid-a",
                "order_shipped",
                SubscriptionKind::LongTerm,
            )
            .await
            .unwrap();

        // A stream opened without Last-Event-ID sees only what comes next.
        let sender = {
            let messaging = messaging.clone();
            let (news, template) = (news.clone(), template.clone());
            tokio::spawn(async move {
                for n in 1..=MESSAGES {
                    notify(
                        &messaging,
                        &news,
                        &template,
                        "openid-a",
                        &format!("item {n}"),
                    )
                    .await
                    .unwrap();
                    if n % 7 == 0 {
                        tokio::time::sleep(Duration::from_millis(3)).await;
                    }
                }
            })
        };
        // Reconnect storm: read a few, hang up, resume from the last id.
        let mut received: Vec<i64> = Vec::new();
        let mut round = 0;
        while received.len() < MESSAGES as usize {
            round += 1;
            let last = received.last().copied().or(Some(0));
            let response = open_stream(&server.api, &alice, last).await;
            let want = (1 + (round * 7) % 23).min(MESSAGES as usize - received.len());
            let events = tokio::time::timeout(Duration::from_secs(10), read_events(response, want))
                .await
                .expect("the stream delivers what was sent");
            for (id, message) in events {
                assert_eq!(message["seq"], id);
                assert_eq!(
                    message["content"]["fields"][0]["value"],
                    format!("item {id}")
                );
                received.push(id);
            }
        }
        sender.await.unwrap();
        assert!(round > 10, "the storm reconnected {round} times");
        let expected: Vec<i64> = (1..=MESSAGES).collect();
        assert_eq!(received, expected, "every message once, in order");

        // Listing agrees, and a bad Last-Event-ID is refused.
        let (status, listed) = server.get_as(&alice, "/v1/me/messages?after=295").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(listed["messages"].as_array().unwrap().len(), 5);
        assert_eq!(listed["unread"], MESSAGES);
        let response = server
            .api
            .client
            .get(server.url("/v1/me/messages/stream"))
            .bearer_auth(&alice)
            .header("Last-Event-ID", "yesterday")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let response = server
            .api
            .client
            .get(server.url("/v1/me/messages/stream"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        // A stream ends with its session: signed out, the next message
        // is not delivered and the stream closes.
        let leaving = server
            .login("alice", &crate::support::password_of("alice"))
            .await;
        let stream = open_stream(&server.api, &leaving, None).await;
        let (status, _) = server
            .send(Method::DELETE, "/v1/sessions/current", Some(&leaving), None)
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        notify(&messaging, &news, &template, "openid-a", "after sign-out")
            .await
            .unwrap();
        let events = tokio::time::timeout(Duration::from_secs(10), read_events(stream, 1))
            .await
            .expect("the stream closes");
        assert!(events.is_empty(), "delivered after sign-out: {events:?}");
        // A stream still open does not hold up the server's shutdown.
        let _open = open_stream(&server.api, &alice, None).await;
        tokio::time::timeout(Duration::from_secs(10), server.stop())
            .await
            .expect("shutdown ends open streams");
        test_db
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_subscribe_and_chat_through_the_platform() {
    on_each_engine(|_, test_db| async move {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(config(&test_db, dir.path())).await;
        let manifest: Value = serde_json::from_slice(
            &std::fs::read(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/sample-programs/support-chat/manifest.json"
            ))
            .unwrap(),
        )
        .unwrap();
        // Templates are checked at upload, and need the capability.
        let mut bad = manifest.clone();
        bad["messaging"] = json!({"templates": [{"id": "hello", "title": "Hi", "fields": [{"key": "Thing1", "type": "thing", "label": "x"}]}]});
        let response = server.upload("support-chat", &bad, SUPPORT_CHAT).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let body: Value = response.json().await.unwrap();
        assert!(body["error"]["message"].as_str().unwrap().contains("Thing1"), "{body}");
        bad["messaging"] = json!({"templates": [{"id": "hello", "title": "Hi", "fields": [{"key": "when", "type": "sometime", "label": "x"}]}]});
        let response = server.upload("support-chat", &bad, SUPPORT_CHAT).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let mut undeclared = manifest.clone();
        undeclared["capabilities"] = json!(["identity", "storage"]);
        undeclared["messaging"] = json!({"templates": [{"id": "hello", "title": "Hi", "fields": [{"key": "when", "type": "time", "label": "When"}]}]});
        let response = server.upload("support-chat", &undeclared, SUPPORT_CHAT).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);

        server.deploy("support-chat", SUPPORT_CHAT, manifest).await;
        let bob = server.account("bob", &[]).await;

        // Subscribing names a template the release declares.
        let (status, body) = server
            .send(
                Method::PUT,
                "/v1/me/subscriptions/support-chat/nope",
                Some(&bob),
                Some(json!({"kind": "one-time"})),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        let (status, body) = server
            .send(
                Method::PUT,
                "/v1/me/subscriptions/support-chat/nope",
                Some(&bob),
                Some(json!({"kind": "forever"})),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let (status, _) = server
            .send(
                Method::DELETE,
                "/v1/me/subscriptions/support-chat/nope",
                Some(&bob),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        let stream = open_stream(&server.api, &bob, None).await;
        let (status, body) = server
            .post_as(
                &bob,
                "/v1/me/conversations/support-chat",
                json!({"text": "What are your opening hours?"}),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        let events = tokio::time::timeout(Duration::from_secs(15), read_events(stream, 1))
            .await
            .expect("the app's answer arrives live");
        assert_eq!(events[0].1["kind"], "reply");
        assert_eq!(events[0].1["appid"], "support-chat");
        assert!(
            events[0].1["content"]["text"]
                .as_str()
                .unwrap()
                .contains("9:00"),
            "{}",
            events[0].1
        );
        let (status, body) = server
            .post_as(
                &bob,
                "/v1/me/conversations/support-chat",
                json!({"text": ""}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let (status, _) = server
            .post_as(
                &bob,
                "/v1/me/conversations/no-such-app",
                json!({"text": "hi"}),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, body) = server
            .post_as(&bob, "/v1/me/messages/read", json!({"up_to": 1}))
            .await;
        assert_eq!((status, body["marked"].as_u64()), (StatusCode::OK, Some(1)));
        server.stop().await;
        test_db
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_sent_through_one_node_reaches_a_user_on_another() {
    // Two server processes share one database: PostgreSQL only, where
    // LISTEN/NOTIFY carries the news between them.
    on_each_engine(|engine, test_db| async move {
        if engine != "postgres" {
            return test_db;
        }
        let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let node_a = ProcessServer::spawn(&test_db, dir_a.path()).await;
        let node_b = ProcessServer::spawn(&test_db, dir_b.path()).await;
        let manifest: Value = serde_json::from_slice(
            &std::fs::read(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/sample-programs/support-chat/manifest.json"
            ))
            .unwrap(),
        )
        .unwrap();
        node_a.deploy("support-chat", SUPPORT_CHAT, manifest).await;
        let carol = node_a.account("carol", &[]).await;
        // Carol listens on node B and writes through node A.
        let stream = open_stream(&node_b.api, &carol, None).await;
        let (status, body) = node_a
            .post_as(
                &carol,
                "/v1/me/conversations/support-chat",
                json!({"text": "Can I get a refund?"}),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        let events = tokio::time::timeout(Duration::from_secs(15), read_events(stream, 1))
            .await
            .expect("the reply reaches the other node's stream");
        assert!(
            events[0].1["content"]["text"]
                .as_str()
                .unwrap()
                .contains("wallet"),
            "{}",
            events[0].1
        );
        test_db
    })
    .await;
}
