//! Uploads: what is accepted, and bad input refused with a clear error and nothing stored.

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::{HELLO, HOSTILE, TestServer, config, on_each_engine};

/// Asserts the upload was refused with `status` and `code`, that its message
/// mentions `needle`, and that nothing was stored or compiled.
async fn assert_refused(
    server: &TestServer,
    appid: &str,
    bytes: &[u8],
    status: StatusCode,
    code: &str,
    needle: &str,
) {
    let response = server.upload(appid, bytes).await;
    assert_eq!(response.status(), status);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], code, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(needle),
        "message {message:?} should mention {needle:?}"
    );

    let (status, body) = server
        .admin_get(&format!("/v1/apps/{appid}/versions"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing stored: {body}");
    let artifacts = std::fs::read_dir(server.data_dir.join("artifacts"))
        .unwrap()
        .count();
    assert_eq!(artifacts, 0, "nothing compiled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_uploads_are_refused_naming_the_problem_and_store_nothing() {
    on_each_engine(|_, db| async move {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(config(&db, dir.path())).await;

        assert_refused(
            &server,
            "garbage",
            b"definitely not wasm",
            StatusCode::BAD_REQUEST,
            "not_wasm",
            "not a WebAssembly binary",
        )
        .await;

        let core_module = wat::parse_str("(module (func (export \"handle\")))").unwrap();
        assert_refused(
            &server,
            "core",
            &core_module,
            StatusCode::BAD_REQUEST,
            "core_module",
            "core WebAssembly module",
        )
        .await;

        let outside =
            wat::parse_str(r#"(component (import "evil:disk/files" (instance)))"#).unwrap();
        assert_refused(
            &server,
            "outside",
            &outside,
            StatusCode::BAD_REQUEST,
            "forbidden_import",
            "evil:disk/files",
        )
        .await;

        let http_client =
            wat::parse_str(r#"(component (import "wasi:http/outgoing-handler@0.2.0" (instance)))"#)
                .unwrap();
        assert_refused(
            &server,
            "outside",
            &http_client,
            StatusCode::BAD_REQUEST,
            "forbidden_import",
            "wasi:http/outgoing-handler",
        )
        .await;

        let newer =
            wat::parse_str(r#"(component (import "miniapp:host/log@0.9.0" (instance)))"#).unwrap();
        assert_refused(
            &server,
            "newer",
            &newer,
            StatusCode::BAD_REQUEST,
            "incompatible_contract",
            "miniapp:host/log@0.9.0",
        )
        .await;

        let no_handler = wat::parse_str("(component)").unwrap();
        assert_refused(
            &server,
            "empty",
            &no_handler,
            StatusCode::BAD_REQUEST,
            "missing_export",
            "miniapp:host/handler",
        )
        .await;

        let mut truncated = HELLO.to_vec();
        truncated.truncate(HELLO.len() / 2);
        assert_refused(
            &server,
            "truncated",
            &truncated,
            StatusCode::BAD_REQUEST,
            "malformed_component",
            "malformed",
        )
        .await;

        let oversized = vec![0u8; (2 << 20) + 1];
        assert_refused(
            &server,
            "huge",
            &oversized,
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            "2097152 bytes",
        )
        .await;

        server.stop().await;
        db
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_developer_api_needs_the_admin_token() {
    on_each_engine(|_, db| async move {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(config(&db, dir.path())).await;
        let url = server.url("/v1/apps/hello/versions");
        let anonymous = server
            .client
            .post(&url)
            .body(HELLO.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
        // Regression: the body was refused unread, and a client that reused
        // the connection had its next request fail.
        assert_eq!(anonymous.headers()["connection"], "close");
        let wrong = server
            .client
            .post(&url)
            .bearer_auth("guess")
            .body(HELLO.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
        let body: Value = wrong.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unauthorized");
        let (status, _) = server.admin_get("/v1/apps/hello/versions").await;
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "the refused uploads stored nothing"
        );
        server.stop().await;
        db
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_versioned_and_the_latest_is_served() {
    on_each_engine(|_, db| async move {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(config(&db, dir.path())).await;

        let first = server.upload_ok("greeter", HELLO).await;
        assert_eq!(first["version"], 1);
        assert_eq!(first["size"], HELLO.len());
        assert_eq!(first["sha256"].as_str().unwrap().len(), 64);
        assert_eq!(
            first["imports"],
            serde_json::json!(["miniapp:host/log@0.1.0", "miniapp:host/types@0.1.0"])
        );

        // The same appid now runs a different program.
        let second = server.upload_ok("greeter", HOSTILE).await;
        assert_eq!(second["version"], 2);
        let response = server.get("/apps/greeter/wasi/env").await;
        assert_eq!(response.status(), StatusCode::OK);

        let (status, listing) = server.admin_get("/v1/apps/greeter/versions").await;
        assert_eq!(status, StatusCode::OK);
        let versions = listing["versions"].as_array().unwrap();
        assert_eq!(versions.len(), 2);
        assert_eq!(versions[0]["version"], 2, "newest first");
        assert_eq!(versions[1]["sha256"], first["sha256"]);

        let bad_appid = server.upload("Not_An_Id", HELLO).await;
        assert_eq!(bad_appid.status(), StatusCode::BAD_REQUEST);
        let body: Value = bad_appid.json().await.unwrap();
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("invalid appid")
        );
        server.stop().await;
        db
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_limits_stay_within_platform_maxima() {
    on_each_engine(|_, db| async move {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(config(&db, dir.path())).await;
        let limits = serde_json::json!({
            "fuel": 1_000_000, "deadline_ms": 200, "memory_bytes": 16 << 20,
            "table_elements": 10_000, "instances": 16
        });
        let (status, body) = server.set_limits("nobody", limits.clone()).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

        server.upload_ok("hello", HELLO).await;
        let (status, body) = server.set_limits("hello", limits.clone()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body, limits);

        let mut greedy = limits.clone();
        greedy["memory_bytes"] = serde_json::json!(1u64 << 40);
        let (status, body) = server.set_limits("hello", greedy).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"]["code"], "invalid_limits");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("memory_bytes"),
            "{body}"
        );

        let oversized = server
            .client
            .put(server.url("/v1/apps/hello/limits"))
            .bearer_auth(crate::support::TOKEN)
            .body(vec![b' '; 17 << 10])
            .send()
            .await
            .unwrap();
        assert_eq!(oversized.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let body: Value = oversized.json().await.unwrap();
        assert_eq!(body["error"]["code"], "too_large", "{body}");

        let mut partial = limits.clone();
        partial.as_object_mut().unwrap().remove("fuel");
        let (status, body) = server.set_limits("hello", partial).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            body["error"]["message"].as_str().unwrap().contains("fuel"),
            "{body}"
        );
        server.stop().await;
        db
    })
    .await;
}
