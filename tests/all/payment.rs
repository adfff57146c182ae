//! The payment capability: the ledger never creates or loses money, orders
//! and refunds are idempotent, only the payer confirms, and every result
//! reaches the program at least once, across a restart. Then the `shop`,
//! `red-envelope` and `payment-probe` samples over HTTP.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use miniapp::db::Db;
use miniapp::domain::AppId;
use miniapp::hashing::Hashing;
use miniapp::payment::{
    MoneyAccount, NewOrder, OrderState, PaymentError, Payments, PayoutRequest, Pin, RefundRequest,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::support::{
    PAYMENT_PROBE, RED_ENVELOPE, SHOP, TestServer, config, on_each_engine, password_of,
    register_apps,
};

const PIN: &str = "274901";

fn appid(name: &str) -> AppId {
    name.parse().unwrap()
}

/// Every balance sums to zero (what the funding account issued is held
/// somewhere), no balance but the funding account's is negative, and the
/// ledger's entries sum to zero too.
async fn assert_balanced(db: &Db) {
    let (sum, lowest, entries) = db.ledger_check().await.unwrap();
    assert_eq!(sum, 0, "all balances must sum to zero");
    assert!(lowest >= 0, "a balance went negative: {lowest}");
    assert_eq!(entries, 0, "the ledger's entries must sum to zero");
}

/// Gives `payer` money and a PIN.
async fn funded_payer(payments: &Payments, payer: i64, fen: u64) {
    payments.top_up(payer, fen).await.unwrap();
    payments
        .set_pin(payer, Pin::parse(PIN).unwrap())
        .await
        .unwrap();
}

async fn balance(payments: &Payments, account: MoneyAccount) -> u64 {
    payments.balance(&account).await.unwrap()
}

fn order(app: &str, payer: i64, no: &str, amount: u64) -> NewOrder {
    NewOrder {
        appid: appid(app),
        channel: "release".into(),
        payer_id: payer,
        payer_openid: format!("openid-of-{payer}"),
        out_trade_no: no.into(),
        amount,
        description: "A cup of tea".into(),
        attach: "".into(),
        ttl: Duration::from_secs(3600),
    }
}

async fn payments(url: &str) -> (Db, Arc<Payments>) {
    let db = Db::connect(url).await.unwrap();
    register_apps(&db, &["shop", "cafe"]).await;
    (
        db.clone(),
        Arc::new(Payments::new(
            db,
            Arc::new(Notify::new()),
            Arc::new(Hashing::default()),
        )),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_confirmations_and_pins() {
    on_each_engine(|_, test_db| async move {
        let (db, payments) = payments(&test_db.url).await;
        let (alice, bob) = (1, 2);
        payments.top_up(alice, 10_000).await.unwrap();

        // The same order again is the same prepay id; other parameters conflict.
        let prepay = payments
            .create_order(order("shop", alice, "order-0001", 1200))
            .await
            .unwrap();
        let again = payments
            .create_order(order("shop", alice, "order-0001", 1200))
            .await
            .unwrap();
        assert_eq!(prepay, again);
        for changed in [
            order("shop", alice, "order-0001", 1201),
            order("shop", bob, "order-0001", 1200),
            NewOrder {
                attach: "other".into(),
                ..order("shop", alice, "order-0001", 1200)
            },
        ] {
            let err = payments.create_order(changed).await.unwrap_err();
            assert!(matches!(err, PaymentError::Conflict(_)), "{err:?}");
        }
        // Another app's numbers are its own.
        let other_app = payments
            .create_order(order("cafe", alice, "order-0001", 5))
            .await
            .unwrap();
        assert_ne!(other_app, prepay);
        for (no, amount) in [
            ("short", 1),
            ("has space!", 1),
            ("order-0002", 0),
            ("order-0003", 1_000_000_001),
        ] {
            let err = payments
                .create_order(order("shop", alice, no, amount))
                .await
                .unwrap_err();
            assert!(matches!(err, PaymentError::Invalid(_)), "{no}: {err:?}");
        }
        // attach is the program's own text, but text: no control characters
        // (PostgreSQL cannot store NUL), at most 128 bytes.
        for attach in ["a\0b", "line\nbreak", &"x".repeat(129)] {
            let err = payments
                .create_order(NewOrder {
                    attach: attach.into(),
                    ..order("shop", alice, "order-0009", 1)
                })
                .await
                .unwrap_err();
            assert!(
                matches!(err, PaymentError::Invalid(_)),
                "{attach:?}: {err:?}"
            );
        }
        payments
            .create_order(NewOrder {
                attach: r#"{"table": 7, "note": "äö"}"#.into(),
                ..order("shop", alice, "order-0009", 1)
            })
            .await
            .unwrap();

        // No PIN yet; then wrong PINs count, and the fifth locks payments.
        assert!(matches!(
            payments.confirm(alice, &prepay, PIN).await,
            Err(PaymentError::NoPin)
        ));
        payments
            .set_pin(alice, Pin::parse(PIN).unwrap())
            .await
            .unwrap();
        assert!(matches!(
            payments.confirm(bob, &prepay, PIN).await,
            Err(PaymentError::NoPin)
        ));
        payments
            .set_pin(bob, Pin::parse(PIN).unwrap())
            .await
            .unwrap();
        // Bob knows a PIN, but the order is Alice's: not found for him.
        assert!(matches!(
            payments.confirm(bob, &prepay, PIN).await,
            Err(PaymentError::NotFound(_))
        ));
        for left in (1..=4).rev() {
            match payments.confirm(alice, &prepay, "111112").await {
                Err(PaymentError::WrongPin { attempts_left }) => assert_eq!(attempts_left, left),
                other => panic!("expected a wrong PIN, got {other:?}"),
            }
        }
        assert!(matches!(
            payments.confirm(alice, &prepay, "111112").await,
            Err(PaymentError::Locked { .. })
        ));
        // Locked: even the right PIN waits.
        assert!(matches!(
            payments.confirm(alice, &prepay, PIN).await,
            Err(PaymentError::Locked { .. })
        ));
        assert_eq!(
            payments
                .query_order(&appid("shop"), "order-0001")
                .await
                .unwrap()
                .state,
            OrderState::NotPay
        );
        // Setting the PIN again (over HTTP, that needs the password) lifts the lock.
        payments
            .set_pin(alice, Pin::parse(PIN).unwrap())
            .await
            .unwrap();

        // Guesses sent at once: each counts before its hash is checked, so
        // only five are checked, and the fifth locks, however many queue.
        let guesses = (0..40).map(|n| {
            let payments = payments.clone();
            let prepay = prepay.clone();
            tokio::spawn(async move {
                payments
                    .confirm(alice, &prepay, &format!("{:06}", 314_159 + n))
                    .await
            })
        });
        let mut left = Vec::new();
        let mut locked = 0;
        for result in join_all(guesses).await {
            match result.unwrap() {
                Err(PaymentError::WrongPin { attempts_left }) => left.push(attempts_left),
                Err(PaymentError::Locked { .. }) => locked += 1,
                other => panic!("expected a wrong PIN or the lock, got {other:?}"),
            }
        }
        left.sort_unstable();
        assert_eq!(left, [1, 2, 3, 4], "four wrong PINs, then the lock");
        assert_eq!(locked, 36);
        assert!(matches!(
            payments.confirm(alice, &prepay, PIN).await,
            Err(PaymentError::Locked { .. })
        ));
        payments
            .set_pin(alice, Pin::parse(PIN).unwrap())
            .await
            .unwrap();

        // 500 confirmations of one order at once: exactly one settles.
        let confirmations = (0..500).map(|_| {
            let payments = payments.clone();
            let prepay = prepay.clone();
            tokio::spawn(async move { payments.confirm(alice, &prepay, PIN).await })
        });
        let results: Vec<_> = join_all(confirmations)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        let settled = results.iter().filter(|result| result.is_ok()).count();
        assert_eq!(settled, 1, "exactly one confirmation settles");
        for result in &results {
            if let Err(err) = result {
                assert!(matches!(err, PaymentError::Conflict(_)), "{err:?}");
            }
        }
        let paid = payments
            .query_order(&appid("shop"), "order-0001")
            .await
            .unwrap();
        assert_eq!(paid.state, OrderState::Success);
        assert!(paid.paid_at.is_some());
        assert_eq!(balance(&payments, MoneyAccount::Wallet(alice)).await, 8_800);
        assert_eq!(
            balance(&payments, MoneyAccount::Merchant(appid("shop"))).await,
            1_200
        );

        // Too little in the wallet: nothing moves, the order stays unpaid.
        let dear = payments
            .create_order(order("shop", alice, "order-0004", 9_000))
            .await
            .unwrap();
        let err = payments.confirm(alice, &dear, PIN).await.unwrap_err();
        assert!(matches!(err, PaymentError::InsufficientFunds(_)), "{err:?}");
        assert_eq!(
            payments
                .query_order(&appid("shop"), "order-0004")
                .await
                .unwrap()
                .state,
            OrderState::NotPay
        );
        assert_eq!(balance(&payments, MoneyAccount::Wallet(alice)).await, 8_800);

        // Closing: an unpaid order closes (twice is fine) and cannot be paid.
        payments
            .close_order(&appid("shop"), "order-0004")
            .await
            .unwrap();
        payments
            .close_order(&appid("shop"), "order-0004")
            .await
            .unwrap();
        assert!(matches!(
            payments.confirm(alice, &dear, PIN).await,
            Err(PaymentError::Conflict(_))
        ));
        assert!(matches!(
            payments.close_order(&appid("shop"), "order-0001").await,
            Err(PaymentError::Conflict(_))
        ));
        assert!(matches!(
            payments
                .create_order(order("shop", alice, "order-0004", 9_000))
                .await,
            Err(PaymentError::Conflict(_))
        ));
        assert!(matches!(
            payments.close_order(&appid("shop"), "order-9999").await,
            Err(PaymentError::NotFound(_))
        ));

        // An order past its expiry reads closed and cannot be paid.
        let stale = NewOrder {
            ttl: Duration::from_millis(1),
            ..order("shop", alice, "order-0005", 10)
        };
        let stale = payments.create_order(stale).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            payments
                .query_order(&appid("shop"), "order-0005")
                .await
                .unwrap()
                .state,
            OrderState::Closed
        );
        assert!(matches!(
            payments.confirm(alice, &stale, PIN).await,
            Err(PaymentError::Conflict(_))
        ));
        assert!(payments.close_expired().await.unwrap() >= 1);

        // The result of the one settlement waits in the outbox.
        let events = db.app_events(&appid("shop"), 10).await.unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].topic, "payment.succeeded");
        let payload: Value = serde_json::from_str(&events[0].payload).unwrap();
        assert_eq!(payload["out_trade_no"], "order-0001");
        assert_eq!(payload["amount"], 1200);
        assert_eq!(payload["payer"], "openid-of-1");
        // Delivered events are forgotten after their retention, not before;
        // pending ones are never.
        let now = miniapp::db::now_ms();
        assert_eq!(
            db.forget_delivered_events(now + 1).await.unwrap(),
            0,
            "still pending"
        );
        // A claim whose lease lapsed: another dispatcher claims the event
        // again, and the first one's late report changes nothing.
        let lapsed = db.claim_events(now, now + 10, 10).await.unwrap();
        assert_eq!(lapsed.len(), 1);
        let claimed = db.claim_events(now + 20, now + 60_000, 10).await.unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].id, lapsed[0].id);
        db.event_delivered(&claimed[0], now).await.unwrap();
        db.event_failed(&lapsed[0], "late", Some(now))
            .await
            .unwrap();
        let events = db.app_events(&appid("shop"), 10).await.unwrap();
        assert_eq!(
            (events[0].state.as_str(), events[0].attempts),
            ("delivered", 1),
            "{events:?}"
        );
        assert_eq!(
            db.forget_delivered_events(now - 1).await.unwrap(),
            0,
            "too recent"
        );
        assert_eq!(db.forget_delivered_events(now + 1).await.unwrap(), 1);
        assert!(db.app_events(&appid("shop"), 10).await.unwrap().is_empty());
        assert_balanced(&db).await;
        db.close().await;
        test_db
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refunds_and_payouts_are_idempotent_and_bounded() {
    on_each_engine(|_, test_db| async move {
        let (db, payments) = payments(&test_db.url).await;
        let shop = appid("shop");
        let alice = 1;
        funded_payer(&payments, alice, 10_000).await;
        let refund = |no: &str, refund_no: &str, amount| RefundRequest {
            out_trade_no: no.into(),
            out_refund_no: refund_no.into(),
            amount,
            reason: "changed my mind".into(),
        };
        let unpaid = payments
            .create_order(order("shop", alice, "order-0001", 5_000))
            .await
            .unwrap();
        assert!(matches!(
            payments
                .refund(&shop, refund("order-0001", "refund-0001", 1))
                .await,
            Err(PaymentError::Conflict(_))
        ));
        payments.confirm(alice, &unpaid, PIN).await.unwrap();

        // The same refund twice: one refund.
        let first = payments
            .refund(&shop, refund("order-0001", "refund-0001", 2_000))
            .await
            .unwrap();
        let second = payments
            .refund(&shop, refund("order-0001", "refund-0001", 2_000))
            .await
            .unwrap();
        assert_eq!(
            (first.refunded_total, second.refunded_total),
            (2_000, 2_000)
        );
        assert_eq!(balance(&payments, MoneyAccount::Wallet(alice)).await, 7_000);
        assert!(matches!(
            payments
                .refund(&shop, refund("order-0001", "refund-0001", 2_001))
                .await,
            Err(PaymentError::Conflict(_))
        ));
        // Never more than was paid.
        assert!(matches!(
            payments
                .refund(&shop, refund("order-0001", "refund-0002", 3_001))
                .await,
            Err(PaymentError::Invalid(_))
        ));
        // The refused refund left no trace: its number is free.
        let rest = payments
            .refund(&shop, refund("order-0001", "refund-0002", 2_950))
            .await
            .unwrap();
        assert_eq!(rest.refunded_total, 4_950);
        let order_now = payments.query_order(&shop, "order-0001").await.unwrap();
        assert_eq!(
            (order_now.state, order_now.refunded),
            (OrderState::Refund, 4_950)
        );
        // At most 50 refunds of one order: 2 so far, 48 more of 1 fen, then no more.
        for n in 3..=50 {
            payments
                .refund(&shop, refund("order-0001", &format!("refund-{n:04}"), 1))
                .await
                .unwrap();
        }
        assert!(matches!(
            payments
                .refund(&shop, refund("order-0001", "refund-0051", 1))
                .await,
            Err(PaymentError::LimitReached(_))
        ));
        assert!(matches!(
            payments
                .refund(&shop, refund("order-9999", "refund-0052", 1))
                .await,
            Err(PaymentError::NotFound(_))
        ));
        // The merchant now holds 5000 - 4998 fen.
        assert_eq!(
            balance(&payments, MoneyAccount::Merchant(shop.clone())).await,
            2
        );

        // Payouts: once per number, never past the merchant's balance.
        let payout = |no: &str, payee, amount| PayoutRequest {
            out_payout_no: no.into(),
            payee,
            amount,
            description: "a prize".into(),
        };
        payments
            .payout(&shop, payout("prize-0001", 2, 1))
            .await
            .unwrap();
        payments
            .payout(&shop, payout("prize-0001", 2, 1))
            .await
            .unwrap();
        assert_eq!(balance(&payments, MoneyAccount::Wallet(2)).await, 1);
        assert!(matches!(
            payments.payout(&shop, payout("prize-0001", 3, 1)).await,
            Err(PaymentError::Conflict(_))
        ));
        assert!(matches!(
            payments.payout(&shop, payout("prize-0002", 3, 2)).await,
            Err(PaymentError::InsufficientFunds(_))
        ));
        assert_eq!(
            balance(&payments, MoneyAccount::Merchant(shop.clone())).await,
            1
        );
        // Refunds past the merchant's balance fail the same way.
        let second_order = payments
            .create_order(order("shop", alice, "order-0002", 100))
            .await
            .unwrap();
        payments.confirm(alice, &second_order, PIN).await.unwrap();
        payments
            .payout(&shop, payout("prize-0003", 3, 101))
            .await
            .unwrap();
        assert!(matches!(
            payments
                .refund(&shop, refund("order-0002", "refund-0100", 100))
                .await,
            Err(PaymentError::InsufficientFunds(_))
        ));

        // Alice's statement: top-up, two payments, 50 refunds; newest first.
        let statement = payments.wallet_statement(alice, None, 1000).await.unwrap();
        assert_eq!(statement.len(), 53);
        assert_eq!(statement[0].kind, "payment");
        assert_eq!(statement[0].amount, -100);
        assert_eq!(statement.last().unwrap().kind, "topup");
        let total: i64 = statement.iter().map(|entry| entry.amount).sum();
        assert_eq!(
            total as u64,
            balance(&payments, MoneyAccount::Wallet(alice)).await
        );
        assert_balanced(&db).await;
        db.close().await;
        test_db
    })
    .await;
}

/// Polls `check` until it returns `Some`, for at most 15 s.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    for _ in 0..300 {
        if let Some(found) = check().await {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

/// A signed-in user with a PIN and `amount` fen in their wallet.
async fn payer(server: &TestServer, username: &str, amount: u64) -> String {
    let token = server.account(username, &[]).await;
    let (status, body) = server
        .send(
            Method::PUT,
            "/v1/me/payment-pin",
            Some(&token),
            Some(json!({"password": password_of(username), "pin": PIN})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    if amount > 0 {
        let admin = server.admin().await;
        let (status, body) = server
            .post_as(
                &admin,
                &format!("/v1/admin/wallets/{username}/top-up"),
                json!({"amount": amount}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    token
}

/// The user lets the shop tell them once that an order shipped.
async fn subscribe_to_shipping(server: &TestServer, token: &str) {
    let (status, body) = server
        .send(
            Method::PUT,
            "/v1/me/subscriptions/shop/order_shipped",
            Some(token),
            Some(json!({"kind": "one-time"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// Waits until the shop's own record of order `no` says `status`: the
/// platform's event reached the program.
async fn shop_order_becomes(server: &TestServer, token: &str, no: &str, status: &str) {
    eventually(&format!("the shop's order {no} to be {status}"), || async {
        let (_, order) = server
            .get_as(token, &format!("/apps/shop/orders/{no}"))
            .await;
        (order["status"] == status).then_some(())
    })
    .await;
}

fn sample_manifest(name: &str) -> Value {
    let path = format!(
        "{}/sample-programs/{name}/manifest.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shop_sells_and_refunds_and_only_the_payer_confirms() {
    on_each_engine(|_, test_db| async move {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(config(&test_db, dir.path())).await;
        server.deploy("shop", SHOP, sample_manifest("shop")).await;
        let alice = payer(&server, "alice", 10_000).await;
        let mallory = payer(&server, "mallory", 10_000).await;

        let (status, products) = server.get_as(&alice, "/apps/shop/products").await;
        assert_eq!(status, StatusCode::OK, "{products}");
        assert_eq!(products["products"][0]["price"], 1200);
        let (status, created) = server
            .post_as(
                &alice,
                "/apps/shop/orders",
                json!({"product": "tea", "quantity": 2}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        assert_eq!(created["amount"], 2400);
        let no = created["out_trade_no"].as_str().unwrap().to_string();
        let prepay = created["prepay_id"].as_str().unwrap().to_string();

        // Alice sees what she is about to pay; nobody else does.
        let (status, shown) = server
            .get_as(&alice, &format!("/v1/pay/orders/{prepay}"))
            .await;
        assert_eq!(status, StatusCode::OK, "{shown}");
        assert_eq!(
            (shown["amount"].as_u64(), shown["state"].as_str()),
            (Some(2400), Some("NOTPAY"))
        );
        assert_eq!(shown["appid"], "shop");
        let (status, _) = server
            .get_as(&mallory, &format!("/v1/pay/orders/{prepay}"))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        // Nobody but Alice confirms: not anonymously, not the developer,
        // not another user with their own PIN, not with the app's secret.
        let confirm = format!("/v1/pay/orders/{prepay}/confirm");
        let (status, _) = server
            .send(Method::POST, &confirm, None, Some(json!({"pin": PIN})))
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let dev = server.developer().await;
        let (status, body) = server.post_as(&dev, &confirm, json!({"pin": PIN})).await;
        assert!(
            status == StatusCode::NOT_FOUND || status == StatusCode::CONFLICT,
            "{status} {body}"
        );
        let (status, _) = server
            .post_as(&mallory, &confirm, json!({"pin": PIN}))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = server
            .post_as("0123456789abcdef", &confirm, json!({"pin": PIN}))
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, body) = server
            .post_as(&alice, &confirm, json!({"pin": "111112"}))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body["error"]["code"], "wrong_pin");
        let (status, body) = server
            .post_as(&alice, &confirm, json!({"pin": PIN, "amount": 1}))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        // The program cannot mark its own order paid: asking it is only
        // its own bookkeeping, and the platform's order stays unpaid.
        let (status, mine) = server
            .get_as(&alice, &format!("/apps/shop/orders/{no}"))
            .await;
        assert_eq!(
            (status, mine["status"].as_str()),
            (StatusCode::OK, Some("created"))
        );

        // Alice lets the shop tell her once that the order shipped.
        subscribe_to_shipping(&server, &alice).await;

        // Nor by importing a confirmation the contract does not have: the
        // upload is refused, naming the function.
        let forged = wat::parse_str(format!(
            r#"(component
                (import "miniapp:host/payment@{v}" (instance
                    (export "confirm-order" (func (param "prepay-id" string)))))
                (instance $handler)
                (instance $events)
                (export "miniapp:host/handler@{v}" (instance $handler))
                (export "miniapp:host/events@{v}" (instance $events)))"#,
            v = miniapp_host_api::VERSION
        ))
        .unwrap();
        let mut forger = sample_manifest("shop");
        forger["name"] = json!("forger");
        let response = server.upload("forger", &forger, &forged).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let refusal: Value = response.json().await.unwrap();
        assert!(
            refusal["error"]["message"]
                .as_str()
                .unwrap()
                .contains("confirm-order"),
            "{refusal}"
        );
        assert_eq!(
            std::fs::read_dir(dir.path().join("artifacts")).map_or(0, |d| d.count()),
            1,
            "only the shop's artifact is cached, not the refused one"
        );

        let (status, paid) = server.post_as(&alice, &confirm, json!({"pin": PIN})).await;
        assert_eq!(status, StatusCode::OK, "{paid}");
        assert_eq!(paid["state"], "SUCCESS");
        let (status, body) = server.post_as(&alice, &confirm, json!({"pin": PIN})).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");

        // The notification marks the shop's order paid.
        shop_order_becomes(&server, &alice, &no, "paid").await;
        let shipped = eventually("the shipping notification", || async {
            let (_, inbox) = server.get_as(&alice, "/v1/me/messages").await;
            let messages = inbox["messages"].as_array().cloned().unwrap_or_default();
            messages.first().cloned()
        })
        .await;
        assert_eq!(shipped["template_id"], "order_shipped");
        assert_eq!(shipped["page"], format!("/orders/{no}"));
        let fields = shipped["content"]["fields"].as_array().unwrap();
        let values: Vec<&str> = fields
            .iter()
            .map(|f| f["value"].as_str().unwrap())
            .collect();
        assert_eq!(values, ["Jasmine tea", no.as_str(), "24.00"]);
        // The one-time grant is used up.
        let (_, subscriptions) = server.get_as(&alice, "/v1/me/subscriptions").await;
        assert_eq!(subscriptions["subscriptions"], json!([]));
        let (status, refund) = server
            .post_as(&alice, &format!("/apps/shop/orders/{no}/refund"), json!({}))
            .await;
        assert_eq!(status, StatusCode::OK, "{refund}");
        assert_eq!(refund["refunded_total"], 2400);
        shop_order_becomes(&server, &alice, &no, "refunded").await;
        // Asking again refunds nothing more.
        let (status, again) = server
            .post_as(&alice, &format!("/apps/shop/orders/{no}/refund"), json!({}))
            .await;
        assert!(
            status == StatusCode::OK || status == StatusCode::CONFLICT,
            "{status} {again}"
        );

        // Alice's statement: her top-up, her payment and her refund.
        let (status, wallet) = server.get_as(&alice, "/v1/me/wallet").await;
        assert_eq!(status, StatusCode::OK, "{wallet}");
        assert_eq!(wallet["balance"], 10_000);
        let kinds: Vec<&str> = wallet["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["refund", "payment", "topup"]);
        // The developer's statement of the day, and the events delivered.
        let (status, statement) = server.dev_get("/v1/apps/shop/statement").await;
        assert_eq!(status, StatusCode::OK, "{statement}");
        let today = statement["days"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .clone();
        assert_eq!(
            (today["payments"].as_i64(), today["paid_amount"].as_i64()),
            (Some(1), Some(2400))
        );
        assert_eq!(
            (today["refunds"].as_i64(), today["refunded_amount"].as_i64()),
            (Some(1), Some(2400))
        );
        assert_eq!(
            (today["orders_created"].as_i64(), today["net"].as_i64()),
            (Some(1), Some(0))
        );
        assert_eq!(statement["balance"], 0);
        let (status, body) = server
            .dev_get("/v1/apps/shop/statement?from=2026-02-30")
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let (status, events) = server.dev_get("/v1/apps/shop/events").await;
        assert_eq!(status, StatusCode::OK);
        let states: Vec<(&str, &str)> = events["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["topic"].as_str().unwrap(), e["state"].as_str().unwrap()))
            .collect();
        assert_eq!(
            states,
            [
                ("refund.succeeded", "delivered"),
                ("payment.succeeded", "delivered")
            ]
        );
        let (status, _) = server.get_as(&mallory, "/v1/apps/shop/events").await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        // Top-ups are the admin's alone.
        let (status, _) = server
            .post_as(
                &alice,
                "/v1/admin/wallets/alice/top-up",
                json!({"amount": 1}),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let admin = server.admin().await;
        let (status, _) = server
            .post_as(
                &admin,
                "/v1/admin/wallets/nobody/top-up",
                json!({"amount": 1}),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = server
            .post_as(
                &admin,
                "/v1/admin/wallets/alice/top-up",
                json!({"amount": 0}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        // A PIN takes the password, and is not a guessable one.
        let pin = |password: &str, pin: &str| json!({"password": password, "pin": pin});
        let (status, _) = server
            .send(
                Method::PUT,
                "/v1/me/payment-pin",
                Some(&alice),
                Some(pin("wrong password", "274901")),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        for weak in ["123456", "000000", "12345"] {
            let (status, body) = server
                .send(
                    Method::PUT,
                    "/v1/me/payment-pin",
                    Some(&alice),
                    Some(pin(&password_of("alice"), weak)),
                )
                .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{weak}: {body}");
        }

        assert_balanced(server.platform.db()).await;
        server.stop().await;
        test_db
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_are_retried_and_survive_a_restart() {
    on_each_engine(|_, test_db| async move {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = config(&test_db, dir.path());
        settings.event_retry_schedule = vec![Duration::from_millis(100); 3];
        let server = TestServer::start(settings.clone()).await;
        server
            .deploy(
                "payment-probe",
                PAYMENT_PROBE,
                sample_manifest("payment-probe"),
            )
            .await;
        let alice = payer(&server, "alice", 1_000).await;

        // The manifest's payment section is checked, and payouts need it.
        let mut bad = sample_manifest("payment-probe");
        bad["payment"] = json!({"order_ttl_secs": 59});
        let response = server.upload("payment-probe", &bad, PAYMENT_PROBE).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let (status, body) = server
            .post_as(
                &alice,
                "/apps/payment-probe/payout?no=prize-0001&amount=1",
                json!({}),
            )
            .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::FORBIDDEN, Some("denied")),
            "{body}"
        );
        let (status, body) = server
            .send(
                Method::POST,
                "/apps/payment-probe/order?no=anon-0001&amount=5&description=x&attach=",
                None,
                None,
            )
            .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::FORBIDDEN, Some("denied")),
            "{body}"
        );

        // A program that refuses the first two deliveries gets the third.
        let (status, created) = server
            .post_as(
                &alice,
                "/apps/payment-probe/order?no=flaky-0001&amount=100&description=tea&attach=flaky",
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{created}");
        let prepay = created["prepay_id"].as_str().unwrap();
        let (status, body) = server
            .post_as(
                &alice,
                &format!("/v1/pay/orders/{prepay}/confirm"),
                json!({"pin": PIN}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let event = eventually("the third delivery", || async {
            let (_, events) = server.dev_get("/v1/apps/payment-probe/events").await;
            let event = events["events"][0].clone();
            (event["state"] == "delivered").then_some(event)
        })
        .await;
        assert_eq!(event["attempts"], 3);
        let id = event["id"].as_str().unwrap();
        let (_, deliveries) = server
            .get_as(&alice, &format!("/apps/payment-probe/deliveries?id={id}"))
            .await;
        assert_eq!(deliveries["deliveries"], 3);
        let (_, order) = server
            .get_as(&alice, "/apps/payment-probe/order?no=flaky-0001")
            .await;
        assert_eq!(order["state"], "SUCCESS", "{order}");

        // The rest of the interface, through the guest: refunds (and their
        // event), closing, and the errors a guest is told.
        let (status, refund) = server
            .post_as(
                &alice,
                "/apps/payment-probe/refund?no=flaky-0001&refund=flaky-r1&amount=40&reason=dented",
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{refund}");
        assert_eq!(refund["refunded_total"], 40);
        let (status, body) = server
            .post_as(
                &alice,
                "/apps/payment-probe/refund?no=flaky-0001&refund=flaky-r2&amount=61&reason=",
                json!({}),
            )
            .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid")),
            "{body}"
        );
        let (_, order) = server
            .get_as(&alice, "/apps/payment-probe/order?no=flaky-0001")
            .await;
        assert_eq!(
            (order["state"].as_str(), order["refunded"].as_u64()),
            (Some("REFUND"), Some(40))
        );
        eventually("the refund's event", || async {
            let (_, seen) = server
                .get_as(&alice, "/apps/payment-probe/seen?no=flaky-0001")
                .await;
            (seen["events"] == json!(["payment.succeeded", "refund.succeeded"])).then_some(())
        })
        .await;
        let (status, _) = server
            .post_as(
                &alice,
                "/apps/payment-probe/order?no=close-0001&amount=5&description=tea&attach=",
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let (status, body) = server
            .post_as(&alice, "/apps/payment-probe/close?no=close-0001", json!({}))
            .await;
        assert_eq!(
            (status, body["closed"].as_bool()),
            (StatusCode::OK, Some(true)),
            "{body}"
        );
        let (_, order) = server
            .get_as(&alice, "/apps/payment-probe/order?no=close-0001")
            .await;
        assert_eq!(order["state"], "CLOSED");
        let (status, body) = server
            .post_as(&alice, "/apps/payment-probe/close?no=flaky-0001", json!({}))
            .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::CONFLICT, Some("conflict")),
            "{body}"
        );
        let (status, body) = server
            .get_as(&alice, "/apps/payment-probe/order?no=never-0001")
            .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::NOT_FOUND, Some("not-found")),
            "{body}"
        );
        let (status, body) = server
            .post_as(
                &alice,
                "/apps/payment-probe/order?no=bad%20no&amount=5&description=tea&attach=",
                json!({}),
            )
            .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid")),
            "{body}"
        );
        server.stop().await;

        // A node that does not deliver: settled, then gone before delivering.
        let mut quiet = settings.clone();
        quiet.no_event_dispatch = true;
        let server = TestServer::start(quiet).await;
        let alice = server.login("alice", &password_of("alice")).await;
        let (_, created) = server
            .post_as(
                &alice,
                "/apps/payment-probe/order?no=crash-0001&amount=100&description=tea&attach=",
                json!({}),
            )
            .await;
        let prepay = created["prepay_id"].as_str().unwrap().to_string();
        let (status, body) = server
            .post_as(
                &alice,
                &format!("/v1/pay/orders/{prepay}/confirm"),
                json!({"pin": PIN}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (_, seen) = server
            .get_as(&alice, "/apps/payment-probe/seen?no=crash-0001")
            .await;
        assert_eq!(seen["events"], json!([]), "nothing delivered yet");
        drop(server);

        // The next node delivers what the dead one settled.
        let server = TestServer::start(settings).await;
        let alice = server.login("alice", &password_of("alice")).await;
        eventually("delivery after the restart", || async {
            let (_, seen) = server
                .get_as(&alice, "/apps/payment-probe/seen?no=crash-0001")
                .await;
            (seen["events"] == json!(["payment.succeeded"])).then_some(())
        })
        .await;
        // The probe's own view of its orders and balance.
        let (_, balance) = server.get_as(&alice, "/apps/payment-probe/balance").await;
        assert_eq!(
            balance["balance"], 160,
            "two orders of 100, less a refund of 40"
        );
        assert_balanced(server.platform.db()).await;
        server.stop().await;
        test_db
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_red_envelope_survives_a_grab_storm() {
    on_each_engine(|_, test_db| async move {
        const USERS: usize = 100;
        const GRABS_EACH: usize = 10;
        const SHARES: u64 = 60;
        const AMOUNT: u64 = 8_888;
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(config(&test_db, dir.path())).await;
        server
            .deploy(
                "red-envelope",
                RED_ENVELOPE,
                sample_manifest("red-envelope"),
            )
            .await;
        let funder = payer(&server, "funder", 10_000).await;
        let (status, created) = server
            .post_as(
                &funder,
                "/apps/red-envelope/envelopes",
                json!({"amount": AMOUNT, "shares": SHARES}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let envelope = created["envelope"].as_u64().unwrap();
        let prepay = created["prepay_id"].as_str().unwrap();
        let (status, body) = server
            .post_as(
                &funder,
                &format!("/v1/pay/orders/{prepay}/confirm"),
                json!({"pin": PIN}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        eventually("the envelope to be funded", || async {
            let (_, shown) = server
                .get_as(&funder, &format!("/apps/red-envelope/envelopes/{envelope}"))
                .await;
            (shown["funded"] == true).then_some(())
        })
        .await;

        let mut tokens = Vec::new();
        for n in 0..USERS {
            tokens.push(server.account(&format!("grabber{n}"), &[]).await);
        }
        let grab = format!("/apps/red-envelope/envelopes/{envelope}/grab");
        let grabs = tokens
            .iter()
            .flat_map(|token| std::iter::repeat_n(token.clone(), GRABS_EACH))
            .map(|token| {
                let api = server.api.clone();
                let grab = grab.clone();
                tokio::spawn(async move {
                    let (status, body) = api.post_as(&token, &grab, json!({})).await;
                    (token, status, body)
                })
            });
        let results: Vec<_> = join_all(grabs)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        // A user's concurrent grabs may all answer their one share (a grab
        // that finds the share taken resumes it); never two shares.
        let mut winners = std::collections::HashMap::new();
        for (token, status, body) in &results {
            match *status {
                StatusCode::OK => {
                    let share = (
                        body["share"].as_u64().unwrap(),
                        body["amount"].as_u64().unwrap(),
                    );
                    let first = winners.entry(token.clone()).or_insert(share);
                    assert_eq!(*first, share, "a user got two shares");
                }
                StatusCode::CONFLICT | StatusCode::GONE => {}
                other => panic!("grab answered {other}: {body}"),
            }
        }
        assert_eq!(winners.len() as u64, SHARES, "every share is taken, once");
        let shares: std::collections::HashSet<u64> =
            winners.values().map(|(share, _)| *share).collect();
        assert_eq!(shares.len() as u64, SHARES, "no share went to two users");
        let total: u64 = winners.values().map(|(_, amount)| amount).sum();
        assert_eq!(total, AMOUNT, "the shares add up to what was funded");
        // The wallets agree with the answers.
        let mut paid_out = 0;
        for token in &tokens {
            let (_, wallet) = server.get_as(token, "/v1/me/wallet").await;
            paid_out += wallet["balance"].as_u64().unwrap();
        }
        assert_eq!(paid_out, AMOUNT);
        let (_, statement) = server.dev_get("/v1/apps/red-envelope/statement").await;
        assert_eq!(statement["balance"], 0, "{statement}");
        assert_balanced(server.platform.db()).await;
        server.stop().await;
        test_db
    })
    .await;
}

/// Deleting an app is refused while its merchant account holds money; once
/// it is empty the app goes with its subscriptions and queued events, its
/// unpaid orders are closed, its users keep their payment records, and its
/// appid is never registered again, so nobody inherits what names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_app_leaves_no_money_and_no_appid_behind() {
    on_each_engine(|_, test_db| async move {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(config(&test_db, dir.path())).await;
        server.deploy("shop", SHOP, sample_manifest("shop")).await;
        let alice = payer(&server, "alice", 10_000).await;
        let buy = || async {
            let (status, created) = server
                .post_as(
                    &alice,
                    "/apps/shop/orders",
                    json!({"product": "tea", "quantity": 1}),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED, "{created}");
            (
                created["out_trade_no"].as_str().unwrap().to_string(),
                created["prepay_id"].as_str().unwrap().to_string(),
            )
        };
        let (paid_no, paid) = buy().await;
        let (_, unpaid) = buy().await;
        let (status, body) = server
            .post_as(
                &alice,
                &format!("/v1/pay/orders/{paid}/confirm"),
                json!({"pin": PIN}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        subscribe_to_shipping(&server, &alice).await;

        // 1200 fen in the merchant account: refused, and nothing changed.
        let dev = server.developer().await;
        let (status, body) = server
            .send(Method::DELETE, "/v1/apps/shop", Some(&dev), None)
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("holds 1200 fen"), "{message}");
        let (status, shown) = server
            .get_as(&alice, &format!("/v1/pay/orders/{unpaid}"))
            .await;
        assert_eq!(
            (status, shown["state"].as_str()),
            (StatusCode::OK, Some("NOTPAY"))
        );
        assert_eq!(
            server.get("/apps/shop/products").await.status(),
            StatusCode::OK
        );

        // Refunded, the account is empty and the app can go.
        shop_order_becomes(&server, &alice, &paid_no, "paid").await;
        let (status, refund) = server
            .post_as(
                &alice,
                &format!("/apps/shop/orders/{paid_no}/refund"),
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{refund}");
        // The refund's event, delivered, is the last call writing the
        // shop's data.
        shop_order_becomes(&server, &alice, &paid_no, "refunded").await;
        let (status, body) = server
            .send(Method::DELETE, "/v1/apps/shop", Some(&dev), None)
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
        let (status, body) = server
            .post_as(
                &alice,
                &format!("/v1/pay/orders/{unpaid}/confirm"),
                json!({"pin": PIN}),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::CONFLICT,
            "an unpaid order is closed: {body}"
        );
        let (_, subscriptions) = server.get_as(&alice, "/v1/me/subscriptions").await;
        assert_eq!(subscriptions["subscriptions"], json!([]));
        let pool = sqlx::AnyPool::connect(&test_db.url).await.unwrap();
        for table in ["outbox", "msg_subscriptions", "kv"] {
            let left: i64 = sqlx::query_scalar(&format!(
                "SELECT COUNT(*) FROM {table} WHERE appid = 'shop'"
            ))
            .fetch_one(&pool)
            .await
            .unwrap();
            assert_eq!(left, 0, "{table} rows of the deleted app");
        }
        pool.close().await;
        // Alice's statement keeps her payment and its refund.
        let (_, wallet) = server.get_as(&alice, "/v1/me/wallet").await;
        assert_eq!(wallet["balance"], 10_000);
        let kinds: Vec<&str> = wallet["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["refund", "payment", "topup"]);

        // Nobody registers the appid again, not even its developer.
        let other = server.account("newcomer", &["developer"]).await;
        for token in [&other, &dev] {
            let (status, body) = server
                .post_as(token, "/v1/apps", json!({"appid": "shop", "name": "Shop"}))
                .await;
            assert_eq!(status, StatusCode::CONFLICT, "{body}");
            let message = body["error"]["message"].as_str().unwrap();
            assert!(message.contains("deleted app"), "{message}");
        }
        assert_balanced(server.platform.db()).await;
        server.stop().await;
        test_db
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_of_a_deleted_app_take_no_money() {
    on_each_engine(|engine, test_db| async move {
        let (db, payments) = payments(&test_db.url).await;
        let alice = 1;
        funded_payer(&payments, alice, 10_000).await;
        let open = payments
            .create_order(order("cafe", alice, "order-0001", 500))
            .await
            .unwrap();
        db.delete_app(&appid("cafe")).await.unwrap();

        // Its open order was closed with it.
        let err = payments.confirm(alice, &open, PIN).await.unwrap_err();
        assert!(matches!(err, PaymentError::Conflict(_)), "{err:?}");
        // A call still running asks for an order: refused, nothing stored.
        let err = payments
            .create_order(order("cafe", alice, "order-0002", 500))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, PaymentError::Denied(detail) if detail.contains("deleted")),
            "{err:?}"
        );
        assert!(
            db.order_by_number(&appid("cafe"), "order-0002")
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(
            balance(&payments, MoneyAccount::Wallet(alice)).await,
            10_000
        );
        assert_eq!(
            balance(&payments, MoneyAccount::Merchant(appid("cafe"))).await,
            0
        );
        assert_balanced(&db).await;

        // An order created while the delete starts: the delete waits for
        // it, then closes it with the app's other unpaid orders.
        if engine == "postgres" {
            register_apps(&db, &["tearoom"]).await;
            let pool = sqlx::AnyPool::connect(&test_db.url).await.unwrap();
            // The creation waits on an uncommitted row with its number, so
            // it is mid-transaction, holding the app.
            let mut holder = pool.begin().await.unwrap();
            sqlx::query(
                "INSERT INTO pay_orders (prepay_id, appid, out_trade_no, channel, payer_id, \
                 payer_openid, amount, description, attach, state, created_at, expires_at) \
                 VALUES ('wx-held', 'tearoom', 'order-0001', 'release', 1, 'openid-of-1', 500, \
                 'tea', '', 'NOTPAY', 0, 9000000000000)",
            )
            .execute(&mut *holder)
            .await
            .unwrap();
            let create = tokio::spawn({
                let payments = payments.clone();
                async move {
                    payments
                        .create_order(order("tearoom", alice, "order-0001", 500))
                        .await
                }
            });
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert!(
                !create.is_finished(),
                "the creation must wait on the held row"
            );
            let delete = tokio::spawn({
                let db = db.clone();
                async move { db.delete_app(&appid("tearoom")).await }
            });
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert!(
                !delete.is_finished(),
                "the delete must wait for the order being created"
            );
            holder.rollback().await.unwrap();
            let prepay = create.await.unwrap().unwrap();
            delete.await.unwrap().unwrap();
            let made = db
                .order_by_number(&appid("tearoom"), "order-0001")
                .await
                .unwrap()
                .unwrap();
            assert_eq!(made.state, OrderState::Closed);
            let err = payments.confirm(alice, &prepay, PIN).await.unwrap_err();
            assert!(matches!(err, PaymentError::Conflict(_)), "{err:?}");
            pool.close().await;
        }
        db.close().await;
        test_db
    })
    .await;
}
