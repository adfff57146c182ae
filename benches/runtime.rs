//! What the runtime adds to every call, in process: a fresh instance, the
//! call and the teardown, for the smallest program (`hello`) and for a
//! compute-bound one (where fuel metering and bounds checks show); then
//! `hello` again with the caches cold, as a server's calls find them.
//!
//! Run: `cargo bench --bench runtime`. After criterion's own report it
//! prints each benchmark's median, which criterion's `time:` line is not.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use criterion::{Criterion, criterion_group};
use miniapp::domain::Sha256Digest;
use miniapp::runtime::{
    CallReport, Grants, Invocation, Limits, Program, Request, Runtime, RuntimeConfig,
};

const HELLO: &[u8] = include_bytes!("../sample-programs/dist/hello.wasm");
const HOSTILE: &[u8] = include_bytes!("../sample-programs/dist/hostile.wasm");

/// Bytes written between two cold calls: more than this machine's L2 cache
/// per core, as a server's HTTP and TCP work between calls evicts it.
const EVICT_BYTES: usize = 4 << 20;

/// One program, ready to be called with `GET {path}?{query}` under the
/// platform's default limits.
struct Caller {
    _artifacts: tempfile::TempDir,
    runtime: Runtime,
    program: Program,
    limits: Limits,
    request: Request,
}

impl Caller {
    fn new(component: &[u8], path: &str, query: &str) -> Caller {
        let artifacts = tempfile::tempdir().unwrap();
        let runtime = Runtime::new(RuntimeConfig::new(artifacts.path().join("artifacts"))).unwrap();
        let program = runtime
            .prepare(&Sha256Digest::of(component), component)
            .unwrap();
        Caller {
            _artifacts: artifacts,
            runtime,
            program,
            limits: Limits::platform_default(),
            request: Request {
                method: "GET".into(),
                path: path.into(),
                query: query.into(),
                headers: vec![("accept".into(), "*/*".into())],
                body: Vec::new(),
            },
        }
    }

    async fn call(&self) -> CallReport {
        let report = self
            .runtime
            .call(
                &self.program,
                &self.limits,
                Grants::default(),
                Invocation::Request(self.request.clone()),
            )
            .await;
        assert!(report.reply.is_some(), "{:?}", report.outcome);
        report
    }
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Benchmarks calls of `component` with `GET {path}?{query}`, back to back.
fn bench_call(c: &mut Criterion, name: &str, component: &[u8], path: &str, query: &str) {
    let caller = Caller::new(component, path, query);
    let tokio = current_thread();
    c.bench_function(name, |b| b.to_async(&tokio).iter(|| caller.call()));
}

fn hello_call(c: &mut Criterion) {
    bench_call(
        c,
        "hello: instantiate + call + teardown",
        HELLO,
        "/bench",
        "x=1",
    );
}

/// About 3 million instructions of guest code.
fn compute_call(c: &mut Criterion) {
    bench_call(
        c,
        "hostile /burn?n=100000: compute-bound call",
        HOSTILE,
        "/burn",
        "n=100000",
    );
}

/// `hello` after evicting the caches, timing the call alone: what a call
/// costs when the instance's code and memory are not already cached, as in
/// a server between requests (a hot loop keeps them cached).
fn hello_call_cold(c: &mut Criterion) {
    let caller = Caller::new(HELLO, "/bench", "x=1");
    let tokio = current_thread();
    let evict = RefCell::new(vec![0u8; EVICT_BYTES]);
    c.bench_function("hello: instantiate + call + teardown, caches cold", |b| {
        b.to_async(&tokio).iter_custom(|iters| {
            let (caller, evict) = (&caller, &evict);
            async move {
                let mut total = Duration::ZERO;
                for round in 0..iters {
                    for line in evict.borrow_mut().chunks_mut(64) {
                        line[0] = line[0].wrapping_add(round as u8);
                    }
                    std::hint::black_box(evict);
                    let started = Instant::now();
                    caller.call().await;
                    total += started.elapsed();
                }
                total
            }
        })
    });
}

criterion_group!(benches, hello_call, compute_call, hello_call_cold);

/// `criterion_main!`, then each benchmark's median: the `time:` line
/// criterion prints is its slope estimate, and the goals are medians.
fn main() {
    let started = SystemTime::now();
    benches();
    Criterion::default().configure_from_args().final_summary();
    print_medians(started);
}

/// Prints the median of every benchmark criterion measured since `started`,
/// read from the estimates it writes: under `CRITERION_HOME`, or else
/// `criterion/` in the target directory, three levels above this
/// executable (`target/release/deps/`).
fn print_medians(started: SystemTime) {
    let home = std::env::var_os("CRITERION_HOME")
        .map(PathBuf::from)
        .or_else(|| {
            let exe = std::env::current_exe().ok()?;
            Some(exe.parent()?.parent()?.parent()?.join("criterion"))
        });
    let Some(entries) = home.and_then(|home| std::fs::read_dir(home).ok()) else {
        return;
    };
    let read = |path: &Path| -> Option<serde_json::Value> {
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
    };
    let mut medians: Vec<(String, f64)> = entries
        .flatten()
        .filter_map(|entry| {
            let new = entry.path().join("new");
            let estimates = new.join("estimates.json");
            if std::fs::metadata(&estimates).ok()?.modified().ok()? < started {
                return None;
            }
            let id = read(&new.join("benchmark.json"))?["full_id"]
                .as_str()?
                .to_owned();
            let median = read(&estimates)?["median"]["point_estimate"].as_f64()?;
            Some((id, median))
        })
        .collect();
    medians.sort_by(|a, b| a.0.cmp(&b.0));
    for (id, nanos) in medians {
        println!("median of {id}: {:.2} µs", nanos / 1000.0);
    }
}
