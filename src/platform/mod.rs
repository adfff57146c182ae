//! The platform's operations, between the HTTP layer and the parts: who
//! may do what (accounts), how a version travels to users (apps), and
//! running a call of the version a user reaches. Owns the caches of routes,
//! sessions and ready programs, and the usage recorder.

mod accounts;
mod apps;
mod messaging;
mod outbox;
mod payment;
mod signals;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, OnceCell, mpsc, oneshot};
use tokio::task::JoinHandle;

pub use accounts::{NewAccount, Session};
pub use apps::{AppStatus, Launch, NewApp, VersionDetail, VersionSummary};
pub use outbox::DEFAULT_RETRY_SCHEDULE;
pub use payment::{MerchantStatement, WalletStatement};

use crate::accounts::{Account, AccountId, Role};
use crate::db::{CallRecord, Db, LifecycleError, Route, StoredCall, call_id, now_ms};
use crate::domain::AppId;
use crate::hashing::Hashing;
use crate::identity::Identity;
use crate::lifecycle::{Capability, InvalidManifest, InvalidTransition, Manifest};
use crate::messaging::{Clock, Messaging};
use crate::payment::{PaymentError, Payments};
use crate::runtime::{
    CallReport, Grants, IdentityGrant, Invocation, Limits, MessagingGrant, PaymentGrant, Program,
    Rejection, Runtime, StorageGrant,
};
use crate::storage::{Quotas, Storage};

/// How long a node trusts its cached idea of which versions of an app users
/// reach, and of a session, before asking the database again. Bounds how
/// stale a node can be when another node releases or revokes.
pub const CACHE_TTL: Duration = Duration::from_secs(2);

/// Default cap on an uploaded component: 2 MiB.
pub const DEFAULT_MAX_COMPONENT_BYTES: usize = 2 << 20;

