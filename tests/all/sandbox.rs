//! The sandbox: hostile guests end in typed outcomes, recorded in usage, while
//! other calls go on; WASI gives nothing away.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{HELLO, HOSTILE, TestServer, config, on_each_engine};

/// Asserts the call failed with `status` and `code`, and that its usage
/// record says the same outcome. Returns the usage record.
async fn assert_outcome(server: &TestServer, path: &str, status: StatusCode, code: &str) -> Value {
    let response = server.get(&format!("/apps/hostile{path}")).await;
    assert_eq!(response.status(), status, "{path}");
    let record = server.call_record("hostile", &response).await;
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], code, "{body}");
    assert_eq!(record["outcome"], code, "{record}");
    record
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infinite_loop_stops_at_the_deadline_while_other_calls_are_served() {
    on_each_engine(|_, db| async move {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(config(&db, dir.path())).await;
        // Fuel far beyond what 500 ms can burn, so the deadline is what stops it.
        let limits = json!({"fuel": 20_000_000_000u64, "deadline_ms": 500});
        server
            .deploy(
                "hostile",
                HOSTILE,
                json!({"name": "hostile", "version": "1", "limits": limits}),
            )
            .await;
        server.upload_ok("hello", HELLO).await;

        let spinners: Vec<_> = (0..2)
            .map(|_| {
                let client = server.client.clone();
                let url = server.url("/apps/hostile/spin");
                tokio::spawn(async move {
                    let started = Instant::now();
                    let response = client.get(url).send().await.unwrap();
                    (started.elapsed(), response)
                })
            })
            .collect();
        // Both workers' worth of spinning guests, and still other calls are served.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut served_meanwhile = 0;
        while spinners.iter().any(|spinner| !spinner.is_finished()) {
            let response = server.get("/apps/hello/").await;
            assert_eq!(response.status(), StatusCode::OK);
            served_meanwhile += 1;
        }
        assert!(
            served_meanwhile >= 5,
            "only {served_meanwhile} calls served during the spin"
        );

        for spinner in spinners {
            let (elapsed, response) = spinner.await.unwrap();
            assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
            assert!(
                elapsed < Duration::from_millis(600),
                "stopped after {elapsed:?}, deadline 500 ms"
            );
            let record = server.call_record("hostile", &response).await;
            assert_eq!(record["outcome"], "deadline");
            assert!(
                record["wall_time_us"].as_i64().unwrap() >= 500_000,
                "{record}"
            );
        }
        server.stop().await;
        db
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_bomb_hits_the_memory_limit() {
    on_each_engine(|_, db| async move {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(config(&db, dir.path())).await;
        server.upload_ok("hostile", HOSTILE).await;
        let record = assert_outcome(
            &server,
            "/grow",
            StatusCode::SERVICE_UNAVAILABLE,
            "memory_limit",
        )
        .await;
        let peak = record["peak_memory_bytes"].as_i64().unwrap();
        assert!(peak <= 64 << 20, "peak {peak} over the 64 MiB default");
        assert!(
            peak > 32 << 20,
            "the bomb got close to the limit first: {peak}"
        );
        server.stop().await;
        db
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbounded_recursion_traps() {
    on_each_engine(|_, db| async move {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(config(&db, dir.path())).await;
        server.upload_ok("hostile", HOSTILE).await;
        let record = assert_outcome(&server, "/recurse", StatusCode::BAD_GATEWAY, "trap").await;
        assert!(
            record["detail"].as_str().unwrap().contains("stack"),
            "{record}"
        );
        // The trap took only its own instance down.
        assert_eq!(
            server.get("/apps/hostile/burn?n=10").await.status(),
            StatusCode::OK
        );
        server.stop().await;
        db
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuel_burner_runs_out_of_fuel() {
    on_each_engine(|_, db| async move {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(config(&db, dir.path())).await;
        let limits = json!({"fuel": 5_000_000, "deadline_ms": 10_000});
        server
            .deploy(
                "hostile",
                HOSTILE,
                json!({"name": "hostile", "version": "1", "limits": limits}),
            )
            .await;
        let small = server.get("/apps/hostile/burn?n=1000").await;
        assert_eq!(
            small.status(),
            StatusCode::OK,
            "finite work within budget completes"
        );
        let record = assert_outcome(
            &server,
            "/burn?n=1000000000",
            StatusCode::SERVICE_UNAVAILABLE,
            "out_of_fuel",
        )
        .await;
        assert_eq!(
            record["fuel_consumed"], 5_000_000,
            "the whole budget, and not one instruction more"
        );
        server.stop().await;
        db
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasi_probes_get_nothing() {
    on_each_engine(|_, db| async move {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(config(&db, dir.path())).await;
        server.upload_ok("hostile", HOSTILE).await;
        let probe = |path: &'static str| {
            let server = &server;
            async move {
                let response = server.get(&format!("/apps/hostile{path}")).await;
                assert_eq!(response.status(), StatusCode::OK, "{path}");
                response.json::<Value>().await.unwrap()
            }
        };
        let files = probe("/wasi/file").await;
        assert_eq!(files["preopens"], 0, "{files}");
        assert_eq!(files["opened"], false, "{files}");
        let env = probe("/wasi/env").await;
        assert_eq!(env["env"], 0, "{env}");
        assert_eq!(env["args"], 0, "{env}");
        let net = probe("/wasi/socket").await;
        assert_eq!(net["connected"], false, "{net}");
        assert!(
            net["lookup"].as_str().unwrap().starts_with("error"),
            "{net}"
        );
        // What is allowed works: clocks and random numbers.
        let clock = probe("/wasi/clock").await;
        assert!(
            clock["wall_clock_seconds"].as_u64().unwrap() > 1_700_000_000,
            "{clock}"
        );
        assert_eq!(clock["random_bytes"], 16, "{clock}");
        server.stop().await;
        db
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdout_stderr_and_log_are_captured_and_bounded() {
    on_each_engine(|_, db| async move {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(config(&db, dir.path())).await;
        server.upload_ok("hostile", HOSTILE).await;

        let small = server.get("/apps/hostile/print?bytes=100").await;
        assert_eq!(small.status(), StatusCode::OK);
        let record = server.call_record("hostile", &small).await;
        let log = record["log"].as_str().unwrap();
        assert!(!log.contains("truncated"), "{log}");
        assert!(log.len() >= 200, "stdout and stderr both captured: {log:?}");

        let flood = server.get("/apps/hostile/print?bytes=200000").await;
        assert_eq!(
            flood.status(),
            StatusCode::OK,
            "logging too much never fails the call"
        );
        let record = server.call_record("hostile", &flood).await;
        let log = record["log"].as_str().unwrap();
        assert!(
            log.len() <= (64 << 10) + 100,
            "log bounded: {} bytes",
            log.len()
        );
        assert!(
            log.trim_end().ends_with("more bytes dropped]"),
            "truncation marked"
        );
        server.stop().await;
        db
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_default_limits_apply_to_apps_without_their_own() {
    on_each_engine(|_, db| async move {
        let dir = tempfile::tempdir().unwrap();
        let mut quick = config(&db, dir.path());
        quick.limits.default_deadline_ms = 200;
        quick.limits.default_fuel = 20_000_000_000;
        let server = TestServer::start(quick.clone()).await;
        server.upload_ok("hostile", HOSTILE).await;
        let record =
            assert_outcome(&server, "/spin", StatusCode::GATEWAY_TIMEOUT, "deadline").await;
        let wall_us = record["wall_time_us"].as_i64().unwrap();
        assert!(
            (200_000..1_000_000).contains(&wall_us),
            "the 200 ms platform default applied: {record}"
        );
        server.stop().await;

        let mut misconfigured = quick;
        misconfigured.limits.default_memory_bytes = misconfigured.limits.max_memory_bytes + 1;
        let err = match miniapp::Server::bind(&misconfigured).await {
            Ok(_) => panic!("defaults above the maxima must not start"),
            Err(err) => err.to_string(),
        };
        assert!(err.contains("memory_bytes"), "{err}");
        db
    })
    .await;
}

/// What a guest answers is checked before it reaches the user: statuses out
/// of range are a fault, and headers the platform owns are dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_responses_are_checked_before_they_reach_the_user() {
    on_each_engine(|_, db| async move {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(config(&db, dir.path())).await;
        server.upload_ok("hostile", HOSTILE).await;

        for status in [700, 99] {
            let record = assert_outcome(
                &server,
                &format!("/respond?status={status}"),
                StatusCode::BAD_GATEWAY,
                "trap",
            )
            .await;
            assert!(
                record["detail"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("invalid response status {status}")),
                "{record}"
            );
        }

        let header = |name: &'static str, value: &'static str| {
            let server = &server;
            async move {
                let response = server
                    .get(&format!("/apps/hostile/respond?name={name}&value={value}"))
                    .await;
                assert_eq!(response.status(), StatusCode::OK, "{name}");
                response.headers().clone()
            }
        };
        assert!(
            header("set-cookie", "session%3Dstolen")
                .await
                .get("set-cookie")
                .is_none()
        );
        let csp = header("content-security-policy", "default-src%20*").await;
        assert_eq!(csp.get_all("content-security-policy").iter().count(), 1);
        assert!(
            csp["content-security-policy"]
                .to_str()
                .unwrap()
                .starts_with("sandbox")
        );
        assert!(header("bad%20name", "x").await.get("bad name").is_none());
        assert!(
            header("transfer-encoding", "chunked")
                .await
                .get("transfer-encoding")
                .is_none()
        );
        assert_eq!(header("x-fine", "yes").await["x-fine"], "yes");
        server.stop().await;
        db
    })
    .await;
}
