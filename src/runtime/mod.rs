//! The sandbox: the only module that touches wasmtime. It compiles and caches
//! components, and runs every call in a fresh, metered instance.
//!
//! Isolation, from the outside in:
//! - one [`Engine`] per process: compiler settings, the pooling allocator
//!   (copy-on-write memory images) and the epoch clock shared by every call;
//! - one [`Program`] per uploaded version: a compiled component pre-linked
//!   against the host's imports, ready to instantiate;
//! - one `Store` per call: a fresh instance with its own memory, fuel,
//!   deadline, limiter, WASI context and log. Nothing survives the call.

mod artifacts;
mod call_log;
mod deadlines;
mod host;
mod inspect;
mod limits;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap,
    UpdateDeadline,
};

use crate::domain::Sha256Digest;
use artifacts::ArtifactCache;
pub use call_log::DEFAULT_LOG_LIMIT;
use call_log::SharedLog;
use deadlines::Deadlines;
pub use host::{IdentityGrant, MessagingGrant, PaymentGrant, StorageGrant};
pub use inspect::{ComponentInfo, Rejection};
use limits::{InstanceLimiter, MemoryLimitExceeded};
pub use limits::{Limits, MEMORIES_PER_CALL, TABLES_PER_CALL};

wasmtime::component::bindgen!({
    path: "host-api/wit",
    world: "miniapp:host/mini-program",
    imports: { default: async | trappable },
    exports: { default: async },
});

pub use self::exports::miniapp::host::events::Event;
pub use self::miniapp::host::types::{Request, Response};

/// How often the engine's epoch advances. The deadline is checked, and a
/// long-running guest yields its worker thread, once per tick.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Default number of instances that may run at once.
pub const DEFAULT_MAX_CONCURRENT_CALLS: u32 = 128;

/// Settings of the sandbox for the whole platform.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Where compiled components are cached.
    pub artifact_dir: PathBuf,
    /// The most any app may be granted; also sizes the pooling allocator.
    /// Defaults to [`Limits::platform_maximum`].
    pub max_limits: Limits,
    /// Bytes of log kept per call. Defaults to 64 KiB.
    pub log_limit: usize,
    /// Instances that may run at once; further calls wait for a slot.
    /// Defaults to 128.
    pub max_concurrent_calls: u32,
}

impl RuntimeConfig {
    pub fn new(artifact_dir: PathBuf) -> Self {
        RuntimeConfig {
            artifact_dir,
            max_limits: Limits::platform_maximum(),
            log_limit: DEFAULT_LOG_LIMIT,
            max_concurrent_calls: DEFAULT_MAX_CONCURRENT_CALLS,
        }
    }
}

/// Counters of what the runtime did since it started.
#[derive(Debug, Default, serde::Serialize)]
pub struct RuntimeStats {
    /// Components compiled from their bytes.
    pub compiled: AtomicU64,
    /// Components loaded from the artifact cache.
    pub loaded_from_cache: AtomicU64,
    /// Calls run to any outcome.
    pub calls: AtomicU64,
}

/// The per-process sandbox. See the module docs for what each layer isolates.
pub struct Runtime {
    engine: Engine,
    linker: Linker<CallState>,
    artifacts: ArtifactCache,
    config: RuntimeConfig,
    slots: Semaphore,
    stats: RuntimeStats,
    /// Calls waiting in the host, ended by the ticker past their deadline.
    deadlines: Arc<Deadlines>,
    ticker_stop: Arc<AtomicBool>,
}

/// A version ready to run: compiled, linked, and instantiable without
/// further checks.
#[derive(Clone)]
pub struct Program {
    pre: MiniProgramPre<CallState>,
}

/// The interface a `miniapp:host/<interface>@<version>` import names, or
/// `None` for imports outside the package (WASI).
pub fn host_interface_name(import: &str) -> Option<&str> {
    inspect::host_interface(import).map(|(interface, _version)| interface)
}

