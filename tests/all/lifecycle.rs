//! Accounts, roles and the app lifecycle over HTTP: who may do what, a whole
//! journey from upload to launch, phased release, rollback, concurrent review.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{HELLO, HOSTILE, TestServer, config, manifest, on_each_engine};

/// Uploads and submits a version of `appid` as the developer; returns its number.
async fn submitted(server: &TestServer, appid: &str, bytes: &[u8]) -> i64 {
    let response = server.upload(appid, &manifest(appid), bytes).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let version = response.json::<Value>().await.unwrap()["version"]
        .as_i64()
        .unwrap();
    let dev = server.developer().await;
    let (status, body) = server
        .post_as(
            &dev,
            &format!("/v1/apps/{appid}/versions/{version}/submit"),
            json!({"notes": "please review"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    version
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_reaches_only_its_endpoints() {
    on_each_engine(|_, db| async move {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(config(&db, dir.path())).await;
        let version = submitted(&server, "matrix", HELLO).await;
        assert_eq!(version, 1);
        let user = server.account("user", &[]).await;
        let dev = server.developer().await;
        let other = server.account("otherdev", &["developer"]).await;
        let rev = server.reviewer().await;
        let admin = server.admin().await;
        let roles = [
            ("anonymous", None),
            ("user", Some(&user)),
            ("developer", Some(&dev)),
            ("other developer", Some(&other)),
            ("reviewer", Some(&rev)),
            ("admin", Some(&admin)),
        ];
        use StatusCode as S;
        const UNAUTH: S = S::UNAUTHORIZED;
        const NO: S = S::FORBIDDEN;
        // Expected status for: anonymous, user, developer, other developer, reviewer, admin.
        let matrix: Vec<(Method, &str, Option<Value>, [S; 6])> = vec![
            (
                Method::GET,
                "/v1/me",
                None,
                [UNAUTH, S::OK, S::OK, S::OK, S::OK, S::OK],
            ),
            (
                Method::GET,
                "/v1/apps",
                None,
                [UNAUTH, NO, S::OK, S::OK, NO, S::OK],
            ),
            (
                Method::GET,
                "/v1/apps/matrix",
                None,
                [UNAUTH, NO, S::OK, NO, NO, S::OK],
            ),
            (
                Method::GET,
                "/v1/apps/matrix/versions/1",
                None,
                [UNAUTH, NO, S::OK, NO, NO, S::OK],
            ),
            (
                Method::GET,
                "/v1/apps/matrix/audit",
                None,
                [UNAUTH, NO, S::OK, NO, NO, S::OK],
            ),
            (
                Method::GET,
                "/v1/apps/matrix/calls",
                None,
                [UNAUTH, NO, S::OK, NO, NO, S::OK],
            ),
            (
                Method::PUT,
                "/v1/apps/matrix/testers",
                Some(json!({"testers": []})),
                [UNAUTH, NO, S::OK, NO, NO, S::OK],
            ),
            // Past the role check, the version's state decides: submitted is not approved.
            (
                Method::POST,
                "/v1/apps/matrix/release",
                Some(json!({"version": 1})),
                [UNAUTH, NO, S::CONFLICT, NO, NO, S::CONFLICT],
            ),
            (
                Method::GET,
                "/v1/review/queue",
                None,
                [UNAUTH, NO, NO, NO, S::OK, NO],
            ),
            (
                Method::GET,
                "/v1/review/matrix/1",
                None,
                [UNAUTH, NO, NO, NO, S::OK, NO],
            ),
            (
                Method::PUT,
                "/v1/accounts/user/roles",
                Some(json!({"roles": []})),
                [UNAUTH, NO, NO, NO, NO, S::OK],
            ),
            (
                Method::POST,
                "/v1/accounts",
                Some(json!({"username": "newrev",
                "password": "long enough", "roles": ["reviewer"]})),
                [NO, NO, NO, NO, NO, S::CREATED],
            ),
        ];
        for (method, path, body, expected) in &matrix {
            for ((role, token), want) in roles.iter().zip(expected) {
                let (status, answer) = server
                    .send(
                        method.clone(),
                        path,
                        token.map(|t| t.as_str()),
                        body.clone(),
                    )
                    .await;
                assert_eq!(status, *want, "{role} {method} {path}: {answer}");
            }
        }
        // Only the reviewer gets to decide, and then the version is approved.
        for token in [&user, &dev, &other, &admin] {
            let (status, _) = server
                .post_as(token, "/v1/review/matrix/1/approve", json!({}))
                .await;
            assert_eq!(status, NO);
        }
        let (status, body) = server
            .post_as(&rev, "/v1/review/matrix/1/approve", json!({}))
            .await;
        assert_eq!(status, S::OK, "{body}");
        assert_eq!(body["state"], "approved");

        // Unknown things are 404s, for those allowed to ask.
        let (status, _) = server.get_as(&dev, "/v1/apps/nosuch").await;
        assert_eq!(status, S::NOT_FOUND);
        let (status, _) = server.get_as(&dev, "/v1/apps/matrix/versions/99").await;
        assert_eq!(status, S::NOT_FOUND);
        let (status, _) = server.get_as(&rev, "/v1/review/matrix/99").await;
        assert_eq!(status, S::NOT_FOUND);

        // A reviewer never reviews an app they develop, nor sees it queued.
        let both = server.account("both", &["developer", "reviewer"]).await;
        let (status, _) = server
            .post_as(
                &both,
                "/v1/apps",
                json!({"appid": "selfmade", "name": "Self"}),
            )
            .await;
        assert_eq!(status, S::CREATED);
        let response = server
            .upload_as(&both, "selfmade", &manifest("selfmade"), HELLO)
            .await;
        assert_eq!(response.status(), S::CREATED);
        let (status, _) = server
            .post_as(&both, "/v1/apps/selfmade/versions/1/submit", json!({}))
            .await;
        assert_eq!(status, S::OK);
        let (_, queue) = server.get_as(&both, "/v1/review/queue").await;
        assert!(
            queue["queue"]
                .as_array()
                .unwrap()
                .iter()
                .all(|entry| entry["appid"] != "selfmade"),
            "{queue}"
        );
        let (status, body) = server
            .post_as(&both, "/v1/review/selfmade/1/approve", json!({}))
            .await;
        assert_eq!(status, NO, "{body}");

        // Users sign up on their own, as users or developers, never higher.
        let (status, body) = server
            .send(
                Method::POST,
                "/v1/accounts",
                None,
                Some(json!({"username": "selfserve", "password": "long enough"})),
            )
            .await;
        assert_eq!(status, S::CREATED, "{body}");
        assert_eq!(body["roles"], json!([]));
        let (status, body) = server
            .send(
                Method::POST,
                "/v1/accounts",
                None,
                Some(json!({"username": "selfserve", "password": "long enough"})),
            )
            .await;
        assert_eq!(status, S::CONFLICT, "{body}");
        let (status, body) = server
            .send(
                Method::POST,
                "/v1/accounts",
                None,
                Some(json!({"username": "x", "password": "short"})),
            )
            .await;
        assert_eq!(status, S::BAD_REQUEST, "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("username")
        );
        server.stop().await;
        db
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_expire_on_logout_and_on_revocation() {
    on_each_engine(|_, db| async move {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(config(&db, dir.path())).await;
        let token = server.account("sessions", &[]).await;
        let (status, me) = server.get_as(&token, "/v1/me").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(me["username"], "sessions");
        let (status, _) = server
            .send(Method::DELETE, "/v1/sessions/current", Some(&token), None)
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, _) = server.get_as(&token, "/v1/me").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "logged out");

        let password = crate::support::password_of("sessions");
        let (first, second) = (
            server.login("sessions", &password).await,
            server.login("sessions", &password).await,
        );
        let admin = server.admin().await;
        let (status, _) = server
            .send(
                Method::DELETE,
                "/v1/accounts/sessions/sessions",
                Some(&admin),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        for token in [first, second] {
            let (status, _) = server.get_as(&token, "/v1/me").await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "revoked");
        }
        let (status, body) = server
            .send(
                Method::POST,
                "/v1/sessions",
                None,
                Some(json!({"username": "sessions", "password": "not the password"})),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        let (status, _) = server
            .send(
                Method::POST,
                "/v1/sessions",
                None,
                Some(json!({"username": "nobody-here", "password": "whatever123"})),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);

        // Five wrong passwords in a row lock sign-in, even with the right
        // one. The wrong one above was the first of four.
        let attempt = |password: String| {
            server.send(
                Method::POST,
                "/v1/sessions",
                None,
                Some(json!({"username": "sessions", "password": password})),
            )
        };
        for _ in 0..3 {
            let (status, _) = attempt("still not it".into()).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
        }
        let (status, _) = attempt(password.clone()).await;
        assert_eq!(
            status,
            StatusCode::CREATED,
            "a success starts the count over"
        );
        for _ in 0..5 {
            let (status, _) = attempt("still not it".into()).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
        }
        let (status, body) = attempt(password.clone()).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
        assert_eq!(body["error"]["code"], "too_many_attempts");
        // Once the lock has passed, the right password works again.
        let pool = sqlx::AnyPool::connect(&db.url).await.unwrap();
        sqlx::query("UPDATE accounts SET locked_until = 0 WHERE username = 'sessions'")
            .execute(&pool)
            .await
            .unwrap();
        let (status, _) = attempt(password.clone()).await;
        assert_eq!(status, StatusCode::CREATED);

        // Guesses sent at once: each counts before its hash is checked, so
        // five are checked and the rest are refused, however many queue.
        let burst = (0..20).map(|n| attempt(format!("guess number {n}")));
        let statuses: Vec<StatusCode> = futures_util::future::join_all(burst)
            .await
            .into_iter()
            .map(|(status, _)| status)
            .collect();
        let count = |wanted: StatusCode| statuses.iter().filter(|s| **s == wanted).count();
        assert_eq!(
            (
                count(StatusCode::UNAUTHORIZED),
                count(StatusCode::TOO_MANY_REQUESTS)
            ),
            (5, 15),
            "{statuses:?}"
        );
        let (status, _) = attempt(password.clone()).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        sqlx::query("UPDATE accounts SET locked_until = 0 WHERE username = 'sessions'")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
        server.stop().await;
        db
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_travels_from_upload_through_review_to_launch() {
    on_each_engine(|_, db| async move {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(config(&db, dir.path())).await;
        let dev = server.developer().await;
        let rev = server.reviewer().await;
        let tester = server.account("tester", &[]).await;
        let stranger = server.account("stranger", &[]).await;

        let (status, app) = server
            .post_as(
                &dev,
                "/v1/apps",
                json!({"appid": "journey", "name": "Journey", "description": "A trip"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{app}");
        assert_eq!(app["secret"].as_str().unwrap().len(), 64, "shown once");
        let (_, status_body) = server.get_as(&dev, "/v1/apps/journey").await;
        assert!(status_body.get("secret").is_none(), "never shown again");

        // Trial: the developer and the listed testers, nobody else.
        let response = server.upload("journey", &manifest("journey"), HELLO).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let (status, body) = server
            .post_as(&dev, "/v1/apps/journey/versions/1/trial", json!({}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, _) = server
            .send(
                Method::PUT,
                "/v1/apps/journey/testers",
                Some(&dev),
                Some(json!({"testers": ["tester"]})),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let (status, body) = server
            .send(
                Method::PUT,
                "/v1/apps/journey/testers",
                Some(&dev),
                Some(json!({"testers": ["ghost"]})),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let (status, _) = server.get_as(&tester, "/trial/journey/").await;
        assert_eq!(status, StatusCode::OK, "the tester opens the trial");
        let (status, _) = server.get_as(&stranger, "/trial/journey/").await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, launch) = server
            .post_as(&tester, "/v1/launch", json!({"appid": "journey", "scene": "share", "trial": true}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{launch}");
        assert_eq!(launch["channel"], "trial");
        assert_eq!(launch["url"], "/trial/journey/");
        let (status, _) = server
            .post_as(&stranger, "/v1/launch", json!({"appid": "journey", "scene": "link", "trial": true}))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "trial is for testers");
        assert_eq!(server.get("/trial/journey/").await.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(server.get("/apps/journey/").await.status(), StatusCode::NOT_FOUND);

        // Review in submit order; a rejection carries its reason.
        submitted(&server, "earlier", HOSTILE).await;
        let (status, _) = server
            .post_as(
                &dev,
                "/v1/apps/journey/versions/1/submit",
                json!({"notes": "first try"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let (_, queue) = server.get_as(&rev, "/v1/review/queue").await;
        let order: Vec<&str> = queue["queue"]
            .as_array()
            .unwrap()
            .iter()
            .map(|entry| entry["appid"].as_str().unwrap())
            .collect();
        assert_eq!(order, ["earlier", "journey"]);
        let (status, detail) = server.get_as(&rev, "/v1/review/journey/1").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(detail["manifest"]["name"], "journey");
        assert_eq!(detail["notes"], "first try");
        assert_eq!(detail["size"], HELLO.len());
        assert_eq!(detail["sha256"].as_str().unwrap().len(), 64);
        assert_eq!(detail["developer"], "dev");
        assert!(!detail["imports"].as_array().unwrap().is_empty());
        assert_eq!(detail["capabilities"]["declared_not_imported"], json!([]));
        let (status, body) = server
            .post_as(&rev, "/v1/review/journey/1/reject", json!({}))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "a reason is required: {body}");
        let (status, body) = server
            .post_as(
                &rev,
                "/v1/review/journey/1/reject",
                json!({"reason": "the greeting is rude"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["state"], "rejected");
        assert_eq!(body["review_reason"], "the greeting is rude");
        let (status, body) = server
            .post_as(&dev, "/v1/apps/journey/versions/1/submit", json!({}))
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("rejected") && message.contains("development or trial"),
            "names both states: {message}"
        );

        // Withdraw and resubmit, then approve and release.
        let v2 = submitted(&server, "journey", HELLO).await;
        let (status, body) = server
            .post_as(&dev, &format!("/v1/apps/journey/versions/{v2}/withdraw"), json!({}))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["state"], "development");
        let (status, _) = server
            .post_as(&dev, &format!("/v1/apps/journey/versions/{v2}/submit"), json!({}))
            .await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = server
            .post_as(&rev, &format!("/v1/review/journey/{v2}/approve"), json!({}))
            .await;
        assert_eq!(status, StatusCode::OK);
        let (status, body) = server
            .post_as(&dev, "/v1/apps/journey/release", json!({"version": v2, "percent": 0}))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let (status, body) = server
            .post_as(&dev, "/v1/apps/journey/release", json!({"version": v2}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["release"]["version"], v2);
        assert_eq!(server.get("/apps/journey/").await.status(), StatusCode::OK);

        // Users find it and launch it.
        let (_, found) = server
            .send(Method::GET, "/v1/directory?q=TRIP", None, None)
            .await;
        let apps = found["apps"].as_array().unwrap();
        assert_eq!(apps.len(), 1, "{found}");
        assert_eq!(apps[0]["appid"], "journey");
        let (_, none) = server
            .send(Method::GET, "/v1/directory?q=%25", None, None)
            .await;
        assert_eq!(none["apps"], json!([]), "LIKE wildcards are literal");
        let (status, launch) = server
            .post_as(
                &stranger,
                "/v1/launch",
                json!({"appid": "journey", "path": "/hello/ada", "query": "x=1", "scene": "qr-code"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{launch}");
        assert_eq!(launch["version"], v2);
        assert_eq!(launch["url"], "/apps/journey/hello/ada?x=1");
        let (status, body) = server
            .post_as(&stranger, "/v1/launch", json!({"appid": "journey", "scene": "telepathy"}))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let (status, _) = server
            .post_as(&tester, "/v1/launch", json!({"appid": "journey", "scene": "link", "trial": true}))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "the trial version went to review");
        let (status, _) = server
            .post_as(&stranger, "/v1/launch", json!({"appid": "nosuch", "scene": "link"}))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        let (_, status_body) = server.get_as(&dev, "/v1/apps/journey").await;
        assert_eq!(status_body["launches"], json!({"qr-code": 1, "share": 1}), "{status_body}");

        // The audit log has every transition: who, what, why.
        let (_, audit) = server.get_as(&dev, "/v1/apps/journey/audit").await;
        let entries = audit["entries"].as_array().unwrap();
        let actions: Vec<&str> = entries
            .iter()
            .map(|entry| entry["action"].as_str().unwrap())
            .collect();
        assert_eq!(
            actions,
            [
                "create", "upload", "trial", "submit", "reject", "upload", "submit", "withdraw",
                "submit", "approve", "release"
            ]
        );
        let rejection = &entries[4];
        assert_eq!(rejection["actor"], "rev");
        assert_eq!(rejection["from"], "submitted");
        assert_eq!(rejection["to"], "rejected");
        assert_eq!(rejection["reason"], "the greeting is rude");
        server.stop().await;
        db
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_approve_and_reject_one_wins() {
    on_each_engine(|_, db| async move {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(config(&db, dir.path())).await;
        let rev = server.reviewer().await;
        let rev2 = server.account("rev2", &["reviewer"]).await;
        for round in 0..5 {
            let version = submitted(&server, "race", HELLO).await;
            let (approve_path, reject_path) = (
                format!("/v1/review/race/{version}/approve"),
                format!("/v1/review/race/{version}/reject"),
            );
            let approve = server.post_as(&rev, &approve_path, json!({}));
            let reject = server.post_as(&rev2, &reject_path, json!({"reason": "no"}));
            let ((a, _), (r, _)) = tokio::join!(approve, reject);
            let mut statuses = [a, r];
            statuses.sort();
            assert_eq!(
                statuses,
                [StatusCode::OK, StatusCode::CONFLICT],
                "round {round}"
            );
            // Leave no approved version in the way of the next round.
            let dev = server.developer().await;
            let (_, detail) = server
                .get_as(&dev, &format!("/v1/apps/race/versions/{version}"))
                .await;
            assert!(detail["state"] == "approved" || detail["state"] == "rejected");
        }
        // Seven uploads in all: the newest five are kept, and older ones
        // only while approved (still releasable); rejected ones go.
        for _ in 0..2 {
            server.upload("race", &manifest("race"), HELLO).await;
        }
        let (_, listing) = server.dev_get("/v1/apps/race/versions").await;
        let kept: Vec<(i64, &str)> = listing["versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| (v["version"].as_i64().unwrap(), v["state"].as_str().unwrap()))
            .collect();
        let newest: Vec<i64> = kept.iter().take(5).map(|(v, _)| *v).collect();
        assert_eq!(newest, [7, 6, 5, 4, 3], "{kept:?}");
        assert!(
            kept[5..].iter().all(|(_, state)| *state == "approved"),
            "{kept:?}"
        );
        server.stop().await;
        db
    })
    .await;
}

/// A user id from the platform itself: creating a thousand accounts over
/// HTTP would spend minutes hashing passwords.
async fn users(server: &TestServer, count: usize) -> Vec<String> {
    let mut tokens = Vec::with_capacity(count);
    let roles = miniapp::accounts::Roles::default();
    for n in 0..count {
        let username = format!("user{n}").parse().unwrap();
        let account = server
            .platform
            .db()
            .create_account(&username, "", "u", "", &roles)
            .await
            .unwrap()
            .unwrap();
        tokens.push(server.platform.issue_session(account).await.unwrap().token);
    }
    tokens
}

/// The version each user reaches when launching `appid`.
async fn reached(server: &TestServer, tokens: &[String], appid: &str) -> Vec<i64> {
    let mut versions = Vec::with_capacity(tokens.len());
    for chunk in tokens.chunks(16) {
        let launches = chunk.iter().map(|token| {
            server.post_as(
                token,
                "/v1/launch",
                json!({"appid": appid, "scene": "link"}),
            )
        });
        for (status, body) in futures_util::future::join_all(launches).await {
            assert_eq!(status, StatusCode::CREATED, "{body}");
            versions.push(body["version"].as_i64().unwrap());
        }
    }
    versions
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phased_release_reaches_its_share_stably_and_rolls_back() {
    on_each_engine(|_, db| async move {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(config(&db, dir.path())).await;
        let dev = server.developer().await;
        let v1 = server.upload_ok("phased", HELLO).await;
        let v2 = submitted(&server, "phased", HELLO).await;
        let rev = server.reviewer().await;
        server
            .post_as(&rev, &format!("/v1/review/phased/{v2}/approve"), json!({}))
            .await;
        let (status, body) = server
            .post_as(
                &dev,
                "/v1/apps/phased/release",
                json!({"version": v2, "percent": 30}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["release"]["fallback_version"], v1);

        let tokens = users(&server, 1000).await;
        let at_30 = reached(&server, &tokens, "phased").await;
        let new = at_30.iter().filter(|v| **v == v2).count();
        assert!((240..=360).contains(&new), "30% reached {new} of 1000");
        assert_eq!(
            at_30,
            reached(&server, &tokens, "phased").await,
            "stable per user"
        );

        let (status, _) = server
            .post_as(
                &dev,
                "/v1/apps/phased/release",
                json!({"version": v2, "percent": 60}),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let at_60 = reached(&server, &tokens, "phased").await;
        let new = at_60.iter().filter(|v| **v == v2).count();
        assert!((540..=660).contains(&new), "60% reached {new} of 1000");
        assert!(
            at_30
                .iter()
                .zip(&at_60)
                .all(|(before, after)| *before != v2 || *after == v2),
            "nobody on the new version goes back as the share grows"
        );
        // Anonymous callers stay on the fallback until the release is whole.
        let anonymous: Value = server
            .get("/apps/phased/")
            .await
            .text()
            .await
            .map(Value::String)
            .unwrap();
        assert!(anonymous.as_str().unwrap().contains("Hello"));

        // Rolling back the phase returns everyone to v1.
        let (status, body) = server
            .post_as(&dev, "/v1/apps/phased/rollback", json!({}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["release"]["version"], v1);
        assert_eq!(body["release"]["percent"], 100);
        assert!(
            reached(&server, &tokens[..50], "phased")
                .await
                .iter()
                .all(|v| *v == v1)
        );
        let (status, body) = server
            .post_as(&dev, "/v1/apps/phased/rollback", json!({}))
            .await;
        assert_eq!(
            status,
            StatusCode::CONFLICT,
            "v1 was the first release: {body}"
        );

        // A full release replaces v1; rollback restores it in one call.
        let v3 = server.deploy("phased", HELLO, manifest("phased")).await;
        assert!(
            reached(&server, &tokens[..50], "phased")
                .await
                .iter()
                .all(|v| *v == v3)
        );
        let (status, body) = server
            .post_as(&dev, "/v1/apps/phased/rollback", json!({}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["release"]["version"], v1);
        assert!(
            reached(&server, &tokens[..50], "phased")
                .await
                .iter()
                .all(|v| *v == v1)
        );
        let (_, status_body) = server.get_as(&dev, "/v1/apps/phased").await;
        let states: Vec<(i64, &str)> = status_body["versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| (v["version"].as_i64().unwrap(), v["state"].as_str().unwrap()))
            .collect();
        assert_eq!(states, [(v3, "retired"), (v2, "retired"), (v1, "released")]);
        server.stop().await;
        db
    })
    .await;
}
