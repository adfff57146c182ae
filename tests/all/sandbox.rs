//! The sandbox: hostile guests end in typed outcomes, recorded in usage, while
//! other calls go on; WASI gives nothing away.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{HELLO, HOSTILE, TestServer, config, manifest, on_each_engine};

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

/// Nothing of a call survives it: every call starts from the program's
/// image, its memory and globals as the binary defines them, in whichever
/// layout the toolchain linked (a module defining its own memory, as most
/// do, or importing it, as the samples do), and the host lowers the request
/// into either memory and lifts the response out of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_starts_from_the_programs_image() {
    on_each_engine(|_, db| async move {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(config(&db, dir.path())).await;
        for (appid, layout) in [
            ("own-memory", MemoryLayout::Defined),
            ("imported-memory", MemoryLayout::Imported),
        ] {
            server
                .upload_ok(appid, &counting_component(layout, 0))
                .await;
            // One after another, so each call reuses the slot the last one
            // dirtied.
            for _ in 0..3 {
                let response = server.get(&format!("/apps/{appid}/count/me")).await;
                assert_eq!(response.status(), StatusCode::OK, "{appid}");
                let record = server.call_record(appid, &response).await;
                assert_eq!(
                    response.text().await.unwrap(),
                    "11 /count/me",
                    "{appid}: the counters in memory and in a global start at 0 each call"
                );
                assert!(
                    record["log"].as_str().unwrap().contains("counted a call"),
                    "{appid}: {record}"
                );
            }
        }
        server.stop().await;
        db
    })
    .await;
}

/// The instance pool holds, for every call slot, the most memories a call
/// may define: with one slot, a program with that many runs, call after
/// call. One memory more is refused at upload, naming the count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_gets_every_memory_it_may_define_and_no_more() {
    on_each_engine(|_, db| async move {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = config(&db, dir.path());
        settings.max_concurrent_calls = 1;
        let server = TestServer::start(settings).await;
        let most = miniapp::runtime::MEMORIES_PER_CALL;
        let widest = counting_component(MemoryLayout::Defined, most - 1);
        server.upload_ok("widest", &widest).await;
        for _ in 0..3 {
            let response = server.get("/apps/widest/count").await;
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(response.text().await.unwrap(), "11 /count");
        }
        let wider = counting_component(MemoryLayout::Defined, most);
        let response = server.upload("wider", &manifest("wider"), &wider).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let body: Value = response.json().await.unwrap();
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("contains {} Wasm linear memories", most + 1)),
            "{message}"
        );
        let (status, app) = server.dev_get("/v1/apps/wider").await;
        assert_eq!(status, StatusCode::OK, "{app}");
        assert_eq!(
            app["versions"],
            json!([]),
            "the refused upload stored nothing"
        );
        server.stop().await;
        db
    })
    .await;
}

#[derive(Clone, Copy)]
enum MemoryLayout {
    /// The core module defines its memory: imports that read it (`log`)
    /// are called through a table filled in after the module is
    /// instantiated, as wit-component lays out most programs.
    Defined,
    /// A module of its own defines the memory and the program imports it.
    Imported,
}