/// What one call is granted beyond `log`: one field per capability, `None`
/// where the version's manifest does not declare it. The host functions of
/// a capability check their grant first and answer `denied` without it.
#[derive(Default)]
pub struct Grants {
    pub identity: Option<host::IdentityGrant>,
    pub storage: Option<host::StorageGrant>,
    pub payment: Option<host::PaymentGrant>,
    pub messaging: Option<host::MessagingGrant>,
}

/// What a call runs: a user's request, or a platform event.
#[derive(Debug, Clone)]
pub enum Invocation {
    Request(Request),
    Event(Event),
}

/// What a call returned when it ran to completion.
#[derive(Debug, Clone)]
pub enum Reply {
    Response(Response),
    /// `Ok` acknowledges the event; `Err` asks for redelivery.
    Event(Result<(), String>),
}

/// How a call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// The guest trapped or returned something invalid.
    Trap(String),
    OutOfFuel,
    Deadline,
    MemoryLimit,
    /// The host failed, not the guest (no instance slot, a host function fault).
    HostError(String),
}

impl Outcome {
    /// The stable name recorded in usage records.
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Trap(_) => "trap",
            Outcome::OutOfFuel => "out_of_fuel",
            Outcome::Deadline => "deadline",
            Outcome::MemoryLimit => "memory_limit",
            Outcome::HostError(_) => "host_error",
        }
    }

    /// Human-readable detail, for traps and host errors.
    pub fn detail(&self) -> Option<&str> {
        match self {
            Outcome::Trap(d) | Outcome::HostError(d) => Some(d),
            _ => None,
        }
    }
}

/// What one call consumed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    pub fuel_consumed: u64,
    pub wall_time: Duration,
    pub peak_memory_bytes: u64,
    pub host_calls: u64,
}

/// Everything a call produced: its outcome, its reply if it completed, what
/// it consumed and what it logged.
#[derive(Debug, Clone)]
pub struct CallReport {
    pub outcome: Outcome,
    pub reply: Option<Reply>,
    pub usage: Usage,
    pub log: String,
}

/// The state of one call's store: everything a guest can reach through its
/// imports, and nothing else.
pub struct CallState {
    limiter: InstanceLimiter,
    log: SharedLog,
    host_calls: u64,
    grants: Grants,
    wasi: Option<wasmtime_wasi::WasiCtx>,
    table: ResourceTable,
}

