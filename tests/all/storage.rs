//! The storage capability: isolation the guest cannot get around, quotas at
//! and one byte past each limit, atomic batches, compare-and-swap and
//! increments under concurrency, pagination; then the same through the
//! `notes` and `leaderboard` samples over HTTP.

use std::sync::Arc;
use std::time::Duration;

use miniapp::db::Db;
use miniapp::domain::AppId;
use miniapp::storage::{Applied, Op, Partition, Quotas, Storage, StorageError};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{LEADERBOARD, NOTES, TestServer, config, on_each_engine, register_apps};

fn appid(name: &str) -> AppId {
    name.parse().unwrap()
}

fn set(key: &str, value: impl Into<Vec<u8>>) -> Op {
    Op::Set {
        key: key.into(),
        value: value.into(),
    }
}

async fn storage(url: &str) -> (Db, Storage) {
    let db = Db::connect(url).await.unwrap();
    register_apps(
        &db,
        &[
            "app-x", "app-y", "quota", "batch", "counter", "pages", "notes",
        ],
    )
    .await;
    (db.clone(), Storage::new(db))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crafted_keys_never_leave_their_partition() {
    on_each_engine(|_, test_db| async move {
        let (db, storage) = storage(&test_db.url).await;
        let quotas = Quotas::default();
        let partitions = [
            Partition::user(appid("app-x"), 1),
            Partition::user(appid("app-x"), 2),
            Partition::user(appid("app-y"), 1),
            Partition::app(appid("app-x")),
            Partition::app(appid("app-y")),
        ];
        let crafted = [
            "k",
            "../app-y/k",
            "user/2/k",
            "%",
            "app-x/k",
            "k' OR '1'='1",
            "ключ",
        ];
        for (n, partition) in partitions.iter().enumerate() {
            for key in crafted {
                storage
                    .apply(partition, &quotas, vec![set(key, format!("{n}"))])
                    .await
                    .unwrap();
            }
        }
        for (n, partition) in partitions.iter().enumerate() {
            for key in crafted {
                let entry = storage.get(partition, key).await.unwrap().unwrap();
                assert_eq!(
                    entry.value,
                    format!("{n}").into_bytes(),
                    "{partition:?} {key:?}"
                );
                assert_eq!(entry.version, 1);
            }
            let page = storage.list_keys(partition, "", None, 100).await.unwrap();
            assert_eq!(page.keys.len(), crafted.len(), "{partition:?}");
            let usage = storage.usage(partition, &quotas).await.unwrap();
            assert_eq!(usage.keys, crafted.len() as u64);
        }
        let err = storage
            .apply(&partitions[0], &quotas, vec![set("app-x\0k", "v")])
            .await
            .unwrap_err();
        assert!(matches!(err, StorageError::Invalid(_)), "NUL: {err}");
        storage.clear(&partitions[0]).await.unwrap();
        assert!(storage.get(&partitions[0], "k").await.unwrap().is_none());
        assert!(
            storage.get(&partitions[1], "k").await.unwrap().is_some(),
            "only one user's"
        );
        db.close().await;
        test_db
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_hold_exactly_at_each_limit_and_refuse_one_byte_past() {
    on_each_engine(|_, test_db| async move {
        let (db, storage) = storage(&test_db.url).await;
        let quotas = Quotas::default();
        const MIB: usize = 1 << 20;

        // Keys: 256 bytes at most.
        let user = Partition::user(appid("quota"), 7);
        let longest = "k".repeat(256);
        storage
            .apply(&user, &quotas, vec![set(&longest, "v")])
            .await
            .unwrap();
        let too_long = "k".repeat(257);
        let err = storage
            .apply(&user, &quotas, vec![set(&too_long, "v")])
            .await
            .unwrap_err();
        assert!(matches!(err, StorageError::Invalid(_)), "{err}");
        storage.clear(&user).await.unwrap();

        // A value: 1 MiB.
        storage
            .apply(&user, &quotas, vec![set("v", vec![0u8; MIB])])
            .await
            .unwrap();
        let err = storage
            .apply(&user, &quotas, vec![set("w", vec![0u8; MIB + 1])])
            .await
            .unwrap_err();
        assert!(matches!(err, StorageError::QuotaExceeded(_)), "{err}");
        assert!(storage.get(&user, "w").await.unwrap().is_none());
        storage.clear(&user).await.unwrap();

        // A user in an app: 10 MiB of keys and values; an app scope: 100 MiB.
        for (partition, limit) in [
            (
                Partition::user(appid("quota"), 7),
                quotas.user_bytes as usize,
            ),
            (Partition::app(appid("quota")), quotas.app_bytes as usize),
        ] {
            let entries = limit / MIB;
            for n in 0..entries {
                let key = format!("{n:04}");
                let value = vec![1u8; MIB - key.len()];
                storage
                    .apply(&partition, &quotas, vec![set(&key, value)])
                    .await
                    .unwrap();
            }
            let usage = storage.usage(&partition, &quotas).await.unwrap();
            assert_eq!(usage.bytes, limit as u64, "exactly at the limit");
            assert_eq!(usage.limit_bytes, limit as u64);
            // One byte more: a one-byte key with an empty value.
            let err = storage
                .apply(&partition, &quotas, vec![set("x", "")])
                .await
                .unwrap_err();
            assert!(matches!(err, StorageError::QuotaExceeded(_)), "{err}");
            assert!(
                storage.get(&partition, "x").await.unwrap().is_none(),
                "nothing written"
            );
            assert_eq!(storage.usage(&partition, &quotas).await.unwrap(), usage);
            // Replacing a value with a smaller one, or deleting, still works when full.
            storage
                .apply(&partition, &quotas, vec![set("0000", "small")])
                .await
                .unwrap();
            storage
                .apply(&partition, &quotas, vec![set("x", "")])
                .await
                .unwrap();
        }
        db.close().await;
        test_db
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_fails_midway_writes_nothing() {
    on_each_engine(|_, test_db| async move {
        let (db, storage) = storage(&test_db.url).await;
        let quotas = Quotas::default();
        let app = Partition::app(appid("batch"));
        storage
            .apply(&app, &quotas, vec![set("word", "not a number")])
            .await
            .unwrap();
        let before = storage.usage(&app, &quotas).await.unwrap();
        let err = storage
            .apply(
                &app,
                &quotas,
                vec![
                    set("a", "1"),
                    Op::Delete {
                        key: "other".into(),
                    },
                    set("b", "2"),
                    Op::Increment {
                        key: "word".into(),
                        delta: 1,
                    },
                    Op::Delete { key: "word".into() },
                    set("c", "3"),
                ],
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StorageError::Invalid(_)), "{err}");
        for key in ["a", "b", "c"] {
            assert!(storage.get(&app, key).await.unwrap().is_none(), "{key}");
        }
        assert_eq!(storage.get(&app, "word").await.unwrap().unwrap().version, 1);
        assert_eq!(storage.usage(&app, &quotas).await.unwrap(), before);

        let tiny = Quotas {
            app_bytes: 10,
            ..quotas
        };
        let err = storage
            .apply(&app, &tiny, vec![set("d", "1"), set("e", "x".repeat(100))])
            .await
            .unwrap_err();
        assert!(matches!(err, StorageError::QuotaExceeded(_)), "{err}");
        assert!(storage.get(&app, "d").await.unwrap().is_none());

        let too_many = (0..101).map(|n| set(&format!("k{n}"), "v")).collect();
        let err = storage.apply(&app, &quotas, too_many).await.unwrap_err();
        assert!(matches!(err, StorageError::Invalid(_)), "{err}");

        let applied = storage
            .apply(
                &app,
                &quotas,
                vec![set("a", "1"), Op::Delete { key: "word".into() }],
            )
            .await
            .unwrap();
        assert_eq!(applied, [Applied::Version(1), Applied::Deleted(true)]);
        db.close().await;
        test_db
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_increments_count_exactly_and_cas_detects_conflicts() {
    on_each_engine(|_, test_db| async move {
        let (db, storage) = storage(&test_db.url).await;
        let storage = Arc::new(storage);
        let quotas = Quotas::default();
        let app = Partition::app(appid("counter"));
        let tasks: Vec<_> = (0..200)
            .map(|_| {
                let (storage, app) = (storage.clone(), app.clone());
                tokio::spawn(async move {
                    storage
                        .apply(
                            &app,
                            &quotas,
                            vec![Op::Increment {
                                key: "hits".into(),
                                delta: 1,
                            }],
                        )
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut seen = Vec::new();
        for task in tasks {
            match task.await.unwrap()[..] {
                [Applied::Counter(n)] => seen.push(n),
                ref other => panic!("{other:?}"),
            }
        }
        seen.sort();
        assert_eq!(
            seen,
            (1..=200).collect::<Vec<_>>(),
            "each increment saw its own count"
        );
        let hits = storage.get(&app, "hits").await.unwrap().unwrap();
        assert_eq!(hits.value, b"200");
        assert_eq!(hits.version, 200);
        let err = storage
            .apply(
                &app,
                &quotas,
                vec![Op::Increment {
                    key: "hits".into(),
                    delta: i64::MAX,
                }],
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StorageError::Invalid(_)), "overflow: {err}");

        let cas = |expected_version, value: &str| Op::CompareAndSwap {
            key: "doc".into(),
            expected_version,
            value: value.into(),
        };
        assert_eq!(
            storage
                .apply(&app, &quotas, vec![cas(0, "first")])
                .await
                .unwrap(),
            [Applied::Version(1)]
        );
        let err = storage
            .apply(&app, &quotas, vec![cas(0, "again")])
            .await
            .unwrap_err();
        assert!(matches!(err, StorageError::Conflict(_)), "{err}");
        assert_eq!(
            storage
                .apply(&app, &quotas, vec![cas(1, "second")])
                .await
                .unwrap(),
            [Applied::Version(2)]
        );
        let err = storage
            .apply(&app, &quotas, vec![cas(1, "stale")])
            .await
            .unwrap_err();
        assert!(matches!(err, StorageError::Conflict(_)), "{err}");
        assert_eq!(
            storage.get(&app, "doc").await.unwrap().unwrap().value,
            b"second"
        );

        // Twenty writers racing with CAS: every one lands, none is lost.
        let writers: Vec<_> = (0..20)
            .map(|n| {
                let (storage, app) = (storage.clone(), app.clone());
                tokio::spawn(async move {
                    loop {
                        let current = storage.get(&app, "list").await.unwrap();
                        let (mut text, version) = match current {
                            Some(entry) => (String::from_utf8(entry.value).unwrap(), entry.version),
                            None => (String::new(), 0),
                        };
                        text.push_str(&format!("{n},"));
                        let op = Op::CompareAndSwap {
                            key: "list".into(),
                            expected_version: version,
                            value: text.into_bytes(),
                        };
                        match storage.apply(&app, &quotas, vec![op]).await {
                            Ok(_) => break,
                            Err(StorageError::Conflict(_)) => continue,
                            Err(err) => panic!("{err}"),
                        }
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.await.unwrap();
        }
        let list = storage.get(&app, "list").await.unwrap().unwrap();
        let mut written: Vec<u32> = String::from_utf8(list.value)
            .unwrap()
            .split_terminator(',')
            .map(|n| n.parse().unwrap())
            .collect();
        written.sort();
        assert_eq!(written, (0..20).collect::<Vec<_>>());
        db.close().await;
        test_db
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_walk_ten_thousand_keys_in_order() {
    on_each_engine(|_, test_db| async move {
        let (db, storage) = storage(&test_db.url).await;
        let quotas = Quotas::default();
        let user = Partition::user(appid("pages"), 3);
        for chunk in 0..100 {
            let ops = (0..100)
                .map(|n| {
                    let id = chunk * 100 + n;
                    let prefix = if id % 2 == 0 { "even" } else { "odd" };
                    set(&format!("{prefix}/{id:05}"), "v")
                })
                .collect();
            storage.apply(&user, &quotas, ops).await.unwrap();
        }
        let walk = |prefix: &'static str, limit: u32| {
            let (storage, user) = (&storage, &user);
            async move {
                let mut keys = Vec::new();
                let mut cursor: Option<String> = None;
                loop {
                    let page = storage
                        .list_keys(user, prefix, cursor.as_deref(), limit)
                        .await
                        .unwrap();
                    assert!(page.keys.len() <= limit as usize);
                    keys.extend(page.keys);
                    match page.cursor {
                        Some(next) => cursor = Some(next),
                        None => break keys,
                    }
                }
            }
        };
        let all = walk("", 1000).await;
        assert_eq!(all.len(), 10_000);
        assert!(
            all.windows(2).all(|pair| pair[0] < pair[1]),
            "in order, no repeats"
        );
        let odd = walk("odd/", 333).await;
        assert_eq!(odd.len(), 5_000);
        assert!(odd.iter().all(|key| key.starts_with("odd/")));
        assert_eq!(
            walk("even/0000", 7).await.len(),
            5,
            "even/00000 .. even/00008"
        );
        assert_eq!(walk("none/", 10).await, Vec::<String>::new());
        let err = storage.list_keys(&user, "", None, 0).await.unwrap_err();
        assert!(matches!(err, StorageError::Invalid(_)));
        let err = storage.list_keys(&user, "", None, 1001).await.unwrap_err();
        assert!(matches!(err, StorageError::Invalid(_)));
        db.close().await;
        test_db
    })
    .await;
}

fn storage_manifest(name: &str) -> Value {
    json!({"name": name, "version": "1.0.0", "capabilities": ["storage"]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notes_are_private_to_their_user_who_can_list_and_clear_them() {
    on_each_engine(|_, db| async move {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(config(&db, dir.path())).await;
        // Denied first: the capability must be declared to be imported at all.
        let response = server
            .upload("notes", &json!({"name": "notes", "version": "1"}), NOTES)
            .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        server
            .deploy("notes", NOTES, storage_manifest("notes"))
            .await;
        let (ann, ben) = (
            server.account("ann", &[]).await,
            server.account("ben", &[]).await,
        );
        let put = |token: &str, id: &str, text: &str| {
            server
                .client
                .put(server.url(&format!("/apps/notes/notes/{id}")))
                .bearer_auth(token)
                .body(text.to_string())
                .send()
        };
        assert_eq!(
            put(&ann, "1", "ann's secret").await.unwrap().status(),
            StatusCode::OK
        );
        assert_eq!(
            put(&ben, "1", "ben's note").await.unwrap().status(),
            StatusCode::OK
        );
        let (status, note) = server.get_as(&ann, "/apps/notes/notes/1").await;
        assert_eq!(status, StatusCode::OK, "{note}");
        assert_eq!(note["text"], "ann's secret");
        let (_, note) = server.get_as(&ben, "/apps/notes/notes/1").await;
        assert_eq!(note["text"], "ben's note", "same id, another user's note");
        let (status, _) = server
            .send(Method::GET, "/apps/notes/notes", None, None)
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "no user, no user scope");

        let (status, stored) = server.get_as(&ann, "/v1/me/storage/notes").await;
        assert_eq!(status, StatusCode::OK, "{stored}");
        assert_eq!(stored["keys"], 1);
        assert_eq!(stored["entries"].as_array().unwrap().len(), 1);
        let (status, _) = server
            .send(Method::DELETE, "/v1/me/storage/notes", Some(&ann), None)
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, _) = server.get_as(&ann, "/apps/notes/notes/1").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "cleared");
        let (_, note) = server.get_as(&ben, "/apps/notes/notes/1").await;
        assert_eq!(note["text"], "ben's note", "ben's notes stay");

        // Removing the app removes its data.
        let dev = server.developer().await;
        let (status, _) = server
            .send(Method::DELETE, "/v1/apps/notes", Some(&dev), None)
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert_eq!(
            server.get("/apps/notes/notes").await.status(),
            StatusCode::NOT_FOUND
        );
        let pages = server
            .platform
            .storage()
            .list_keys(
                &Partition::user(appid("notes"), note_owner(&server, &ben).await),
                "",
                None,
                10,
            )
            .await
            .unwrap();
        assert!(pages.keys.is_empty(), "ben's notes went with the app");
        server.stop().await;
        db
    })
    .await;
}

async fn note_owner(server: &TestServer, token: &str) -> i64 {
    let (_, me) = server.get_as(token, "/v1/me").await;
    me["id"].as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leaderboard_counts_every_score_under_concurrency() {
    on_each_engine(|_, db| async move {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(config(&db, dir.path())).await;
        server
            .deploy("leaderboard", LEADERBOARD, storage_manifest("leaderboard"))
            .await;
        let posts: Vec<_> = (0..40)
            .map(|n| {
                let player = ["ada", "bob", "cyd", "dee"][n % 4];
                let url = server.url(&format!(
                    "/apps/leaderboard/score/{player}?points={}",
                    n % 4 + 1
                ));
                let client = server.client.clone();
                tokio::spawn(async move { client.post(url).send().await.unwrap().status() })
            })
            .collect();
        for post in posts {
            assert_eq!(post.await.unwrap(), StatusCode::OK);
        }
        for (player, score) in [("ada", 10), ("bob", 20), ("cyd", 30), ("dee", 40)] {
            let (status, body) = server
                .send(
                    Method::GET,
                    &format!("/apps/leaderboard/score/{player}"),
                    None,
                    None,
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            assert_eq!(body["score"], score, "{player}");
        }
        let (status, top) = server
            .send(Method::GET, "/apps/leaderboard/top", None, None)
            .await;
        assert_eq!(status, StatusCode::OK, "{top}");
        let players: Vec<&str> = top
            .as_array()
            .unwrap()
            .iter()
            .map(|entry| entry["player"].as_str().unwrap())
            .collect();
        assert_eq!(players, ["dee", "cyd", "bob", "ada"], "{top}");
        server.stop().await;
        db
    })
    .await;
}

/// A guest stuck in a host call, here a write waiting on a lock another
/// connection holds, ends at its deadline rather than when the database
/// gives up (SQLite's busy timeout is 5 s; PostgreSQL would wait forever).
/// The deadline's timer is armed only when a call first waits: this is the
/// path that arms it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_waiting_on_the_database_ends_at_its_deadline() {
    use miniapp::domain::Sha256Digest;
    use miniapp::runtime::{
        Grants, Invocation, Limits, Outcome, Request, Runtime, RuntimeConfig, StorageGrant,
    };
    use sqlx::Connection;

    on_each_engine(|engine, test_db| async move {
        let (db, storage) = storage(&test_db.url).await;
        let storage = Arc::new(storage);
        let dir = tempfile::tempdir().unwrap();
        let runtime = Runtime::new(RuntimeConfig::new(dir.path().join("artifacts"))).unwrap();
        let notes = runtime.prepare(&Sha256Digest::of(NOTES), NOTES).unwrap();
        let limits = Limits {
            deadline_ms: 300,
            ..Limits::platform_default()
        };
        let put = |text: &str| {
            Invocation::Request(Request {
                method: "PUT".into(),
                path: "/notes/stuck".into(),
                query: String::new(),
                headers: Vec::new(),
                body: text.as_bytes().to_vec(),
            })
        };
        let grants = || Grants {
            storage: Some(StorageGrant {
                service: storage.clone(),
                appid: appid("notes"),
                caller: Some(7),
                quotas: Quotas::default(),
            }),
            ..Grants::default()
        };
        // Unlocked, the write goes through: the lock below is what stops it.
        let free = runtime.call(&notes, &limits, grants(), put("one")).await;
        assert_eq!(free.outcome, Outcome::Ok, "{}", free.log);

        let mut holder = sqlx::AnyConnection::connect(&test_db.url).await.unwrap();
        let lock = match engine {
            "sqlite" => "BEGIN IMMEDIATE",
            _ => "BEGIN; LOCK TABLE kv_usage IN ACCESS EXCLUSIVE MODE",
        };
        sqlx::raw_sql(lock).execute(&mut holder).await.unwrap();
        let stuck = runtime.call(&notes, &limits, grants(), put("two")).await;
        assert_eq!(stuck.outcome, Outcome::Deadline, "{engine}: {}", stuck.log);
        let waited = stuck.usage.wall_time.as_millis();
        assert!(
            (300..800).contains(&waited),
            "{engine}: the call ended after {waited} ms, deadline 300 ms"
        );
        sqlx::raw_sql("ROLLBACK")
            .execute(&mut holder)
            .await
            .unwrap();
        holder.close().await.unwrap();

        // Nothing of the interrupted write was kept.
        let entry = storage
            .get(&Partition::user(appid("notes"), 7), "note/stuck")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(entry.value, b"one");
        db.close().await;
        test_db
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_running_on_after_its_app_is_deleted_writes_nothing() {
    on_each_engine(|engine, test_db| async move {
        let (db, storage) = storage(&test_db.url).await;
        let storage = Arc::new(storage);
        let quotas = Quotas::default();
        let (user, app) = (
            Partition::user(appid("app-x"), 5),
            Partition::app(appid("app-x")),
        );
        storage
            .apply(&user, &quotas, vec![set("before", "1")])
            .await
            .unwrap();
        db.delete_app(&appid("app-x")).await.unwrap();
        // What a call still running asks for after the delete.
        for partition in [&user, &app] {
            let err = storage
                .apply(partition, &quotas, vec![set("after", "2")])
                .await
                .unwrap_err();
            assert!(matches!(err, StorageError::Denied(_)), "{err}");
            assert!(err.to_string().contains("deleted"), "{err}");
            for key in ["before", "after"] {
                assert!(storage.get(partition, key).await.unwrap().is_none());
            }
            assert_eq!(db.kv_usage(partition).await.unwrap(), (0, 0));
        }
        // Other apps write on.
        let other = Partition::user(appid("app-y"), 5);
        storage
            .apply(&other, &quotas, vec![set("k", "v")])
            .await
            .unwrap();

        if engine == "postgres" {
            // A write in flight when the delete starts: it waits on a row
            // another transaction inserted, so it is mid-transaction. Its
            // partition is new, so it holds no row the delete would wait
            // on: only the app's hold keeps the delete waiting.
            let fresh = Partition::user(appid("app-y"), 6);
            let pool = sqlx::AnyPool::connect(&test_db.url).await.unwrap();
            let mut holder = pool.begin().await.unwrap();
            sqlx::query(
                "INSERT INTO kv (appid, owner_id, key, value, version, updated_at) \
                 VALUES ('app-y', 6, 'held', 'x'::bytea, 1, 0)",
            )
            .execute(&mut *holder)
            .await
            .unwrap();
            let write = tokio::spawn({
                let (storage, fresh) = (storage.clone(), fresh.clone());
                async move {
                    storage
                        .apply(&fresh, &Quotas::default(), vec![set("held", "mine")])
                        .await
                }
            });
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert!(!write.is_finished(), "the write must wait on the held row");
            let delete = tokio::spawn({
                let db = db.clone();
                async move { db.delete_app(&appid("app-y")).await }
            });
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert!(
                !delete.is_finished(),
                "the delete must wait for the write in flight"
            );
            holder.rollback().await.unwrap();
            write.await.unwrap().unwrap();
            delete.await.unwrap().unwrap();
            let left: i64 = sqlx::query_scalar(
                "SELECT (SELECT count(*) FROM kv WHERE appid = 'app-y') \
                 + (SELECT count(*) FROM kv_usage WHERE appid = 'app-y')",
            )
            .fetch_one(&pool)
            .await
            .unwrap();
            assert_eq!(left, 0, "the write in flight is deleted with its app");
            pool.close().await;
        }
        db.close().await;
        test_db
    })
    .await;
}