/// A program that counts its calls in a byte of memory (initialised by a
/// data segment) and in a mutable global, logs a line, and answers both
/// counts and its path: `11 /path` when the call starts fresh.
fn counting_component(layout: MemoryLayout, spare_memories: u32) -> Vec<u8> {
    let memory = match layout {
        MemoryLayout::Defined => r#"(memory (export "memory") 1)"#,
        MemoryLayout::Imported => r#"(import "env" "memory" (memory 1))"#,
    };
    // Memory map: the response record at 8, the event result at 28, the
    // log line at 48, the memory counter at 63, the body from 256, and
    // what the host allocates (the request) from 1024.
    let main = format!(
        r#"(core module $Main
            (import "log" "write" (func $write (param i32 i32 i32)))
            {memory}
            (global $calls (mut i32) (i32.const 0))
            (global $next (mut i32) (i32.const 1024))
            (data (i32.const 48) "counted a call")
            (data (i32.const 63) "0")
            (func (export "cabi_realloc")
                (param i32 i32) (param $align i32) (param $size i32) (result i32)
                (local $at i32)
                (local.set $at (i32.and
                    (i32.add (global.get $next) (i32.sub (local.get $align) (i32.const 1)))
                    (i32.sub (i32.const 0) (local.get $align))))
                (global.set $next (i32.add (local.get $at) (local.get $size)))
                (if (i32.gt_u (global.get $next) (i32.const 65536)) (then unreachable))
                (local.get $at))
            (func (export "handle")
                (param i32 i32) (param $path i32) (param $path_len i32)
                (param i32 i32 i32 i32 i32 i32) (result i32)
                (call $write (i32.const 2) (i32.const 48) (i32.const 14))
                (i32.store8 (i32.const 63) (i32.add (i32.load8_u (i32.const 63)) (i32.const 1)))
                (global.set $calls (i32.add (global.get $calls) (i32.const 1)))
                (i32.store8 (i32.const 256) (i32.load8_u (i32.const 63)))
                (i32.store8 (i32.const 257) (i32.add (i32.const 48) (global.get $calls)))
                (i32.store8 (i32.const 258) (i32.const 32))
                (if (i32.gt_u (local.get $path_len) (i32.const 700)) (then unreachable))
                (memory.copy (i32.const 259) (local.get $path) (local.get $path_len))
                (i32.store16 (i32.const 8) (i32.const 200))
                (i32.store (i32.const 12) (i32.const 0))
                (i32.store (i32.const 16) (i32.const 0))
                (i32.store (i32.const 20) (i32.const 256))
                (i32.store (i32.const 24) (i32.add (local.get $path_len) (i32.const 3)))
                (i32.const 8))
            (func (export "on-event") (param i32 i32 i32 i32 i32 i32) (result i32)
                (i32.store8 (i32.const 28) (i32.const 0))
                (i32.const 28)))"#
    );
    let instances = match layout {
        MemoryLayout::Defined => {
            r#"(core module $Shim
                (type $write (func (param i32 i32 i32)))
                (table (export "imports") 1 1 funcref)
                (func (export "write") (type $write)
                    (call_indirect (type $write)
                        (local.get 0) (local.get 1) (local.get 2) (i32.const 0))))
            (core module $Fixup
                (import "actual" "write" (func $write (param i32 i32 i32)))
                (import "shim" "imports" (table 1 1 funcref))
                (elem (i32.const 0) func $write))
            (core instance $shim (instantiate $Shim))
            (core instance $main (instantiate $Main
                (with "log" (instance (export "write" (func $shim "write"))))))
            (alias core export $main "memory" (core memory $memory))
            (core func $write (canon lower (func $log "write") (memory $memory)))
            (core instance (instantiate $Fixup
                (with "actual" (instance (export "write" (func $write))))
                (with "shim" (instance $shim))))"#
        }
        MemoryLayout::Imported => {
            r#"(core module $Memory (memory (export "memory") 1))
            (core instance $memory (instantiate $Memory))
            (alias core export $memory "memory" (core memory $memory))
            (core func $write (canon lower (func $log "write") (memory $memory)))
            (core instance $main (instantiate $Main
                (with "log" (instance (export "write" (func $write))))
                (with "env" (instance (export "memory" (memory $memory))))))"#
        }
    };
    // Modules of one memory each, instantiated beside the program.
    let spares = "(core instance (instantiate $Spare))".repeat(spare_memories as usize);
    let instances = format!("(core module $Spare (memory 1)) {spares} {instances}");
    let component = format!(
        r#"(component
        (import "miniapp:host/log@{v}" (instance $log
            (type (enum "trace" "debug" "info" "warn" "error"))
            (export "level" (type (eq 0)))
            (type (func (param "level" 1) (param "message" string)))
            (export "write" (func (type 2)))))
        (import "miniapp:host/types@{v}" (instance $types
            (type (tuple string string))
            (export "header" (type (eq 0)))
            (type (list 1))
            (type (list u8))
            (type (record (field "method" string) (field "path" string) (field "query" string)
                (field "headers" 2) (field "body" 3)))
            (export "request" (type (eq 4)))
            (type (record (field "status" u16) (field "headers" 2) (field "body" 3)))
            (export "response" (type (eq 6)))))
        {main}
        {instances}
        (alias export $types "header" (type $header))
        (alias export $types "request" (type $request))
        (alias export $types "response" (type $response))
        (func $handle (param "request" $request) (result $response)
            (canon lift (core func $main "handle") (memory $memory)
                (realloc (core func $main "cabi_realloc"))))
        (component $Handler
            (type $h (tuple string string))
            (import "import-type-header" (type $header (eq $h)))
            (type $headers (list $header))
            (type $body (list u8))
            (type $rq (record (field "method" string) (field "path" string) (field "query" string)
                (field "headers" $headers) (field "body" $body)))
            (import "import-type-request" (type $request (eq $rq)))
            (type $rs (record (field "status" u16) (field "headers" $headers) (field "body" $body)))
            (import "import-type-response" (type $response (eq $rs)))
            (import "import-func-handle" (func $handle (param "request" $request) (result $response)))
            (export $request' "request" (type $request))
            (export $response' "response" (type $response))
            (export "handle" (func $handle) (func (param "request" $request') (result $response'))))
        (instance $handler (instantiate $Handler
            (with "import-func-handle" (func $handle))
            (with "import-type-header" (type $header))
            (with "import-type-request" (type $request))
            (with "import-type-response" (type $response))))
        (export "miniapp:host/handler@{v}" (instance $handler))
        (type $event (record (field "id" string) (field "topic" string) (field "payload" string)))
        (func $on-event (param "event" $event) (result (result (error string)))
            (canon lift (core func $main "on-event") (memory $memory)
                (realloc (core func $main "cabi_realloc"))))
        (component $Events
            (type $e (record (field "id" string) (field "topic" string) (field "payload" string)))
            (import "import-type-event" (type $event (eq $e)))
            (import "import-func-on-event" (func $on-event (param "event" $event) (result (result (error string)))))
            (export $event' "event" (type $event))
            (export "on-event" (func $on-event) (func (param "event" $event') (result (result (error string))))))
        (instance $events (instantiate $Events
            (with "import-func-on-event" (func $on-event))
            (with "import-type-event" (type $event))))
        (export "miniapp:host/events@{v}" (instance $events)))"#,
        v = miniapp_host_api::VERSION
    );
    wat::parse_str(component).unwrap()
}