impl Runtime {
    /// Builds the engine, links the host's imports and starts the epoch ticker.
    pub fn new(config: RuntimeConfig) -> anyhow::Result<Self> {
        let max = config.max_limits;
        let slots = config.max_concurrent_calls;
        let mut pool = PoolingAllocationConfig::new();
        // Room for every slot to hold the most one call may take, so a
        // program with many instances or memories cannot exhaust the pool
        // for the others (a component that would take more is refused when
        // it is compiled). Core instances are only counted; memories and
        // tables reserve address space, not memory.
        pool.total_component_instances(slots)
            .total_core_instances(slots * max.instances)
            .total_memories(slots * MEMORIES_PER_CALL)
            .total_tables(slots * TABLES_PER_CALL)
            .total_stacks(slots)
            .max_memory_size(max.memory_bytes as usize)
            .table_elements(max.table_elements as usize)
            .max_core_instances_per_component(max.instances)
            .max_memories_per_component(MEMORIES_PER_CALL)
            .max_tables_per_component(TABLES_PER_CALL)
            // Between calls, reset the pages a call dirtied with memset and
            // keep them resident: cheaper than madvise now and page faults on
            // the next call. PAGEMAP_SCAN (Linux 6.7+) finds the dirty pages,
            // so only those are reset.
            .pagemap_scan(wasmtime::Enabled::Auto)
            .linear_memory_keep_resident(1 << 20)
            .table_keep_resident(64 << 10);

        let mut wasm = Config::new();
        wasm.consume_fuel(true)
            // Explicit bounds checks instead of guard pages: a call whose guest
            // grows its memory would otherwise cost an mprotect (and a TLB
            // shootdown across cores) to shrink the slot again for the next
            // call. Measured in benches/runtime.rs: 14.8 -> 8.8 us per `hello`
            // call, and no slower on the compute-bound call.
            .signals_based_traps(false)
            .memory_guard_size(0)
            .epoch_interruption(true)
            .memory_init_cow(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&wasm).map_err(anyhow::Error::from)?;

        let mut linker = Linker::new(&engine);
        MiniProgram::add_to_linker::<CallState, HasSelf<CallState>>(&mut linker, |state| state)
            .map_err(anyhow::Error::from)?;
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(anyhow::Error::from)?;

        let artifacts = ArtifactCache::open(&config.artifact_dir, &engine)?;
        let ticker_stop = Arc::new(AtomicBool::new(false));
        let deadlines = Arc::new(Deadlines::default());
        spawn_epoch_ticker(engine.clone(), deadlines.clone(), ticker_stop.clone());

        Ok(Runtime {
            engine,
            linker,
            artifacts,
            slots: Semaphore::new(slots as usize),
            config,
            stats: RuntimeStats::default(),
            deadlines,
            ticker_stop,
        })
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    pub fn stats(&self) -> &RuntimeStats {
        &self.stats
    }

    /// Checks an upload without compiling it: see [`inspect::inspect`].
    pub fn inspect(&self, bytes: &[u8]) -> Result<ComponentInfo, Rejection> {
        inspect::inspect(bytes)
    }

    /// Makes a runnable [`Program`] of a component: loads its compiled
    /// artifact if this host compiled it before, compiles and caches it
    /// otherwise. CPU-heavy: call from a blocking thread.
    pub fn prepare(&self, digest: &Sha256Digest, bytes: &[u8]) -> Result<Program, Rejection> {
        let (component, compiled) = match self.artifacts.load(&self.engine, digest) {
            Some(component) => {
                self.stats.loaded_from_cache.fetch_add(1, Ordering::Relaxed);
                (component, false)
            }
            None => {
                let component = Component::new(&self.engine, bytes)
                    .map_err(|err| Rejection::Malformed(format!("{err:#}")))?;
                self.stats.compiled.fetch_add(1, Ordering::Relaxed);
                (component, true)
            }
        };
        // Linking checks every imported function against the host's: a
        // function the contract does not have is refused here.
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|err| Rejection::Malformed(format!("{err:#}")))?;
        let pre =
            MiniProgramPre::new(pre).map_err(|err| Rejection::Malformed(format!("{err:#}")))?;
        // Cached only once it links, so a refused upload leaves no artifact.
        if compiled && let Err(err) = self.artifacts.store(digest, &component) {
            // The program still runs; the next start compiles again.
            tracing::warn!(%digest, error = %err, "could not cache compiled artifact");
        }
        Ok(Program { pre })
    }

