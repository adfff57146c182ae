//! Test support: a fresh database per test on each engine, and the real
//! server on 127.0.0.1:0 (in process, or as a child process).

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Once;
use std::sync::{Arc, Mutex};

pub use crate::fixtures::register_apps;
use miniapp::Server;
use miniapp::config::ServeConfig;
use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const HELLO: &[u8] = include_bytes!("../../sample-programs/dist/hello.wasm");
pub const HOSTILE: &[u8] = include_bytes!("../../sample-programs/dist/hostile.wasm");
pub const WHOAMI: &[u8] = include_bytes!("../../sample-programs/dist/whoami.wasm");
pub const NOTES: &[u8] = include_bytes!("../../sample-programs/dist/notes.wasm");
pub const LEADERBOARD: &[u8] = include_bytes!("../../sample-programs/dist/leaderboard.wasm");
pub const SHOP: &[u8] = include_bytes!("../../sample-programs/dist/shop.wasm");
pub const RED_ENVELOPE: &[u8] = include_bytes!("../../sample-programs/dist/red-envelope.wasm");
pub const PAYMENT_PROBE: &[u8] = include_bytes!("../../sample-programs/dist/payment-probe.wasm");
pub const SUPPORT_CHAT: &[u8] = include_bytes!("../../sample-programs/dist/support-chat.wasm");
pub const ADMIN_PASSWORD: &str = "test-admin-password";

/// The manifest the tests upload a sample with unless they need another.
pub fn manifest(name: &str) -> Value {
    serde_json::json!({"name": name, "version": "1.0.0"})
}

/// Logs stay quiet unless `TEST_LOG=1`.
pub fn init_logging() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            tracing_subscriber::fmt()
                .with_env_filter("info,miniapp=debug")
                .with_test_writer()
                .init();
        }
    });
}

/// A database of its own for one test.
pub struct TestDb {
    pub url: String,
    /// For PostgreSQL: the server URL to drop the database through.
    admin: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("test.db").display());
        TestDb {
            url,
            admin: None,
            _dir: Some(dir),
        }
    }

    async fn postgres(server_url: &str) -> TestDb {
        use sqlx::Connection;
        let name = format!("miniapp_test_{}", hex(&rand_bytes()));
        let mut conn = sqlx::PgConnection::connect(server_url)
            .await
            .unwrap_or_else(|err| {
                panic!("MINIAPP_TEST_DATABASE_URL is set but PostgreSQL is unreachable: {err}")
            });
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap();
        let (base, _) = server_url
            .rsplit_once('/')
            .expect("a database URL names a database");
        TestDb {
            url: format!("{base}/{name}"),
            admin: Some((server_url.to_string(), name)),
            _dir: None,
        }
    }

    async fn drop_database(self) {
        use sqlx::Connection;
        if let Some((server_url, name)) = &self.admin {
            let mut conn = sqlx::PgConnection::connect(server_url).await.unwrap();
            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut conn)
                .await
                .unwrap();
        }
    }
}

