//! Payments on this machine, on SQLite and (with
//! `MINIAPP_BENCH_DATABASE_URL`, a server URL such as
//! `postgres://postgres@127.0.0.1:5432/postgres`) on PostgreSQL:
//!
//! - confirmed payments per second: users confirming their orders with
//!   their PIN, 32 at a time, each confirmation one settlement transaction
//!   (order paid, wallet debited, merchant credited, two ledger entries,
//!   the result queued), on a node that delivers no events (the results
//!   wait in the outbox for a dispatching node). Each payer's PIN was
//!   verified once before, as a user who pays again soon is: the figure is
//!   settlement, not argon2.
//! - the red-envelope grab storm: 1,000 users grab one envelope of 500
//!   shares at once through the `red-envelope` sample (a fresh instance
//!   per grab, storage and payout through the host); the latency of every
//!   grab, p50 and p99.
//!
//! Run: `cargo bench --bench payment`. Prints the median of 5 rounds.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use miniapp::accounts::{Account, Role, Roles};
use miniapp::config::ServeConfig;
use miniapp::domain::AppId;
use miniapp::payment::{NewOrder, Pin};
use miniapp::platform::{Channel, Platform};
use miniapp::runtime::{Invocation, Reply, Request};

use support::median;

const PIN: &str = "274901";
const PAYERS: usize = 100;
const ROUNDS: usize = 5;
const PAYMENTS_PER_ROUND: usize = 2000;
const CONCURRENCY: usize = 32;
const GRABBERS: usize = 1000;
const SHARES: u64 = 500;

/// Accounts made straight in the database: their password is never used.
async fn accounts(platform: &Platform, prefix: &str, n: usize) -> Vec<Account> {
    let mut made = Vec::with_capacity(n);
    for i in 0..n {
        let username = format!("{prefix}{i}").parse().unwrap();
        let account = platform
            .db()
            .create_account(&username, "unused", "", "", &Roles::new(Vec::<Role>::new()))
            .await
            .unwrap()
            .unwrap();
        made.push(account);
    }
    made
}