    /// Runs one invocation in a fresh instance under `limits`, with what
    /// `grants` allows. Never fails: every way a call can end is an [`Outcome`].
    pub async fn call(
        &self,
        program: &Program,
        limits: &Limits,
        grants: Grants,
        invocation: Invocation,
    ) -> CallReport {
        let log = SharedLog::new(self.config.log_limit);
        let Ok(_slot) = self.slots.acquire().await else {
            unreachable!("the semaphore is never closed");
        };
        let started = Instant::now();
        let deadline = started + limits.deadline();

        let mut store = Store::new(
            &self.engine,
            CallState {
                limiter: InstanceLimiter::new(limits),
                log: log.clone(),
                host_calls: 0,
                grants,
                wasi: None,
                table: ResourceTable::new(),
            },
        );
        store.limiter(|state| &mut state.limiter);
        let fuel_set = store.set_fuel(limits.fuel);
        debug_assert!(fuel_set.is_ok(), "fuel is enabled on the engine");
        // Each epoch tick, either end the call or let other tasks run: a
        // spinning guest never holds a worker thread for more than a tick.
        store.epoch_deadline_callback(move |_| {
            Ok(if Instant::now() >= deadline {
                UpdateDeadline::Interrupt
            } else {
                // tokio's own yield puts the task at the back of the run
                // queue, behind every call waiting for this worker.
                UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now()))
            })
        });
        store.set_epoch_deadline(1);

        // On the heap: wasmtime's instantiation and call futures take about
        // 3 KiB, and every async fn above this one would hold them inline
        // (rustc gives an awaited future its own room in the caller), up to
        // the server's handler future that axum moves into a box of its own
        // on every request: 18 KiB copied and allocated per call without
        // this box, 3 KiB with it.
        let result = deadlines::within(
            &self.deadlines,
            deadline,
            Box::pin(run(&program.pre, &mut store, invocation)),
        )
        .await;

        let wall_time = started.elapsed();
        let (outcome, reply) = match result {
            None => (Outcome::Deadline, None),
            Some(Ok(reply)) => match check_reply(reply) {
                Ok(reply) => (Outcome::Ok, Some(reply)),
                Err(fault) => (Outcome::Trap(fault), None),
            },
            Some(Err(err)) => (classify(err), None),
        };
        let usage = Usage {
            fuel_consumed: limits.fuel - store.get_fuel().unwrap_or(0),
            wall_time,
            peak_memory_bytes: store.data().limiter.peak_memory(),
            host_calls: store.data().host_calls,
        };
        drop(store);
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        CallReport {
            outcome,
            reply,
            usage,
            log: log.with(|log| log.render()),
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

async fn run(
    pre: &MiniProgramPre<CallState>,
    store: &mut Store<CallState>,
    invocation: Invocation,
) -> wasmtime::Result<Reply> {
    let instance = pre.instantiate_async(&mut *store).await?;
    match invocation {
        Invocation::Request(request) => {
            let response = instance
                .miniapp_host_handler()
                .call_handle(&mut *store, &request)
                .await?;
            Ok(Reply::Response(response))
        }
        Invocation::Event(event) => {
            let acked = instance
                .miniapp_host_events()
                .call_on_event(&mut *store, &event)
                .await?;
            Ok(Reply::Event(acked))
        }
    }
}

/// A guest that returns a response the host cannot forward has faulted.
fn check_reply(reply: Reply) -> Result<Reply, String> {
    if let Reply::Response(response) = &reply
        && !(100..=599).contains(&response.status)
    {
        return Err(format!("invalid response status {}", response.status));
    }
    Ok(reply)
}

fn classify(err: wasmtime::Error) -> Outcome {
    if err.is::<MemoryLimitExceeded>() {
        return Outcome::MemoryLimit;
    }
    match err.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => Outcome::OutOfFuel,
        Some(Trap::Interrupt) => Outcome::Deadline,
        Some(trap) => Outcome::Trap(trap.to_string()),
        None => match err.downcast_ref::<wasmtime_wasi::I32Exit>() {
            // Calling WASI `exit` is the guest's choice, not a host fault.
            Some(exit) => Outcome::Trap(format!("the program exited with code {}", exit.0)),
            // Anything else failed in the host: a host function's fault, or
            // instantiation itself (e.g. no free slot in the pool).
            None => Outcome::HostError(format!("{err:#}")),
        },
    }
}

/// The engine's one clock: each tick advances the epoch (which stops or
/// yields a guest running wasm) and wakes the calls waiting in the host
/// past their deadline.
fn spawn_epoch_ticker(engine: Engine, deadlines: Arc<Deadlines>, stop: Arc<AtomicBool>) {
    std::thread::Builder::new()
        .name("miniapp-epoch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                engine.increment_epoch();
                deadlines.wake_expired(Instant::now());
            }
        })
        .expect("spawning the epoch ticker thread");
}