/// Why an operation failed, in terms the HTTP layer maps to statuses.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    #[error("{0}")]
    Rejected(#[from] Rejection),
    #[error(transparent)]
    InvalidManifest(#[from] InvalidManifest),
    #[error("the component is {size} bytes; the limit is {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    /// No credentials, or credentials that are wrong, expired or revoked.
    #[error("{0}")]
    Unauthenticated(String),
    /// Known caller, not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// Too many attempts; come back later.
    #[error("{0}")]
    Throttled(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Transition(#[from] InvalidTransition),
    #[error(transparent)]
    Payment(#[from] PaymentError),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<LifecycleError> for PlatformError {
    fn from(err: LifecycleError) -> Self {
        match err {
            LifecycleError::VersionNotFound(version) => {
                PlatformError::NotFound(format!("version {version} not found"))
            }
            LifecycleError::Transition(transition) => PlatformError::Transition(transition),
            LifecycleError::Conflict(message) => PlatformError::Conflict(message),
            LifecycleError::Internal(err) => PlatformError::Internal(err),
        }
    }
}

/// Which version of an app a call reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// The release: the phased version for users in its phase, the
    /// fallback for the others.
    Release,
    /// The trial version, for the app's developer and testers.
    Trial,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Release => "release",
            Channel::Trial => "trial",
        }
    }
}

/// Settings of the platform beyond the runtime's.
#[derive(Debug, Clone)]
pub struct PlatformSettings {
    /// Largest component accepted at upload. Defaults to 2 MiB.
    pub max_component_bytes: usize,
    /// The limits of versions that ask for none; within the runtime's maxima.
    pub default_limits: Limits,
    /// How long a session token lives. Defaults to 7 days.
    pub session_ttl: Duration,
    /// The waits before each redelivery of a refused event; after the
    /// last, the event is given up. Defaults to WeChat Pay's schedule.
    pub event_retry_schedule: Vec<Duration>,
    /// Whether this node delivers events. Off for nodes that only serve
    /// requests; at least one node of a platform must deliver.
    pub dispatch_events: bool,
    /// Notifications one app may send one user per UTC day.
    pub daily_notifications: i64,
    /// How long a call's usage record and log are kept. Defaults to 7 days;
    /// the nodes that deliver events sweep older ones once a minute.
    pub call_retention: Duration,
}

/// A finished call and the identifiers to find its usage record by.
pub struct Invoked {
    pub call_id: String,
    pub version: i64,
    /// The call's report; its log has gone into the usage record
    /// (read it back with [`Platform::call`]), so here it is empty.
    pub report: CallReport,
}

/// A version ready to run: compiled and linked, with what its manifest grants.
struct Ready {
    program: Program,
    limits: Limits,
    quotas: Quotas,
    /// The manifest's templates, shared with every call's grant.
    messaging: Arc<crate::messaging::MessagingSettings>,
    manifest: Manifest,
}

/// A version being loaded: the first caller loads, the others wait for it.
type Loading = OnceCell<Arc<Ready>>;

struct Cached<T> {
    value: T,
    checked_at: Instant,
}

impl<T> Cached<T> {
    fn new(value: T) -> Self {
        Cached {
            value,
            checked_at: Instant::now(),
        }
    }

    fn fresh(&self) -> bool {
        self.checked_at.elapsed() < CACHE_TTL
    }
}

/// The sessions a node has checked lately, by token digest.
#[derive(Default)]
struct Sessions {
    cached: HashMap<String, Cached<Account>>,
    /// Counts revocations on this node: a check that read a session before
    /// a revocation does not cache it after.
    revocations: u64,
}

/// The most sessions a node caches; past it the cache starts over.
const MAX_CACHED_SESSIONS: usize = 10_000;

/// What a node remembers of an app to route calls without the database.
#[derive(Clone, Copy)]
struct AppRoute {
    route: Route,
    owner: Option<AccountId>,
}

/// The platform core shared by every request handler.
pub struct Platform {
    db: Db,
    runtime: Arc<Runtime>,
    identity: Arc<Identity>,
    storage: Arc<Storage>,
    payments: Arc<Payments>,
    messaging: Arc<Messaging>,
    /// Every argon2 hash of this node passes it: passwords and PINs.
    hashing: Arc<Hashing>,
    /// On PostgreSQL: carries other nodes' signals (inbox news, queued
    /// events) to this node's streams and dispatcher.
    signals: Mutex<Option<JoinHandle<()>>>,
    /// Rung when this node queues an event, so its dispatcher delivers at once.
    events_queued: Arc<Notify>,
    dispatcher: Mutex<Option<outbox::Dispatcher>>,
    settings: PlatformSettings,
    routes: Mutex<HashMap<AppId, Cached<AppRoute>>>,
    sessions: Mutex<Sessions>,
    programs: Mutex<HashMap<(AppId, i64), Arc<Ready>>>,
    loading: Mutex<HashMap<(AppId, i64), Arc<Loading>>>,
    usage: UsageRecorder,
}

impl Platform {
    /// The platform over `db` and `runtime`, delivering events unless
    /// `settings` say otherwise. `settings.default_limits` must lie within
    /// the runtime's maxima.
    pub async fn new(
        db: Db,
        runtime: Runtime,
        settings: PlatformSettings,
    ) -> anyhow::Result<Arc<Platform>> {
        let identity = Arc::new(Identity::load(db.clone()).await?);
        let usage = UsageRecorder::start(db.clone());
        let events_queued = Arc::new(Notify::new());
        let hashing = Arc::new(Hashing::default());
        let platform = Arc::new(Platform {
            storage: Arc::new(Storage::new(db.clone())),
            payments: Arc::new(Payments::new(
                db.clone(),
                events_queued.clone(),
                hashing.clone(),
            )),
            hashing,
            messaging: Arc::new(Messaging::new(
                db.clone(),
                Clock::system(),
                settings.daily_notifications,
                events_queued.clone(),
            )),
            signals: Mutex::new(None),
            events_queued,
            dispatcher: Mutex::new(None),
            db,
            runtime: Arc::new(runtime),
            identity,
            settings,
            routes: Mutex::new(HashMap::new()),
            sessions: Mutex::new(Sessions::default()),
            programs: Mutex::new(HashMap::new()),
            loading: Mutex::new(HashMap::new()),
            usage,
        });
        if platform.db.engine() == crate::db::Engine::Postgres {
            let listener = signals::listen(
                platform.db.url().to_string(),
                platform.messaging.clone(),
                platform.events_queued.clone(),
            );
            *lock(&platform.signals) = Some(listener);
        }
        if platform.settings.dispatch_events {
            let dispatcher = outbox::Dispatcher::start(
                Arc::downgrade(&platform),
                platform.events_queued.clone(),
            );
            *lock(&platform.dispatcher) = Some(dispatcher);
        }
        Ok(platform)
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    pub fn payments(&self) -> &Payments {
        &self.payments
    }

    pub fn messaging_service(&self) -> Arc<Messaging> {
        self.messaging.clone()
    }

    pub fn max_component_bytes(&self) -> usize {
        self.settings.max_component_bytes
    }

    /// Runs one invocation of the version of `appid` that `caller` reaches
    /// on `channel`, and records its usage.
    pub async fn invoke(
        &self,
        appid: &AppId,
        channel: Channel,
        caller: Option<&Account>,
        invocation: Invocation,
    ) -> Result<Invoked, PlatformError> {
        let app = self.app_route(appid).await?;
        let version = self.reached_version(appid, &app, channel, caller).await?;
        self.run(appid, &app, version, channel, caller, invocation)
            .await
    }

    /// Runs one invocation of `version`, with what its manifest grants,
    /// and records its usage.
    async fn run(
        &self,
        appid: &AppId,
        app: &AppRoute,
        version: i64,
        channel: Channel,
        caller: Option<&Account>,
        invocation: Invocation,
    ) -> Result<Invoked, PlatformError> {
        let ready = self.ready(appid, version).await?;
        let manifest = &ready.manifest;
        let caller_id = caller.map(|account| account.id);
        let grants = Grants {
            identity: manifest
                .declares(Capability::Identity)
                .then(|| IdentityGrant {
                    service: self.identity.clone(),
                    appid: appid.clone(),
                    owner: app.owner,
                    caller: caller_id,
                    scopes: manifest.scopes.clone(),
                }),
            storage: manifest
                .declares(Capability::Storage)
                .then(|| StorageGrant {
                    service: self.storage.clone(),
                    appid: appid.clone(),
                    caller: caller_id,
                    quotas: ready.quotas,
                }),
            payment: manifest
                .declares(Capability::Payment)
                .then(|| PaymentGrant {
                    service: self.payments.clone(),
                    appid: appid.clone(),
                    channel: channel.as_str(),
                    caller: caller_id,
                    identity: self.identity.clone(),
                    owner: app.owner,
                    payout: manifest.payment.payout,
                    // Checked at upload; a stored manifest always resolves.
                    order_ttl: manifest.payment.order_ttl().unwrap_or_default(),
                }),
            messaging: manifest
                .declares(Capability::Messaging)
                .then(|| MessagingGrant {
                    service: self.messaging.clone(),
                    appid: appid.clone(),
                    settings: ready.messaging.clone(),
                }),
        };
        let entry = match invocation {
            Invocation::Request(_) => "request",
            Invocation::Event(_) => "event",
        };
        let started_at = now_ms();
        let mut report = self
            .runtime
            .call(&ready.program, &ready.limits, grants, invocation)
            .await;
        let call_id = call_id(started_at);
        tracing::debug!(
            %appid, version, call_id, outcome = report.outcome.kind(),
            fuel = report.usage.fuel_consumed, "call finished"
        );
        self.usage
            .record(CallRecord {
                id: call_id.clone(),
                appid: appid.clone(),
                version,
                entry,
                started_at,
                fuel_consumed: report.usage.fuel_consumed,
                wall_time_us: report.usage.wall_time.as_micros() as u64,
                peak_memory_bytes: report.usage.peak_memory_bytes,
                host_calls: report.usage.host_calls,
                outcome: report.outcome.kind(),
                detail: report.outcome.detail().map(str::to_string),
                log: std::mem::take(&mut report.log),
            })
            .await;
        Ok(Invoked {
            call_id,
            version,
            report,
        })
    }

    /// Which version `caller` reaches on `channel`.
    async fn reached_version(
        &self,
        appid: &AppId,
        app: &AppRoute,
        channel: Channel,
        caller: Option<&Account>,
    ) -> Result<i64, PlatformError> {
        match channel {
            Channel::Release => {
                let route = &app.route;
                let Some(released) = route.released_version else {
                    return Err(PlatformError::NotFound(format!(
                        "app {appid} has no release yet"
                    )));
                };
                let in_phase = caller.is_some_and(|account| {
                    crate::lifecycle::in_phase(appid, released, account.id, route.release_percent)
                });
                if in_phase || route.release_percent >= 100 {
                    return Ok(released);
                }
                route.fallback_version.ok_or_else(|| {
                    PlatformError::NotFound(format!("app {appid} is not released to you yet"))
                })
            }
            Channel::Trial => {
                let Some(caller) = caller else {
                    return Err(PlatformError::Unauthenticated(
                        "trial versions open only for signed-in testers: send                          `Authorization: Bearer <token>`"
                            .into(),
                    ));
                };
                let Some(trial) = app.route.trial_version else {
                    return Err(PlatformError::NotFound(format!(
                        "app {appid} has no trial version"
                    )));
                };
                let allowed = app.owner == Some(caller.id)
                    || caller.has(Role::Admin)
                    || self.db.is_tester(appid, caller.id).await?;
                if !allowed {
                    return Err(PlatformError::Forbidden(format!(
                        "the trial version of {appid} is open only to its developer and testers"
                    )));
                }
                Ok(trial)
            }
        }
    }

    /// The latest usage records of an app, newest first. Includes every call
    /// this node has finished.
    pub async fn recent_calls(
        &self,
        account: &Account,
        appid: &AppId,
        limit: i64,
    ) -> Result<Vec<StoredCall>, PlatformError> {
        self.owned_app(account, appid).await?;
        self.usage.flush().await;
        Ok(self.db.recent_calls(appid, limit).await?)
    }

    /// One call's usage record and log.
    pub async fn call(
        &self,
        account: &Account,
        appid: &AppId,
        id: &str,
    ) -> Result<StoredCall, PlatformError> {
        self.owned_app(account, appid).await?;
        self.usage.flush().await;
        self.db
            .call(appid, id)
            .await?
            .ok_or_else(|| PlatformError::NotFound(format!("call {id} of app {appid} not found")))
    }

    /// Ends live streams, so graceful shutdown need not wait for them.
    pub fn close_streams(&self) {
        self.messaging.close_streams();
    }

    /// Stops delivering events and listening for inbox news, then writes every pending usage record and
    /// stops the recorder.
    pub async fn shutdown(&self) {
        let dispatcher = lock(&self.dispatcher).take();
        if let Some(dispatcher) = dispatcher {
            dispatcher.stop().await;
        }
        if let Some(listener) = lock(&self.signals).take() {
            listener.abort();
        }
        self.usage.shutdown().await;
    }

    /// The app's routing facts: from this node's cache while fresh.
    async fn app_route(&self, appid: &AppId) -> Result<AppRoute, PlatformError> {
        if let Some(cached) = lock(&self.routes).get(appid)
            && cached.fresh()
        {
            return Ok(cached.value);
        }
        let app = self
            .db
            .app(appid)
            .await?
            .ok_or_else(|| PlatformError::NotFound(format!("app {appid} not found")))?;
        let route = AppRoute {
            route: app.release,
            owner: app.owner_id,
        };
        let mut routes = lock(&self.routes);
        routes.insert(appid.clone(), Cached::new(route));
        // Programs of versions no longer routed to are dropped with the route change.
        let routed = [
            route.route.released_version,
            route.route.fallback_version,
            route.route.trial_version,
        ];
        lock(&self.programs)
            .retain(|(app, version), _| app != appid || routed.contains(&Some(*version)));
        Ok(route)
    }

    /// Forgets what this node cached about an app's routing, after a change.
    fn forget_route(&self, appid: &AppId) {
        lock(&self.routes).remove(appid);
    }

    /// Forgets everything this node cached about an app.
    fn forget_app(&self, appid: &AppId) {
        self.forget_route(appid);
        lock(&self.programs).retain(|(app, _), _| app != appid);
    }

    /// A version ready to run: from this node's cache, else loaded (from
    /// the artifact cache, or compiled) once even under concurrent first calls.
    async fn ready(&self, appid: &AppId, version: i64) -> Result<Arc<Ready>, PlatformError> {
        let key = (appid.clone(), version);
        if let Some(ready) = lock(&self.programs).get(&key) {
            return Ok(ready.clone());
        }
        let cell = lock(&self.loading).entry(key.clone()).or_default().clone();
        let loaded = cell
            .get_or_try_init(|| async {
                let (digest, manifest) =
                    self.db.runnable(appid, version).await?.ok_or_else(|| {
                        PlatformError::NotFound(format!("version {version} not found"))
                    })?;
                let bytes = self.db.component_bytes(&digest).await?;
                let runtime = self.runtime.clone();
                let program = tokio::task::spawn_blocking(move || runtime.prepare(&digest, &bytes))
                    .await
                    .map_err(anyhow::Error::from)??;
                Ok::<_, PlatformError>(Arc::new(Ready {
                    program,
                    limits: manifest.limits.over(self.settings.default_limits),
                    // Checked at upload; a stored manifest always resolves.
                    quotas: manifest.storage.resolve().unwrap_or_default(),
                    messaging: Arc::new(manifest.messaging.clone()),
                    manifest,
                }))
            })
            .await;
        lock(&self.loading).remove(&key);
        let loaded = loaded?.clone();
        lock(&self.programs).insert(key, loaded.clone());
        Ok(loaded)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// What the platform sends the usage recorder: a record, or a request to
/// write everything sent before it.
enum UsageMessage {
    Record(CallRecord),
    Flush(oneshot::Sender<()>),
}

/// Writes usage records in batches off the call path: a call never waits
/// for the database to record it, and the writer wakes once per batch, not
/// once per call. Records reach the database within [`USAGE_LINGER`] plus
/// one write; [`UsageRecorder::flush`] waits for everything sent so far.
struct UsageRecorder {
    sender: Mutex<Option<mpsc::Sender<UsageMessage>>>,
    /// Cuts a batch's linger short when someone waits for the records. A
    /// permit left over from a flush the writer already answered only cuts
    /// the next batch's linger short.
    flush_requested: Arc<Notify>,
    task: Mutex<Option<JoinHandle<()>>>,
}

/// The most records the writer takes from its queue for one batch.
const USAGE_BATCH: usize = 1024;

/// How long the recorder lets records gather before writing a batch.
const USAGE_LINGER: Duration = Duration::from_millis(10);

impl UsageRecorder {
    fn start(db: Db) -> UsageRecorder {
        let (sender, mut receiver) = mpsc::channel::<UsageMessage>(8192);
        let flush_requested = Arc::new(Notify::new());
        let flush = flush_requested.clone();
        let task = tokio::spawn(async move {
            let mut messages = Vec::with_capacity(USAGE_BATCH);
            let mut batch = Vec::with_capacity(USAGE_BATCH);
            let mut waiting = Vec::new();
            // Wait for the first record of a batch: the only wake-up per batch.
            while receiver.recv_many(&mut messages, USAGE_BATCH).await > 0 {
                // Let more gather, sleeping rather than waiting on the queue,
                // so that calls sending records meanwhile wake nobody. A full
                // batch or a flush writes at once.
                let flushing = messages
                    .iter()
                    .any(|message| matches!(message, UsageMessage::Flush(_)));
                if messages.len() < USAGE_BATCH && !flushing {
                    tokio::select! {
                        () = tokio::time::sleep(USAGE_LINGER) => {}
                        () = flush.notified() => {}
                    }
                    while messages.len() < USAGE_BATCH
                        && let Ok(message) = receiver.try_recv()
                    {
                        messages.push(message);
                    }
                }
                for message in messages.drain(..) {
                    match message {
                        UsageMessage::Record(record) => batch.push(record),
                        UsageMessage::Flush(done) => waiting.push(done),
                    }
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
            flush_requested,
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

    /// Returns once every record sent before it is written.
    async fn flush(&self) {
        let (done, finished) = oneshot::channel();
        if let Some(sender) = self.sender()
            && sender.send(UsageMessage::Flush(done)).await.is_ok()
        {
            self.flush_requested.notify_one();
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
