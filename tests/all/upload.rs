//! Uploads: what is accepted, and bad input refused with a clear error and nothing stored.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::support::{HELLO, HOSTILE, TestServer, WHOAMI, config, manifest, on_each_engine};

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
    assert_refused_with(server, appid, &manifest(appid), bytes, status, code, needle).await;
}

async fn assert_refused_with(
    server: &TestServer,
    appid: &str,
    manifest: &Value,
    bytes: &[u8],
    status: StatusCode,
    code: &str,
    needle: &str,
) {
    let response = server.upload(appid, manifest, bytes).await;
    assert_eq!(response.status(), status);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], code, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(needle),
        "message {message:?} should mention {needle:?}"
    );

    let (status, body) = server.dev_get(&format!("/v1/apps/{appid}/versions")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["versions"], serde_json::json!([]), "nothing stored");
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

        let greedy = serde_json::json!({"name": "greedy", "version": "1",
            "limits": {"memory_bytes": 1u64 << 40}});
        assert_refused_with(
            &server,
            "greedy",
            &greedy,
            HELLO,
            StatusCode::BAD_REQUEST,
            "invalid_manifest",
            "memory_bytes",
        )
        .await;
        let nameless = serde_json::json!({"version": "1"});
        assert_refused_with(
            &server,
            "nameless",
            &nameless,
            HELLO,
            StatusCode::BAD_REQUEST,
            "invalid_manifest",
            "missing field `name`",
        )
        .await;
        let undeclared = manifest("undeclared");
        assert_refused_with(
            &server,
            "undeclared",
            &undeclared,
            WHOAMI,
            StatusCode::BAD_REQUEST,
            "invalid_manifest",
            "imports the identity capability",
        )
        .await;

        server.stop().await;
        db
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploading_needs_the_apps_own_developer() {
    on_each_engine(|_, db| async move {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(config(&db, dir.path())).await;
        server.ensure_app("hello").await;
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
            .bearer_auth("mat_guess")
            .body(HELLO.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
        let body: Value = wrong.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unauthorized");

        let user = server.account("plainuser", &[]).await;
        let response = server
            .upload_as(&user, "hello", &manifest("hello"), HELLO)
            .await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let rival = server.account("rival", &["developer"]).await;
        let response = server
            .upload_as(&rival, "hello", &manifest("hello"), HELLO)
            .await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let body: Value = response.json().await.unwrap();
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("another developer"),
            "{body}"
        );

        let (status, body) = server.dev_get("/v1/apps/hello/versions").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["versions"], serde_json::json!([]), "nothing stored");
        server.stop().await;
        db
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_versioned_and_only_a_release_is_served() {
    on_each_engine(|_, db| async move {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(config(&db, dir.path())).await;

        let response = server.upload("greeter", &manifest("greeter"), HELLO).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let first: Value = response.json().await.unwrap();
        assert_eq!(first["version"], 1);
        assert_eq!(first["state"], "development");
        assert_eq!(first["size"], HELLO.len());
        assert_eq!(first["sha256"].as_str().unwrap().len(), 64);
        assert_eq!(
            first["imports"],
            serde_json::json!([
                format!("miniapp:host/log@{}", miniapp_host_api::VERSION),
                format!("miniapp:host/types@{}", miniapp_host_api::VERSION),
            ])
        );
        let unreleased = server.get("/apps/greeter/").await;
        assert_eq!(unreleased.status(), StatusCode::NOT_FOUND, "in development");

        // A released version is served; the same appid can then run another program.
        server.deploy("greeter", HELLO, manifest("greeter")).await;
        assert_eq!(server.get("/apps/greeter/").await.status(), StatusCode::OK);
        let third = server.deploy("greeter", HOSTILE, manifest("greeter")).await;
        assert_eq!(third, 3);
        let response = server.get("/apps/greeter/wasi/env").await;
        assert_eq!(response.status(), StatusCode::OK);

        let (status, listing) = server.dev_get("/v1/apps/greeter/versions").await;
        assert_eq!(status, StatusCode::OK);
        let versions = listing["versions"].as_array().unwrap();
        assert_eq!(versions.len(), 3);
        assert_eq!(versions[0]["version"], 3, "newest first");
        assert_eq!(versions[0]["state"], "released");
        assert_eq!(versions[1]["state"], "retired");
        assert_eq!(versions[2]["sha256"], first["sha256"]);

        let dev = server.developer().await;
        let (status, body) = server
            .post_as(
                &dev,
                "/v1/apps",
                serde_json::json!({"appid": "Not_An_Id", "name": "x"}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("invalid appid"),
            "{body}"
        );
        server.stop().await;
        db
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_and_bodies_are_bounded() {
    on_each_engine(|_, db| async move {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(config(&db, dir.path())).await;
        let mut huge = manifest("hello");
        huge["description"] = "x".repeat(70 << 10).into();
        let response = server.upload("hello", &huge, HELLO).await;
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "too_large", "{body}");

        let dev = server.developer().await;
        let no_form = server
            .client
            .post(server.url("/v1/apps/hello/versions"))
            .bearer_auth(&dev)
            .body(HELLO.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(no_form.status(), StatusCode::BAD_REQUEST);
        let body: Value = no_form.json().await.unwrap();
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("multipart"),
            "{body}"
        );
        let missing = server
            .client
            .post(server.url("/v1/apps/hello/versions"))
            .bearer_auth(&dev)
            .multipart(
                reqwest::multipart::Form::new().text("manifest", manifest("hello").to_string()),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(missing.status(), StatusCode::BAD_REQUEST);

        let oversized = server
            .client
            .post(server.url("/v1/apps"))
            .bearer_auth(&dev)
            .body(vec![b' '; 17 << 10])
            .send()
            .await
            .unwrap();
        assert_eq!(oversized.status(), StatusCode::PAYLOAD_TOO_LARGE);
        server.stop().await;
        db
    })
    .await;
}

/// Components built against an older patch release of the contract keep
/// running: `hello` as built for `miniapp:host@0.1.0`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn components_built_for_an_older_patch_of_the_contract_still_run() {
    const HELLO_0_1_0: &[u8] = include_bytes!("../fixtures/hello-contract-0.1.0.wasm");
    on_each_engine(|_, db| async move {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(config(&db, dir.path())).await;
        server.upload_ok("legacy", HELLO_0_1_0).await;
        let response = server.get("/apps/legacy/").await;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.text().await.unwrap().contains("Hello"));
        server.stop().await;
        db
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bundled_samples_install_and_answer() {
    on_each_engine(|_, db| async move {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = config(&db, dir.path());
        settings.samples = true;
        let server = TestServer::start(settings).await;
        for sample in miniapp::samples::SAMPLES {
            let (status, app) = server
                .get_as(&server.admin().await, &format!("/v1/apps/{}", sample.appid))
                .await;
            assert_eq!(status, StatusCode::OK, "{}: {app}", sample.appid);
            assert_eq!(app["release"]["version"], 1, "{}: {app}", sample.appid);
        }
        for path in ["/apps/hello/", "/apps/shop/products", "/apps/support-chat/"] {
            let response = server.get(path).await;
            assert_eq!(response.status(), StatusCode::OK, "{path}");
        }
        // An admin removes one; its appid is never reused, not even by
        // the platform's own install.
        let (status, body) = server
            .send(
                Method::DELETE,
                "/v1/apps/hello",
                Some(&server.admin().await),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
        server.stop().await;
        // A restart finds the others installed and changes nothing.
        let mut settings = config(&db, dir.path());
        settings.samples = true;
        let server = TestServer::start(settings).await;
        let response = server.get("/apps/shop/products").await;
        assert_eq!(response.status(), StatusCode::OK);
        let response = server.get("/apps/hello/").await;
        assert_eq!(
            response.status(),
            StatusCode::NOT_FOUND,
            "deleted stays deleted"
        );
        server.stop().await;
        db
    })
    .await;
}
