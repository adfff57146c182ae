//! The platform's operations, between the HTTP layer and the parts: upload a
//! version, invoke an app, read usage. Owns the cache of ready programs and
//! the usage recorder.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OnceCell, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::db::{CallRecord, Db, StoredCall, VersionRecord, now_ms};
use crate::domain::{AppId, Sha256Digest};
use crate::runtime::{CallReport, ComponentInfo, Invocation, Limits, Program, Rejection, Runtime};

/// How long a node trusts its cached idea of an app's active version before
/// asking the database again. Bounds how stale a node can be when another
/// node uploads.
pub const ACTIVE_VERSION_TTL: Duration = Duration::from_secs(2);

/// Default cap on an uploaded component: 2 MiB.
pub const DEFAULT_MAX_COMPONENT_BYTES: usize = 2 << 20;

/// Why an operation failed, in terms the HTTP layer maps to statuses.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    #[error("{0}")]
    Rejected(#[from] Rejection),
    #[error("the component is {size} bytes; the limit is {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("app {0} not found")]
    AppNotFound(AppId),
    #[error("app {0} has no version yet")]
    NoVersion(AppId),
    #[error("{0}")]
    InvalidLimits(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// The result of a successful upload.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Uploaded {
    pub appid: AppId,
    pub version: i64,
    pub sha256: Sha256Digest,
    pub size: usize,
    #[serde(flatten)]
    pub info: ComponentInfo,
}

/// A finished call and the identifiers to find its usage record by.
pub struct Invoked {
    pub call_id: String,
    pub version: i64,
    pub report: CallReport,
}

struct Ready {
    version: i64,
    program: Program,
    limits: Limits,
    checked_at: Instant,
}

/// A version being loaded: the first caller loads, the others wait for it.
type Loading = OnceCell<Arc<Ready>>;

/// The platform core shared by every request handler.
pub struct Platform {
    db: Db,
    runtime: Arc<Runtime>,
    max_component_bytes: usize,
    default_limits: Limits,
    ready: Mutex<HashMap<AppId, Arc<Ready>>>,
    loading: Mutex<HashMap<(AppId, i64), Arc<Loading>>>,
    usage: UsageRecorder,
}

impl Platform {
    /// The platform over `db` and `runtime`; apps without limits of their own
    /// get `default_limits`, which must lie within the runtime's maxima.
    pub fn new(
        db: Db,
        runtime: Runtime,
        max_component_bytes: usize,
        default_limits: Limits,
    ) -> Platform {
        let usage = UsageRecorder::start(db.clone());
        Platform {
            db,
            runtime: Arc::new(runtime),
            max_component_bytes,
            default_limits,
            ready: Mutex::new(HashMap::new()),
            loading: Mutex::new(HashMap::new()),
            usage,
        }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    pub fn max_component_bytes(&self) -> usize {
        self.max_component_bytes
    }

    /// Validates, compiles and stores a component as the app's next version.
    /// Nothing is stored or compiled for a component that fails inspection.
    pub async fn upload(&self, appid: &AppId, bytes: Vec<u8>) -> Result<Uploaded, PlatformError> {
        if bytes.len() > self.max_component_bytes {
            return Err(PlatformError::TooLarge {
                size: bytes.len(),
                limit: self.max_component_bytes,
            });
        }
        let info = self.runtime.inspect(&bytes)?;
        let digest = Sha256Digest::of(&bytes);
        let runtime = self.runtime.clone();
        let (program, bytes) = tokio::task::spawn_blocking(move || {
            let program = runtime.prepare(&digest, &bytes);
            (program, bytes)
        })
        .await
        .map_err(anyhow::Error::from)?;
        let program = program?;
        let version = self.db.add_version(appid, &digest, &bytes, &info).await?;
        let limits = self.limits_of(appid).await?;
        self.remember(appid, version, program, limits);
        tracing::info!(%appid, version, %digest, size = bytes.len(), "version uploaded");
        Ok(Uploaded {
            appid: appid.clone(),
            version,
            sha256: digest,
            size: bytes.len(),
            info,
        })
    }

    /// Gives an app its own limits within the platform maxima, or with
    /// `None` returns it to the platform defaults.
    pub async fn set_limits(
        &self,
        appid: &AppId,
        limits: Option<Limits>,
    ) -> Result<Limits, PlatformError> {
        if let Some(limits) = &limits {
            limits
                .check_within(&self.runtime.config().max_limits)
                .map_err(PlatformError::InvalidLimits)?;
        }
        if !self.db.set_limits(appid, limits.as_ref()).await? {
            return Err(PlatformError::AppNotFound(appid.clone()));
        }
        self.forget(appid);
        Ok(limits.unwrap_or(self.default_limits))
    }

    /// Runs one invocation of the app's active version and records its usage.
    pub async fn invoke(
        &self,
        appid: &AppId,
        invocation: Invocation,
    ) -> Result<Invoked, PlatformError> {
        let ready = self.ready(appid).await?;
        let entry = match invocation {
            Invocation::Request(_) => "request",
            Invocation::Event(_) => "event",
        };
        let started_at = now_ms();
        let report = self
            .runtime
            .call(&ready.program, &ready.limits, invocation)
            .await;
        let call_id = new_call_id();
        tracing::debug!(
            %appid, version = ready.version, call_id, outcome = report.outcome.kind(),
            fuel = report.usage.fuel_consumed, "call finished"
        );
        self.usage
            .record(CallRecord {
                id: call_id.clone(),
                appid: appid.clone(),
                version: ready.version,
                entry,
                started_at,
                fuel_consumed: report.usage.fuel_consumed,
                wall_time_us: report.usage.wall_time.as_micros() as u64,
                peak_memory_bytes: report.usage.peak_memory_bytes,
                host_calls: report.usage.host_calls,
                outcome: report.outcome.kind(),
                detail: report.outcome.detail().map(str::to_string),
                log: report.log.clone(),
            })
            .await;
        Ok(Invoked {
            call_id,
            version: ready.version,
            report,
        })
    }

    /// The versions of an app, newest first.
    pub async fn versions(&self, appid: &AppId) -> Result<Vec<VersionRecord>, PlatformError> {
        let versions = self.db.versions(appid).await?;
        if versions.is_empty() && !self.db.app_exists(appid).await? {
            return Err(PlatformError::AppNotFound(appid.clone()));
        }
        Ok(versions)
    }

    /// The latest usage records of an app, newest first. Includes every call
    /// this node has finished.
    pub async fn recent_calls(
        &self,
        appid: &AppId,
        limit: i64,
    ) -> Result<Vec<StoredCall>, PlatformError> {
        self.usage.flush().await;
        if !self.db.app_exists(appid).await? {
            return Err(PlatformError::AppNotFound(appid.clone()));
        }
        Ok(self.db.recent_calls(appid, limit).await?)
    }

    /// One call's usage record and log.
    pub async fn call(&self, appid: &AppId, id: &str) -> Result<Option<StoredCall>, PlatformError> {
        self.usage.flush().await;
        Ok(self.db.call(appid, id).await?)
    }

    /// Writes every pending usage record and stops the recorder.
    pub async fn shutdown(&self) {
        self.usage.shutdown().await;
    }

    async fn limits_of(&self, appid: &AppId) -> anyhow::Result<Limits> {
        Ok(self
            .db
            .active_version(appid)
            .await?
            .and_then(|active| active.limits)
            .unwrap_or(self.default_limits))
    }

    fn remember(
        &self,
        appid: &AppId,
        version: i64,
        program: Program,
        limits: Limits,
    ) -> Arc<Ready> {
        let ready = Arc::new(Ready {
            version,
            program,
            limits,
            checked_at: Instant::now(),
        });
        lock(&self.ready).insert(appid.clone(), ready.clone());
        ready
    }

    fn forget(&self, appid: &AppId) {
        lock(&self.ready).remove(appid);
    }

    /// The app's active version, ready to run: from this node's cache while
    /// fresh, else loaded (from the artifact cache, or compiled) once even
    /// under concurrent first calls.
    async fn ready(&self, appid: &AppId) -> Result<Arc<Ready>, PlatformError> {
        let cached = lock(&self.ready).get(appid).cloned();
        if let Some(ready) = &cached
            && ready.checked_at.elapsed() < ACTIVE_VERSION_TTL
        {
            return Ok(ready.clone());
        }
        let Some(active) = self.db.active_version(appid).await? else {
            return Err(if self.db.app_exists(appid).await? {
                PlatformError::NoVersion(appid.clone())
            } else {
                PlatformError::AppNotFound(appid.clone())
            });
        };
        let limits = active.limits.unwrap_or(self.default_limits);
        if let Some(ready) = cached
            && ready.version == active.version
            && ready.limits == limits
        {
            return Ok(self.remember(appid, ready.version, ready.program.clone(), limits));
        }

        let key = (appid.clone(), active.version);
        let cell = lock(&self.loading).entry(key.clone()).or_default().clone();
        let loaded = cell
            .get_or_try_init(|| async {
                let bytes = self.db.component_bytes(&active.sha256).await?;
                let runtime = self.runtime.clone();
                let digest = active.sha256;
                let program = tokio::task::spawn_blocking(move || runtime.prepare(&digest, &bytes))
                    .await
                    .map_err(anyhow::Error::from)??;
                Ok::<_, PlatformError>(Arc::new(Ready {
                    version: active.version,
                    program,
                    limits,
                    checked_at: Instant::now(),
                }))
            })
            .await;
        lock(&self.loading).remove(&key);
        let loaded = loaded?.clone();
        lock(&self.ready).insert(appid.clone(), loaded.clone());
        Ok(loaded)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// A call id: 48 bits of unix milliseconds, then 80 random bits, in hex.
/// Time-ordered, so usage records append to the end of their index instead
/// of landing at random places in it.
fn new_call_id() -> String {
    let mut id = [0u8; 16];
    id[..6].copy_from_slice(&(now_ms() as u64).to_be_bytes()[2..]);
    id[6..].copy_from_slice(&rand::random::<[u8; 10]>());
    hex::encode(id)
}

enum UsageMessage {
    Record(CallRecord),
    Flush(oneshot::Sender<()>),
}

/// Writes usage records in batches off the call path: a call never waits
/// for the database to record it. Records reach the database within
/// [`USAGE_LINGER`] plus one write; [`UsageRecorder::flush`] waits for
/// everything sent so far.
struct UsageRecorder {
    sender: Mutex<Option<mpsc::Sender<UsageMessage>>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

const USAGE_BATCH: usize = crate::db::CALLS_PER_INSERT;

/// How long the recorder waits for more records before writing a batch.
const USAGE_LINGER: Duration = Duration::from_millis(10);

impl UsageRecorder {
    fn start(db: Db) -> UsageRecorder {
        let (sender, mut receiver) = mpsc::channel::<UsageMessage>(8192);
        let task = tokio::spawn(async move {
            let mut batch = Vec::with_capacity(USAGE_BATCH);
            let mut waiting = Vec::new();
            while let Some(first) = receiver.recv().await {
                // Gather what arrives within a short linger into one write:
                // fewer, larger statements cost the database far less.
                let linger_until = tokio::time::Instant::now() + USAGE_LINGER;
                let mut next = Some(first);
                while let Some(message) = next.take() {
                    match message {
                        UsageMessage::Record(record) => batch.push(record),
                        // Someone is waiting: write now.
                        UsageMessage::Flush(done) => {
                            waiting.push(done);
                            break;
                        }
                    }
                    if batch.len() >= USAGE_BATCH {
                        break;
                    }
                    next = tokio::time::timeout_at(linger_until, receiver.recv())
                        .await
                        .ok()
                        .flatten();
                }
                if !batch.is_empty() {
                    write_with_retries(&db, &batch).await;
                    batch.clear();
                }
                for done in waiting.drain(..) {
                    let _ = done.send(());
                }
            }
        });
        UsageRecorder {
            sender: Mutex::new(Some(sender)),
            task: Mutex::new(Some(task)),
        }
    }

    fn sender(&self) -> Option<mpsc::Sender<UsageMessage>> {
        lock(&self.sender).clone()
    }

    async fn record(&self, record: CallRecord) {
        if let Some(sender) = self.sender() {
            let _ = sender.send(UsageMessage::Record(record)).await;
        }
    }

    async fn flush(&self) {
        let (done, finished) = oneshot::channel();
        if let Some(sender) = self.sender()
            && sender.send(UsageMessage::Flush(done)).await.is_ok()
        {
            let _ = finished.await;
        }
    }

    async fn shutdown(&self) {
        lock(&self.sender).take();
        let task = lock(&self.task).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

/// Writes a batch of usage records, retrying a failing database with
/// backoff (50 ms doubling, five attempts in all) before giving up on the
/// batch with an error in the log.
async fn write_with_retries(db: &Db, batch: &[CallRecord]) {
    let mut backoff = Duration::from_millis(50);
    for attempt in 1..=5 {
        match db.insert_calls(batch).await {
            Ok(()) => return,
            Err(err) if attempt < 5 => {
                tracing::warn!(error = %err, attempt, "writing usage records failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
            Err(err) => {
                tracing::error!(error = %err, records = batch.len(), "usage records lost: the database refused them five times");
            }
        }
    }
}