fn request(method: &str, path: &str, body: &str) -> Invocation {
    Invocation::Request(Request {
        method: method.into(),
        path: path.into(),
        query: String::new(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.as_bytes().to_vec(),
    })
}

async fn call(
    platform: &Platform,
    appid: &AppId,
    caller: &Account,
    invocation: Invocation,
) -> (u16, serde_json::Value) {
    let invoked = platform
        .invoke(appid, Channel::Release, Some(caller), invocation)
        .await
        .unwrap();
    match invoked.report.reply {
        Some(Reply::Response(response)) => (
            response.status,
            serde_json::from_slice(&response.body).unwrap_or_default(),
        ),
        other => panic!(
            "{other:?}: {:?} {}",
            invoked.report.outcome, invoked.report.log
        ),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

async fn confirmations(platform: &Arc<Platform>, payers: &[Account]) -> f64 {
    let payments = platform.payments();
    let shop: AppId = "bench-shop".parse().unwrap();
    let mut rates = Vec::new();
    for round in 0..ROUNDS {
        let mut orders = Vec::with_capacity(PAYMENTS_PER_ROUND);
        for n in 0..PAYMENTS_PER_ROUND {
            let payer = &payers[n % payers.len()];
            let prepay = payments
                .create_order(NewOrder {
                    appid: shop.clone(),
                    channel: "release".into(),
                    payer_id: payer.id,
                    payer_openid: format!("bench-{}", payer.id),
                    out_trade_no: format!("r{round}-o{n:06}"),
                    amount: 100,
                    description: "bench".into(),
                    attach: String::new(),
                    ttl: Duration::from_secs(3600),
                })
                .await
                .unwrap();
            orders.push((payer.id, prepay));
        }
        let orders = Arc::new(orders);
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let started = Instant::now();
        let workers = (0..CONCURRENCY).map(|_| {
            let (platform, orders, next) = (platform.clone(), orders.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some((payer, prepay)) = orders.get(n) else {
                        return;
                    };
                    platform
                        .payments()
                        .confirm(*payer, prepay, PIN)
                        .await
                        .unwrap();
                }
            })
        });
        join_all(workers).await;
        rates.push(PAYMENTS_PER_ROUND as f64 / started.elapsed().as_secs_f64());
    }
    median(rates)
}

async fn grab_storm(platform: &Arc<Platform>, funder: &Account, round: usize) -> Vec<Duration> {
    let appid: AppId = "red-envelope".parse().unwrap();
    let body = format!(r#"{{"amount": {}, "shares": {SHARES}}}"#, SHARES * 100);
    let (status, created) = call(
        platform,
        &appid,
        funder,
        request("POST", "/envelopes", &body),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let envelope = created["envelope"].as_u64().unwrap();
    let prepay = created["prepay_id"].as_str().unwrap();
    platform
        .payments()
        .confirm(funder.id, prepay, PIN)
        .await
        .unwrap();
    loop {
        let path = format!("/envelopes/{envelope}");
        let (_, shown) = call(platform, &appid, funder, request("GET", &path, "")).await;
        if shown["funded"] == true {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let grabbers = Arc::new(accounts(platform, &format!("grabber{round}-"), GRABBERS).await);
    let path = Arc::new(format!("/envelopes/{envelope}/grab"));
    let grabs = (0..GRABBERS).map(|n| {
        let (platform, grabbers, path, appid) = (
            platform.clone(),
            grabbers.clone(),
            path.clone(),
            appid.clone(),
        );
        tokio::spawn(async move {
            let started = Instant::now();
            let (status, body) =
                call(&platform, &appid, &grabbers[n], request("POST", &path, "")).await;
            assert!(matches!(status, 200 | 410), "{status} {body}");
            started.elapsed()
        })
    });
    let mut latencies: Vec<Duration> = join_all(grabs)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    latencies.sort();
    latencies
}

async fn run(engine: &str, url: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServeConfig::with_data_dir(dir.path().to_path_buf());
    config.database_url = Some(url.to_string());
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.admin_password = Some("bench-admin-password".into());
    config.samples = true;
    // Confirmations on a node that serves requests and delivers no events
    // (`--no-event-dispatch`): the figure is settlement alone.
    config.no_event_dispatch = true;
    let server = miniapp::Server::bind(&config).await.unwrap();
    let platform = server.platform().clone();
    support::register_apps(platform.db(), &["bench-shop"]).await;

    let payers = accounts(&platform, "payer", PAYERS).await;
    for payer in &payers {
        platform
            .payments()
            .top_up(payer.id, 100_000_000)
            .await
            .unwrap();
        platform
            .payments()
            .set_pin(payer.id, Pin::parse(PIN).unwrap())
            .await
            .unwrap();
    }
    // Each payer pays once first, which verifies their PIN with argon2.
    let warm = confirmations_warmup(&platform, &payers).await;
    let rate = confirmations(&platform, &payers).await;
    println!(
        "{engine:<10} confirmed payments  {rate:>7.0}/s  ({CONCURRENCY} at a time, median of {ROUNDS} rounds of {PAYMENTS_PER_ROUND}; first payments with argon2: {warm:.0}/s)"
    );

    platform.shutdown().await;
    platform.db().close().await;
    drop((server, platform));

    // The grab storm on a node that delivers events too: the envelope is
    // funded when its payment's event reaches the program.
    config.no_event_dispatch = false;
    let server = miniapp::Server::bind(&config).await.unwrap();
    let platform = server.platform().clone();
    let funder = &payers[0];
    let mut p50s = Vec::new();
    let mut p99s = Vec::new();
    let mut totals = Vec::new();
    for round in 0..ROUNDS {
        let started = Instant::now();
        let latencies = grab_storm(&platform, funder, round).await;
        totals.push(started.elapsed().as_secs_f64());
        p50s.push(percentile(&latencies, 0.50).as_secs_f64() * 1e3);
        p99s.push(percentile(&latencies, 0.99).as_secs_f64() * 1e3);
    }
    println!(
        "{engine:<10} grab storm          p50 {:>6.0} ms, p99 {:>6.0} ms  ({GRABBERS} grabs of {SHARES} shares at once, median of {ROUNDS} rounds)",
        median(p50s),
        median(p99s),
    );
    let (sum, lowest, _) = platform.db().ledger_check().await.unwrap();
    assert_eq!((sum, lowest >= 0), (0, true), "the ledger must balance");
    platform.shutdown().await;
    platform.db().close().await;
}

/// One payment per payer, each verifying a PIN with argon2; returns the rate.
async fn confirmations_warmup(platform: &Arc<Platform>, payers: &[Account]) -> f64 {
    let payments = platform.payments();
    let shop: AppId = "bench-shop".parse().unwrap();
    let mut orders = Vec::new();
    for payer in payers {
        let prepay = payments
            .create_order(NewOrder {
                appid: shop.clone(),
                channel: "release".into(),
                payer_id: payer.id,
                payer_openid: format!("bench-{}", payer.id),
                out_trade_no: format!("warm-{:06}", payer.id),
                amount: 100,
                description: "bench".into(),
                attach: String::new(),
                ttl: Duration::from_secs(3600),
            })
            .await
            .unwrap();
        orders.push((payer.id, prepay));
    }
    let started = Instant::now();
    join_all(
        orders
            .iter()
            .map(|(payer, prepay)| payments.confirm(*payer, prepay, PIN)),
    )
    .await
    .into_iter()
    .for_each(|result| {
        result.unwrap();
    });
    payers.len() as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    // `cargo bench` passes `--bench`; anything else is a filter we do not take.
    support::on_each_engine(
        "payment",
        |engine, url| async move { run(engine, &url).await },
    );
}
