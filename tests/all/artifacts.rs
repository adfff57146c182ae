//! The compiled-artifact cache: a restarted server loads, never recompiles.

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::{HELLO, TestServer, config, on_each_engine};

async fn runtime_stats(server: &TestServer) -> Value {
    let ready: Value = server.get("/readyz").await.json().await.unwrap();
    ready["runtime"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_loads_the_cached_artifact_instead_of_compiling() {
    on_each_engine(|_, db| async move {
        let dir = tempfile::tempdir().unwrap();
        let first = TestServer::start(config(&db, dir.path())).await;
        first.upload_ok("hello", HELLO).await;
        assert_eq!(first.get("/apps/hello/").await.status(), StatusCode::OK);
        assert_eq!(runtime_stats(&first).await["compiled"], 1);
        first.stop().await;

        let artifacts: Vec<_> = std::fs::read_dir(dir.path().join("artifacts"))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect();
        assert_eq!(artifacts.len(), 1, "{artifacts:?}");
        let written = std::fs::metadata(&artifacts[0])
            .unwrap()
            .modified()
            .unwrap();

        let second = TestServer::start(config(&db, dir.path())).await;
        assert_eq!(second.get("/apps/hello/").await.status(), StatusCode::OK);
        let stats = runtime_stats(&second).await;
        assert_eq!(stats["compiled"], 0, "{stats}");
        assert_eq!(stats["loaded_from_cache"], 1, "{stats}");
        assert_eq!(
            std::fs::metadata(&artifacts[0])
                .unwrap()
                .modified()
                .unwrap(),
            written
        );
        second.stop().await;
        db
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_artifact_is_discarded_and_recompiled() {
    on_each_engine(|_, db| async move {
        let dir = tempfile::tempdir().unwrap();
        let first = TestServer::start(config(&db, dir.path())).await;
        first.upload_ok("hello", HELLO).await;
        first.stop().await;
        let artifact = std::fs::read_dir(dir.path().join("artifacts"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        std::fs::write(&artifact, b"not an artifact").unwrap();

        let second = TestServer::start(config(&db, dir.path())).await;
        assert_eq!(second.get("/apps/hello/").await.status(), StatusCode::OK);
        let stats = runtime_stats(&second).await;
        assert_eq!(stats["compiled"], 1, "{stats}");
        assert_eq!(stats["loaded_from_cache"], 0, "{stats}");
        second.stop().await;
        db
    })
    .await;
}
