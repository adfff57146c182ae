//! Calling mini-programs: the round trip, what the guest sees, usage records,
//! and resident memory over many calls.

use reqwest::StatusCode;
use serde_json::Value;

use miniapp::config::DEFAULT_CALL_RETENTION;
use miniapp::db::{CallRecord, call_id, now_ms};

use crate::support::{
    HELLO, HOSTILE, ProcessServer, TestServer, config, on_each_engine, password_of,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_round_trip_leaves_a_usage_record() {
    on_each_engine(|_, db| async move {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(config(&db, dir.path())).await;
        let uploaded = server.upload_ok("hello", HELLO).await;

        let root = server.get("/apps/hello/").await;
        assert_eq!(root.status(), StatusCode::OK);
        assert_eq!(
            root.headers()["content-security-policy"],
            "sandbox allow-scripts allow-forms allow-popups"
        );
        assert!(root.text().await.unwrap().contains("Hello from miniapp!"));

        let echo = server.get("/apps/hello/a/b?x=1&y=two").await;
        assert_eq!(echo.status(), StatusCode::OK);
        let record = server.call_record("hello", &echo).await;
        let body: Value = echo.json().await.unwrap();
        assert_eq!(body["method"], "GET");
        assert_eq!(body["path"], "/a/b");
        assert_eq!(body["query"], "x=1&y=two");

        let encoded = server.get("/apps/hello/a%2Fb%20c").await;
        let body: Value = encoded.json().await.unwrap();
        assert_eq!(
            body["path"], "/a%2Fb%20c",
            "the program decodes its own path"
        );

        let greet = server.get("/apps/hello/hello/ada").await;
        assert!(greet.text().await.unwrap().contains("ada"));

        assert_eq!(record["outcome"], "ok");
        assert_eq!(record["entry"], "request");
        assert_eq!(record["version"], uploaded);
        assert!(record["fuel_consumed"].as_i64().unwrap() > 0, "{record}");
        assert!(
            record["peak_memory_bytes"].as_i64().unwrap() > 0,
            "{record}"
        );
        assert!(
            record["host_calls"].as_i64().unwrap() >= 1,
            "the guest logged: {record}"
        );
        assert!(
            record["log"].as_str().unwrap().contains("info: "),
            "{record}"
        );

        let (status, listing) = server.dev_get("/v1/apps/hello/calls?limit=10").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(listing["calls"].as_array().unwrap().len(), 4);
        assert!(
            listing["calls"][0].get("log").is_none(),
            "listings leave logs out"
        );
        server.stop().await;
        db
    })
    .await;
}

/// The platform's credentials are the platform's: the guest never sees the
/// caller's `authorization` or `cookie` headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guests_never_see_the_callers_credentials() {
    on_each_engine(|_, db| async move {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(config(&db, dir.path())).await;
        server.upload_ok("hostile", HOSTILE).await;
        let session = server.account("caller", &[]).await;
        let response = server
            .client
            .get(server.url("/apps/hostile/headers"))
            .header("authorization", format!("Bearer {session}"))
            .header("cookie", "session=secret")
            .header("x-request-note", "visible")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        let names: Vec<&str> = body["names"].as_str().unwrap().split(',').collect();
        assert!(names.contains(&"x-request-note"), "{names:?}");
        assert!(!names.contains(&"authorization"), "{names:?}");
        assert!(!names.contains(&"cookie"), "{names:?}");
        server.stop().await;
        db
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_to_unknown_apps_and_oversized_bodies_are_refused() {
    on_each_engine(|_, db| async move {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config(&db, dir.path());
        config.max_request_bytes = 1024;
        let server = TestServer::start(config).await;

        let missing = server.get("/apps/nobody/").await;
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        let body: Value = missing.json().await.unwrap();
        assert_eq!(body["error"]["code"], "not_found");

        let invalid = server.get("/apps/..%2Fetc/").await;
        assert_eq!(invalid.status(), StatusCode::NOT_FOUND);

        server.upload_ok("hello", HELLO).await;
        let big = server
            .client
            .post(server.url("/apps/hello/echo"))
            .body(vec![b'x'; 1025])
            .send()
            .await
            .unwrap();
        assert_eq!(big.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let body: Value = big.json().await.unwrap();
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("1024 bytes")
        );
        let (_, listing) = server.dev_get("/v1/apps/hello/calls").await;
        assert_eq!(
            listing["calls"].as_array().unwrap().len(),
            0,
            "a refused request runs nothing"
        );

        let (status, body) = server.dev_get("/v1/apps/hello/calls/0000").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        let (status, _) = server.dev_get("/v1/apps/hello/calls?limit=0").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        server.stop().await;
        db
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness() {
    on_each_engine(|engine, db| async move {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(config(&db, dir.path())).await;
        assert_eq!(server.get("/healthz").await.status(), StatusCode::OK);
        let ready = server.get("/readyz").await;
        assert_eq!(ready.status(), StatusCode::OK);
        let body: Value = ready.json().await.unwrap();
        assert_eq!(body["status"], "ready");
        assert_eq!(body["database"], engine);
        server.stop().await;
        db
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_fails_while_the_database_is_unreachable() {
    on_each_engine(|_, db| async move {
        let dir = tempfile::tempdir().unwrap();
        let server = miniapp::Server::bind(&config(&db, dir.path()))
            .await
            .unwrap();
        let platform = server.platform().clone();
        let base = format!("http://{}", server.local_addr());
        let running = tokio::spawn(server.run(std::future::pending()));
        platform.db().close().await;
        let ready = reqwest::get(format!("{base}/readyz")).await.unwrap();
        assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body: Value = ready.json().await.unwrap();
        assert_eq!(body["status"], "database unavailable");
        let alive = reqwest::get(format!("{base}/healthz")).await.unwrap();
        assert_eq!(alive.status(), StatusCode::OK, "alive, just not ready");
        running.abort();
        db
    })
    .await;
}

/// A thousand calls in a row leave the server's resident memory where it
/// was: nothing of a call outlives it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_calls_in_a_row_do_not_grow_resident_memory() {
    on_each_engine(|_, db| async move {
        let dir = tempfile::tempdir().unwrap();
        let server = ProcessServer::spawn(&db, dir.path()).await;
        server.upload_ok("hello", HELLO).await;
        let call = |n: usize| {
            let client = server.client.clone();
            let url = server.url(&format!("/apps/hello/item/{n}?q={n}"));
            async move {
                let response = client.get(url).send().await.unwrap();
                assert_eq!(response.status(), StatusCode::OK);
                response.bytes().await.unwrap();
            }
        };
        for n in 0..300 {
            call(n).await;
        }
        let before = server.resident_bytes();
        for n in 0..1000 {
            call(n).await;
        }
        let after = server.resident_bytes();
        let growth = after.saturating_sub(before);
        // A leaked instance would cost at least a memory image per call
        // (over 1 MiB each); allow 8 KiB a call for allocator and page-cache noise.
        assert!(
            growth < 8 << 20,
            "resident memory grew by {growth} bytes (from {before} to {after})"
        );
        db
    })
    .await;
}

/// SIGTERM lets in-flight calls finish and writes their usage records
/// before the process exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_calls_and_keeps_their_usage() {
    on_each_engine(|_, db| async move {
        let dir = tempfile::tempdir().unwrap();
        let mut server = ProcessServer::spawn(&db, dir.path()).await;
        // The most fuel the platform allows, and a deadline that comes well
        // before the spin can burn it (a 2026 AMD EPYC core burned all 20
        // billion in under 1.5 s) while the call is still running when the
        // signal comes.
        let limits = serde_json::json!({"fuel": 20_000_000_000u64, "deadline_ms": 700});
        server
            .deploy(
                "hostile",
                HOSTILE,
                serde_json::json!({"name": "hostile", "version": "1", "limits": limits}),
            )
            .await;

        let in_flight = tokio::spawn(server.client.get(server.url("/apps/hostile/spin")).send());
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let pid = server.child.id().unwrap().to_string();
        let kill = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(kill.success());

        let response = in_flight
            .await
            .unwrap()
            .expect("the in-flight call gets its answer");
        assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
        let exit = server.child.wait().await.unwrap();
        assert!(exit.success(), "graceful exit: {exit:?}");

        let stored = miniapp::db::Db::connect(&db.url).await.unwrap();
        let calls = stored
            .recent_calls(&"hostile".parse().unwrap(), 10)
            .await
            .unwrap();
        assert_eq!(
            calls.len(),
            1,
            "the in-flight call's usage was written before exit"
        );
        assert_eq!(calls[0].outcome, "deadline");
        stored.close().await;
        db
    })
    .await;
}

/// Usage records and their logs are kept for the retention period (7 days
/// by default), then deleted app by app, a chunk at a time, records of an
/// app deleted since included; the node that delivers events sweeps them on
/// start and once a minute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_records_are_forgotten_after_their_retention() {
    on_each_engine(|_, db| async move {
        let dir = tempfile::tempdir().unwrap();
        let first = TestServer::start(config(&db, dir.path())).await;
        let version = first.upload_ok("hello", HELLO).await;
        first.upload_ok("hello-too", HELLO).await;
        let fresh = first.get("/apps/hello/").await;
        let fresh = first.call_record("hello", &fresh).await["id"]
            .as_str()
            .unwrap()
            .to_string();

        let store = first.platform.db().clone();
        let cutoff = now_ms() - DEFAULT_CALL_RETENTION.as_millis() as i64;
        let record = |appid: &str, at: i64| usage_record(appid, version, at);
        // Seven rows of one app, each written alone, so they go in
        // statements of three rows; one row of each other app.
        for ms in 1..=7 {
            store
                .insert_calls(&[record("hello", cutoff - ms)])
                .await
                .unwrap();
        }
        // The second written by a call that finished as its app was deleted.
        store
            .insert_calls(&[
                record("hello-too", cutoff - 1),
                record("deleted", cutoff - 1),
            ])
            .await
            .unwrap();
        // One row holding a record on each side of the cutoff: rewritten
        // with the later one alone.
        let at_cutoff = record("hello", cutoff);
        store
            .insert_calls(&[record("hello", cutoff - 8), at_cutoff.clone()])
            .await
            .unwrap();

        assert_eq!(store.forget_calls(cutoff, 3).await.unwrap(), 10);
        assert_eq!(store.forget_calls(cutoff, 3).await.unwrap(), 0);
        let ids = |listing: Value| -> Vec<String> {
            listing["calls"]
                .as_array()
                .unwrap()
                .iter()
                .map(|call| call["id"].as_str().unwrap().to_string())
                .collect()
        };
        let (status, listing) = first.dev_get("/v1/apps/hello/calls?limit=100").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(ids(listing), [fresh.clone(), at_cutoff.id.clone()]);
        let (_, listing) = first.dev_get("/v1/apps/hello-too/calls?limit=100").await;
        assert!(ids(listing).is_empty());

        // The server sweeps on its own: on start, then once a minute.
        store
            .insert_calls(&[record("hello", cutoff - 60_000)])
            .await
            .unwrap();
        first.stop().await;
        let second = TestServer::start(config(&db, dir.path())).await;
        let dev = second.login("dev", &password_of("dev")).await;
        let started = std::time::Instant::now();
        loop {
            let (_, listing) = second.get_as(&dev, "/v1/apps/hello/calls?limit=100").await;
            let ids = ids(listing);
            if ids == [fresh.clone()] {
                break;
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(10),
                "old records still listed: {ids:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        second.stop().await;
        db
    })
    .await;
}

/// The usage recorder writes a batch of records as rows of up to 64 per
/// statement, and retries a failed batch whole: so a batch that needs
/// several statements is one transaction, all or nothing, and a retry never
/// meets half of itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_usage_records_is_written_whole_or_not_at_all() {
    on_each_engine(|_, db| async move {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(config(&db, dir.path())).await;
        let store = server.platform.db().clone();
        let appid = "batched".parse().unwrap();
        let start = now_ms();
        // 4,096 ms apart: a row each.
        let record = |n: i64| usage_record("batched", 1, start + n * 4096);
        let last = record(299);
        store
            .insert_calls(std::slice::from_ref(&last))
            .await
            .unwrap();

        // 300 rows: statements of 64, 64, 64, 64, then 32, 8 and 4; the
        // last row repeats the record already stored, so the last
        // statement fails.
        let mut batch: Vec<_> = (0..299).map(record).collect();
        batch.push(last.clone());
        assert!(store.insert_calls(&batch).await.is_err());
        let stored = store.recent_calls(&appid, 1000).await.unwrap();
        assert_eq!(stored.len(), 1, "a failed batch left records behind");
        assert_eq!(stored[0].id, last.id);

        // Without the repeat the same records go in, every one of them.
        batch.pop();
        store.insert_calls(&batch).await.unwrap();
        assert_eq!(store.recent_calls(&appid, 1000).await.unwrap().len(), 300);
        server.stop().await;
        db
    })
    .await;
}

/// Rows of records overlap in time: a slow call's record is written after
/// those of calls that started later. Listings still come newest first
/// across rows, and every record is found by its id, with its log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_records_are_listed_newest_first_and_found_across_rows() {
    on_each_engine(|_, db| async move {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(config(&db, dir.path())).await;
        let store = server.platform.db().clone();
        let appid = "rows".parse().unwrap();
        let start = now_ms();
        let record = |ms: i64, log: &str| CallRecord {
            log: log.into(),
            ..usage_record("rows", 1, start + ms)
        };
        let first: Vec<_> = (0..10).map(|ms| record(ms, "first write")).collect();
        store.insert_calls(&first).await.unwrap();
        // A call that started at 5 ms finished after the first write.
        let slow = record(5, "slow\ncall");
        let newest = record(20, "second write");
        store
            .insert_calls(&[slow.clone(), newest.clone()])
            .await
            .unwrap();

        let listed: Vec<String> = store
            .recent_calls(&appid, 4)
            .await
            .unwrap()
            .into_iter()
            .map(|call| call.id)
            .collect();
        let mut expected: Vec<String> = first
            .iter()
            .chain([&slow, &newest])
            .map(|call| call.id.clone())
            .collect();
        expected.sort_unstable_by(|a, b| b.cmp(a));
        expected.truncate(4);
        assert_eq!(listed, expected);
        let all = store.recent_calls(&appid, 100).await.unwrap();
        assert_eq!(all.len(), 12);
        assert!(
            all.iter().all(|call| call.log.is_none()),
            "listings carry no logs"
        );

        for call in first.iter().chain([&slow, &newest]) {
            let found = store.call(&appid, &call.id).await.unwrap().unwrap();
            assert_eq!(found.id, call.id);
            assert_eq!(found.log.as_deref(), Some(call.log.as_str()));
            assert_eq!(found.started_at, call.started_at);
        }
        let unknown = call_id(start + 5);
        assert!(store.call(&appid, &unknown).await.unwrap().is_none());
        assert!(store.call(&appid, "not-an-id").await.unwrap().is_none());
        let other_app = "hello".parse().unwrap();
        assert!(store.call(&other_app, &slow.id).await.unwrap().is_none());
        server.stop().await;
        db
    })
    .await;
}

/// Usage records stored a row per call, before they were stored in
/// batches, are moved into batches by the migration and read back as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_stored_a_row_per_call_survive_the_move_to_batches() {
    on_each_engine(|engine, db| async move {
        sqlx::any::install_default_drivers();
        let url = match engine {
            "sqlite" => format!("{}?mode=rwc", db.url),
            _ => db.url.clone(),
        };
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await
            .unwrap();
        let mut before = match engine {
            "sqlite" => sqlx::migrate!("migrations/sqlite"),
            _ => sqlx::migrate!("migrations/postgres"),
        };
        before.migrations = before
            .migrations
            .iter()
            .filter(|migration| migration.version < 8)
            .cloned()
            .collect::<Vec<_>>()
            .into();
        before.run(&pool).await.unwrap();
        let start = now_ms();
        let old: Vec<_> = (0..3)
            .map(|n| CallRecord {
                detail: (n == 1).then(|| "unreachable executed".to_string()),
                log: format!("info: call {n}\n\"quoted\""),
                ..usage_record("legacy", 2, start + n * 5000)
            })
            .collect();
        for call in &old {
            sqlx::query(
                "INSERT INTO calls (id, appid, version, entry, started_at, fuel_consumed, \
                 wall_time_us, peak_memory_bytes, host_calls, outcome, detail, log) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            )
            .bind(&call.id)
            .bind(call.appid.as_str())
            .bind(call.version)
            .bind(call.entry)
            .bind(call.started_at)
            .bind(call.fuel_consumed as i64)
            .bind(call.wall_time_us as i64)
            .bind(call.peak_memory_bytes as i64)
            .bind(call.host_calls as i64)
            .bind(call.outcome)
            .bind(call.detail.as_deref())
            .bind(&call.log)
            .execute(&pool)
            .await
            .unwrap();
        }
        pool.close().await;

        let store = miniapp::db::Db::connect(&db.url).await.unwrap();
        let appid = "legacy".parse().unwrap();
        let listed = store.recent_calls(&appid, 10).await.unwrap();
        let ids: Vec<&str> = listed.iter().map(|call| call.id.as_str()).collect();
        assert_eq!(ids, [&old[2].id, &old[1].id, &old[0].id]);
        for call in &old {
            let found = store.call(&appid, &call.id).await.unwrap().unwrap();
            assert_eq!(found.log.as_deref(), Some(call.log.as_str()));
            assert_eq!(found.detail, call.detail);
            assert_eq!(
                (found.version, found.fuel_consumed, found.outcome.as_str()),
                (2, call.fuel_consumed as i64, call.outcome)
            );
        }
        store.close().await;
        db
    })
    .await;
}

/// A successful call's usage record, made at `at_ms`, as the recorder writes it.
fn usage_record(appid: &str, version: i64, at_ms: i64) -> CallRecord {
    CallRecord {
        id: call_id(at_ms),
        appid: appid.parse().unwrap(),
        version,
        entry: "request",
        started_at: at_ms,
        fuel_consumed: 1,
        wall_time_us: 1,
        peak_memory_bytes: 0,
        host_calls: 0,
        outcome: "ok",
        detail: None,
        log: "info: a call".into(),
    }
}
