//! The identity capability through the `whoami` sample: openids unlinkable
//! across apps, profile behind the user's grant, one-time login codes.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{HELLO, TestServer, WHOAMI, config, on_each_engine, register_apps};

fn whoami_manifest(scopes: &[&str]) -> Value {
    json!({"name": "Who am I", "version": "1.0.0", "capabilities": ["identity"], "scopes": scopes})
}

/// Registers `appid` for `developer`, deploys whoami on it, returns the app secret.
async fn whoami_app(server: &TestServer, developer: &str, appid: &str, scopes: &[&str]) -> String {
    let (status, body) = server
        .post_as(
            developer,
            "/v1/apps",
            json!({"appid": appid, "name": appid}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let secret = body["secret"].as_str().unwrap().to_string();
    let response = server
        .upload_as(developer, appid, &whoami_manifest(scopes), WHOAMI)
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let version = response.json::<Value>().await.unwrap()["version"]
        .as_i64()
        .unwrap();
    let rev = server.reviewer().await;
    let steps = [
        (
            developer,
            format!("/v1/apps/{appid}/versions/{version}/submit"),
            json!({}),
        ),
        (
            rev.as_str(),
            format!("/v1/review/{appid}/{version}/approve"),
            json!({}),
        ),
        (
            developer,
            format!("/v1/apps/{appid}/release"),
            json!({"version": version}),
        ),
    ];
    for (token, path, body) in steps {
        let (status, answer) = server.post_as(token, &path, body).await;
        assert_eq!(status, StatusCode::OK, "{path}: {answer}");
    }
    secret
}

async fn call(
    server: &TestServer,
    token: Option<&str>,
    method: Method,
    path: &str,
) -> (StatusCode, Value) {
    server.send(method, path, token, None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openids_are_stable_per_app_and_unlinkable_across_apps() {
    on_each_engine(|_, db| async move {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(config(&db, dir.path())).await;
        let dev = server.developer().await;
        let other = server.account("otherdev", &["developer"]).await;
        whoami_app(&server, &dev, "who-a", &[]).await;
        whoami_app(&server, &dev, "who-b", &[]).await;
        whoami_app(&server, &other, "who-c", &[]).await;
        let (ada, bob) = (
            // Letters outside hex, so no hex id can spell the username by chance.
            server.account("lovelace", &[]).await,
            server.account("bob", &[]).await,
        );

        let (status, denied) = call(&server, None, Method::GET, "/apps/who-a/").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "anonymous: {denied}");
        assert_eq!(denied["error"], "denied");

        let get = |token: &str, appid: &str| {
            let path = format!("/apps/{appid}/");
            let token = token.to_string();
            let server = &server;
            async move {
                let (status, body) = call(server, Some(&token), Method::GET, &path).await;
                assert_eq!(status, StatusCode::OK, "{body}");
                body
            }
        };
        let ada_a = get(&ada, "who-a").await;
        assert_eq!(ada_a, get(&ada, "who-a").await, "stable");
        let ada_b = get(&ada, "who-b").await;
        let ada_c = get(&ada, "who-c").await;
        let bob_a = get(&bob, "who-a").await;
        assert_ne!(ada_a["openid"], ada_b["openid"], "unlinkable across apps");
        assert_ne!(ada_a["openid"], ada_c["openid"]);
        assert_ne!(ada_a["openid"], bob_a["openid"]);
        assert_eq!(
            ada_a["unionid"], ada_b["unionid"],
            "one developer, one unionid"
        );
        assert_ne!(ada_a["unionid"], ada_c["unionid"], "another developer");
        let (_, me) = server.get_as(&ada, "/v1/me").await;
        let account_id = me["id"].to_string();
        for body in [&ada_a, &ada_b, &ada_c] {
            let text = body.to_string();
            assert!(!text.contains("lovelace"), "no username: {text}");
            assert_eq!(body["openid"].as_str().unwrap().len(), 32);
            assert_ne!(body["openid"].as_str().unwrap(), account_id);
        }
        server.stop().await;
        db
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_profile_needs_the_scope_declared_and_granted() {
    on_each_engine(|_, db| async move {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(config(&db, dir.path())).await;
        let dev = server.developer().await;
        whoami_app(&server, &dev, "profiled", &["profile"]).await;
        whoami_app(&server, &dev, "undeclared", &[]).await;
        let admin = server.admin().await;
        let (status, _) = server
            .post_as(
                &admin,
                "/v1/accounts",
                json!({"username": "carol", "password": "carols password",
                       "nickname": "Carol", "avatar_url": "https://example.com/c.png"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        let carol = server.login("carol", "carols password").await;

        // Denied first: no grant yet.
        let (status, body) =
            call(&server, Some(&carol), Method::GET, "/apps/profiled/profile").await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body["error"], "denied");

        let (status, _) = server
            .send(
                Method::PUT,
                "/v1/me/grants/profiled/profile",
                Some(&carol),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let (status, body) =
            call(&server, Some(&carol), Method::GET, "/apps/profiled/profile").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["nickname"], "Carol");
        assert_eq!(body["avatar_url"], "https://example.com/c.png");
        let (_, grants) = server.get_as(&carol, "/v1/me/grants").await;
        assert_eq!(grants["grants"].as_array().unwrap().len(), 1, "{grants}");
        assert_eq!(grants["grants"][0]["appid"], "profiled");

        // A grant is no use to a version whose manifest lacks the scope.
        let (status, _) = server
            .send(
                Method::PUT,
                "/v1/me/grants/undeclared/profile",
                Some(&carol),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = call(
            &server,
            Some(&carol),
            Method::GET,
            "/apps/undeclared/profile",
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);

        // Revoked: denied again. Bad scopes and apps are not found.
        let (status, _) = server
            .send(
                Method::DELETE,
                "/v1/me/grants/profiled/profile",
                Some(&carol),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, _) = call(&server, Some(&carol), Method::GET, "/apps/profiled/profile").await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) = server
            .send(
                Method::PUT,
                "/v1/me/grants/profiled/bank",
                Some(&carol),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = server
            .send(
                Method::PUT,
                "/v1/me/grants/nosuch/profile",
                Some(&carol),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = server
            .send(Method::PUT, "/v1/me/grants/profiled/profile", None, None)
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "only the user grants");

        // A program without the identity capability learns nothing.
        server.upload_ok("plain", HELLO).await;
        server.stop().await;
        db
    })
    .await;
}

async fn login_code(server: &TestServer, user: &str) -> String {
    let (status, body) = call(server, Some(user), Method::POST, "/apps/coded/login").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["code"].as_str().unwrap().to_string()
}

async fn exchange(
    server: &TestServer,
    appid: &str,
    secret: &str,
    code: &str,
) -> (StatusCode, Value) {
    let path = format!(
        "/v1/sns/jscode2session?appid={appid}&secret={secret}&js_code={code}&grant_type=authorization_code"
    );
    server.send(Method::GET, &path, None, None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_codes_work_once_for_their_own_app_before_they_expire() {
    on_each_engine(|_, db| async move {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(config(&db, dir.path())).await;
        let dev = server.developer().await;
        let secret = whoami_app(&server, &dev, "coded", &[]).await;
        let other_secret = whoami_app(&server, &dev, "elsewhere", &[]).await;
        let user = server.account("dana", &[]).await;
        let (_, ids) = call(&server, Some(&user), Method::GET, "/apps/coded/").await;

        let (status, _) = call(&server, None, Method::POST, "/apps/coded/login").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "no user, no code");

        let first = login_code(&server, &user).await;
        let (status, body) = exchange(&server, "coded", "wrong", &first).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        let (status, body) = exchange(&server, "elsewhere", &other_secret, &first).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "another app's code: {body}"
        );
        assert_eq!(body["error"]["code"], "invalid_code");
        let (status, body) = exchange(&server, "coded", &secret, &first).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["openid"], ids["openid"]);
        assert_eq!(body["unionid"], ids["unionid"]);
        let (status, _) = exchange(&server, "coded", &secret, &first).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "single use");

        // Past its five minutes a code is dead.
        let stale = login_code(&server, &user).await;
        let pool = sqlx::AnyPool::connect(&db.url).await.unwrap();
        sqlx::query("UPDATE login_codes SET expires_at = 0 WHERE used_at IS NULL")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
        let (status, _) = exchange(&server, "coded", &secret, &stale).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "expired");

        // Rotating the secret retires the old one.
        let (status, rotated) = server
            .post_as(&dev, "/v1/apps/coded/secret", json!({}))
            .await;
        assert_eq!(status, StatusCode::OK);
        let fresh = login_code(&server, &user).await;
        let (status, _) = exchange(&server, "coded", &secret, &fresh).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _) = exchange(
            &server,
            "coded",
            rotated["secret"].as_str().unwrap(),
            &fresh,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        server.stop().await;
        db
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_codes_and_launches_for_a_deleted_app_store_nothing() {
    use miniapp::db::Db;
    use miniapp::domain::AppId;
    use miniapp::lifecycle::{Scene, Scope};

    on_each_engine(|_, test_db| async move {
        let db = Db::connect(&test_db.url).await.unwrap();
        register_apps(&db, &["gone"]).await;
        let user = db
            .account_by_username(&"app-owner".parse().unwrap())
            .await
            .unwrap()
            .unwrap()
            .id;
        let gone: AppId = "gone".parse().unwrap();
        let code = |n: u8| format!("{n:064}");
        let launch = || db.insert_launch(&gone, user, 1, "release", "/", "", Scene::Link);
        assert!(db.grant(user, &gone, Scope::Profile).await.unwrap());
        assert!(
            db.grant(user, &gone, Scope::Profile).await.unwrap(),
            "again"
        );
        assert!(
            db.insert_login_code(&code(1), &gone, user, i64::MAX)
                .await
                .unwrap()
        );
        assert!(launch().await.unwrap().is_some());

        // What a call or a user still at it asks for after the delete.
        db.delete_app(&gone).await.unwrap();
        assert!(!db.grant(user, &gone, Scope::Profile).await.unwrap());
        assert!(
            !db.insert_login_code(&code(2), &gone, user, i64::MAX)
                .await
                .unwrap()
        );
        assert!(launch().await.unwrap().is_none());
        assert!(db.grants(user).await.unwrap().is_empty());
        assert!(db.launch_counts(&gone).await.unwrap().is_empty());
        assert_eq!(
            db.redeem_login_code(&code(2), &gone, 0).await.unwrap(),
            None
        );
        db.close().await;
        test_db
    })
    .await;
}
