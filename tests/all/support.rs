//! Test support: a fresh database per test on each engine, and the real
//! server on 127.0.0.1:0 (in process, or as a child process).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Once;

use miniapp::Server;
use miniapp::config::ServeConfig;
use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const HELLO: &[u8] = include_bytes!("../../sample-programs/dist/hello.wasm");
pub const HOSTILE: &[u8] = include_bytes!("../../sample-programs/dist/hostile.wasm");
pub const TOKEN: &str = "test-admin-token";

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
    pub base: String,
    pub client: reqwest::Client,
    pub data_dir: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

pub fn config(db: &TestDb, data_dir: &Path) -> ServeConfig {
    let mut config = ServeConfig::with_data_dir(data_dir.to_path_buf());
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.database_url = Some(db.url.clone());
    config.admin_token = Some(TOKEN.to_string());
    config
}

impl TestServer {
    pub async fn start(config: ServeConfig) -> TestServer {
        let server = Server::bind(&config).await.expect("server starts");
        let base = format!("http://{}", server.local_addr());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        TestServer {
            base,
            client: reqwest::Client::new(),
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

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn upload(&self, appid: &str, bytes: &[u8]) -> reqwest::Response {
        self.client
            .post(self.url(&format!("/v1/apps/{appid}/versions")))
            .bearer_auth(TOKEN)
            .header("content-type", "application/wasm")
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap()
    }

    pub async fn upload_ok(&self, appid: &str, bytes: &[u8]) -> Value {
        let response = self.upload(appid, bytes).await;
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    pub async fn admin_get(&self, path: &str) -> (StatusCode, Value) {
        let response = self
            .client
            .get(self.url(path))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap())
    }

    pub async fn set_limits(&self, appid: &str, limits: Value) -> (StatusCode, Value) {
        let response = self
            .client
            .put(self.url(&format!("/v1/apps/{appid}/limits")))
            .bearer_auth(TOKEN)
            .json(&limits)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap())
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
        let (status, record) = self
            .admin_get(&format!("/v1/apps/{appid}/calls/{id}"))
            .await;
        assert_eq!(status, StatusCode::OK, "{record}");
        record
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
    pub base: String,
    pub child: tokio::process::Child,
    pub client: reqwest::Client,
}

impl ProcessServer {
    pub async fn spawn(db: &TestDb, data_dir: &Path) -> ProcessServer {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_miniapp"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(["--database-url", &db.url, "--admin-token", TOKEN])
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
            base: format!("http://{addr}"),
            child,
            client: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
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