fn rand_bytes() -> [u8; 8] {
    use std::time::{SystemTime, UNIX_EPOCH};
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    (t ^ (n << 48) ^ u64::from(std::process::id())).to_le_bytes()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs `test` once per configured engine: SQLite always, PostgreSQL too when
/// `MINIAPP_TEST_DATABASE_URL` is set. Each run gets a fresh database.
pub async fn on_each_engine<F, Fut>(test: F)
where
    F: Fn(&'static str, TestDb) -> Fut,
    Fut: Future<Output = TestDb>,
{
    init_logging();
    let db = test("sqlite", TestDb::sqlite().await).await;
    db.drop_database().await;
    if let Ok(url) = std::env::var("MINIAPP_TEST_DATABASE_URL") {
        let db = test("postgres", TestDb::postgres(&url).await).await;
        db.drop_database().await;
    }
}

/// The server, spawned in this process on 127.0.0.1:0.
pub struct TestServer {
    pub api: Api,
    pub platform: std::sync::Arc<miniapp::platform::Platform>,
    pub data_dir: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

pub fn config(db: &TestDb, data_dir: &Path) -> ServeConfig {
    let mut config = ServeConfig::with_data_dir(data_dir.to_path_buf());
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.database_url = Some(db.url.clone());
    config.admin_password = Some(ADMIN_PASSWORD.to_string());
    config
}

impl TestServer {
    pub async fn start(config: ServeConfig) -> TestServer {
        let server = Server::bind(&config).await.expect("server starts");
        let base = format!("http://{}", server.local_addr());
        let platform = server.platform().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        TestServer {
            api: Api::new(base),
            platform,
            data_dir: config.data_dir,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Shuts down gracefully and waits until the server has finished.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

impl std::ops::Deref for TestServer {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// The `miniapp` binary running as a child process, for tests that watch
/// the process itself (resident memory, signals).
pub struct ProcessServer {
    pub api: Api,
    pub child: tokio::process::Child,
}

impl std::ops::Deref for ProcessServer {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

impl ProcessServer {
    pub async fn spawn(db: &TestDb, data_dir: &Path) -> ProcessServer {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_miniapp"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args([
                "--database-url",
                &db.url,
                "--admin-password",
                ADMIN_PASSWORD,
            ])
            .env("MINIAPP_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("the miniapp binary starts");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            let line = lines
                .next_line()
                .await
                .unwrap()
                .expect("the server logs its address before anything else ends");
            if let Some(rest) = line.split("addr=").nth(1) {
                break rest.split_whitespace().next().unwrap().to_string();
            }
        };
        // Keep draining the log so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        ProcessServer {
            api: Api::new(format!("http://{addr}")),
            child,
        }
    }

    /// Resident set size of the server process, in bytes.
    pub fn resident_bytes(&self) -> u64 {
        let pid = self.child.id().expect("the server is running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .expect("VmRSS in /proc/<pid>/status");
        kib * 1024
    }
}

/// A client of the platform's HTTP API, signing in as whoever a test needs.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub client: reqwest::Client,
    tokens: Arc<Mutex<HashMap<String, String>>>,
}

/// The password tests give every account they create.
pub fn password_of(username: &str) -> String {
    format!("pw-{username}-secret")
}

impl Api {
    pub fn new(base: String) -> Api {
        Api {
            base,
            client: reqwest::Client::new(),
            tokens: Arc::default(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    /// Sends a request with an optional token and JSON body; returns the
    /// status and the JSON answer (`Null` when the body is empty).
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let bytes = response.bytes().await.unwrap();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        (status, value)
    }

    pub async fn get_as(&self, token: &str, path: &str) -> (StatusCode, Value) {
        self.send(reqwest::Method::GET, path, Some(token), None)
            .await
    }

    pub async fn post_as(&self, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::POST, path, Some(token), Some(body))
            .await
    }

    /// Signs in and returns the session token.
    pub async fn login(&self, username: &str, password: &str) -> String {
        let (status, body) = self
            .send(
                reqwest::Method::POST,
                "/v1/sessions",
                None,
                Some(serde_json::json!({"username": username, "password": password})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "login {username}: {body}");
        body["token"].as_str().unwrap().to_string()
    }

    /// A token of the bootstrap admin.
    pub async fn admin(&self) -> String {
        self.token_of("admin", || self.login("admin", ADMIN_PASSWORD))
            .await
    }

    async fn token_of<F: Future<Output = String>>(
        &self,
        username: &str,
        make: impl FnOnce() -> F,
    ) -> String {
        if let Some(token) = self.tokens.lock().unwrap().get(username) {
            return token.clone();
        }
        let token = make().await;
        self.tokens
            .lock()
            .unwrap()
            .insert(username.to_string(), token.clone());
        token
    }

    /// A token of the account `username` with `roles`, created by the
    /// admin on first use (password: [`password_of`]).
    pub async fn account(&self, username: &str, roles: &[&str]) -> String {
        self.token_of(username, || async {
            let admin = self.admin().await;
            let (status, body) = self
                .post_as(
                    &admin,
                    "/v1/accounts",
                    serde_json::json!({
                        "username": username,
                        "password": password_of(username),
                        "roles": roles,
                    }),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED, "creating {username}: {body}");
            self.login(username, &password_of(username)).await
        })
        .await
    }

    /// The developer who owns the apps tests deploy.
    pub async fn developer(&self) -> String {
        self.account("dev", &["developer"]).await
    }

    /// A reviewer who develops nothing.
    pub async fn reviewer(&self) -> String {
        self.account("rev", &["reviewer"]).await
    }

    /// Uploads a component with a manifest as `token`.
    pub async fn upload_as(
        &self,
        token: &str,
        appid: &str,
        manifest: &Value,
        bytes: &[u8],
    ) -> reqwest::Response {
        let form = reqwest::multipart::Form::new()
            .text("manifest", manifest.to_string())
            .part(
                "component",
                reqwest::multipart::Part::bytes(bytes.to_vec()).file_name("program.wasm"),
            );
        self.client
            .post(self.url(&format!("/v1/apps/{appid}/versions")))
            .bearer_auth(token)
            .multipart(form)
            .send()
            .await
            .unwrap()
    }

    /// Registers `appid` for the developer unless it exists.
    pub async fn ensure_app(&self, appid: &str) {
        let dev = self.developer().await;
        let (status, body) = self
            .post_as(
                &dev,
                "/v1/apps",
                serde_json::json!({"appid": appid, "name": appid}),
            )
            .await;
        assert!(
            status == StatusCode::CREATED || status == StatusCode::CONFLICT,
            "{body}"
        );
    }

    /// Uploads as the developer (registering the app first if needed).
    pub async fn upload(&self, appid: &str, manifest: &Value, bytes: &[u8]) -> reqwest::Response {
        self.ensure_app(appid).await;
        let dev = self.developer().await;
        self.upload_as(&dev, appid, manifest, bytes).await
    }

    /// Takes a component all the way to users: upload, submit, approve,
    /// release to everyone. Returns the version's number.
    pub async fn deploy(&self, appid: &str, bytes: &[u8], manifest: Value) -> i64 {
        let response = self.upload(appid, &manifest, bytes).await;
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let version = body["version"].as_i64().unwrap();
        let (dev, rev) = (self.developer().await, self.reviewer().await);
        let steps = [
            (
                &dev,
                format!("/v1/apps/{appid}/versions/{version}/submit"),
                serde_json::json!({}),
            ),
            (
                &rev,
                format!("/v1/review/{appid}/{version}/approve"),
                serde_json::json!({}),
            ),
            (
                &dev,
                format!("/v1/apps/{appid}/release"),
                serde_json::json!({"version": version}),
            ),
        ];
        for (token, path, body) in steps {
            let (status, answer) = self.post_as(token, &path, body).await;
            assert_eq!(status, StatusCode::OK, "{path}: {answer}");
        }
        version
    }

    /// [`Api::deploy`] with the plain manifest.
    pub async fn upload_ok(&self, appid: &str, bytes: &[u8]) -> i64 {
        self.deploy(appid, bytes, manifest(appid)).await
    }

    /// GET as the developer.
    pub async fn dev_get(&self, path: &str) -> (StatusCode, Value) {
        let dev = self.developer().await;
        self.get_as(&dev, path).await
    }

    /// The usage record (with log) of the call a response came from.
    pub async fn call_record(&self, appid: &str, response: &reqwest::Response) -> Value {
        let id = response
            .headers()
            .get("x-miniapp-call-id")
            .expect("every call response names its call")
            .to_str()
            .unwrap()
            .to_string();
        let (status, record) = self.dev_get(&format!("/v1/apps/{appid}/calls/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{record}");
        record
    }
}

/// Creates an account as the admin; its token is then `server.login(username, password)`.
pub async fn create_account(server: &TestServer, username: &str, password: &str, roles: &[&str]) {
    let admin = server.admin().await;
    let (status, body) = server
        .post_as(
            &admin,
            "/v1/accounts",
            serde_json::json!({"username": username, "password": password, "roles": roles}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "creating {username}: {body}");
}
