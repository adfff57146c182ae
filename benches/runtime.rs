//! Instantiate + call + teardown of the `hello` sample, in process: the cost
//! the runtime adds to every call.
//!
//! Run: `cargo bench --bench runtime`

use criterion::{Criterion, criterion_group, criterion_main};
use miniapp::domain::Sha256Digest;
use miniapp::runtime::{Invocation, Limits, Request, Runtime, RuntimeConfig};

const HELLO: &[u8] = include_bytes!("../sample-programs/dist/hello.wasm");
const HOSTILE: &[u8] = include_bytes!("../sample-programs/dist/hostile.wasm");

fn get(path: &str, query: &str) -> Request {
    Request {
        method: "GET".into(),
        path: path.into(),
        query: query.into(),
        headers: vec![("accept".into(), "*/*".into())],
        body: Vec::new(),
    }
}

fn hello_call(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::new(RuntimeConfig::new(dir.path().join("artifacts"))).unwrap();
    let program = runtime.prepare(&Sha256Digest::of(HELLO), HELLO).unwrap();
    let limits = Limits::platform_default();
    let request = get("/bench", "x=1");
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    c.bench_function("hello: instantiate + call + teardown", |b| {
        b.to_async(&tokio).iter(|| async {
            let report = runtime
                .call(&program, &limits, Invocation::Request(request.clone()))
                .await;
            assert!(report.reply.is_some(), "{:?}", report.outcome);
            report
        })
    });
}

/// A compute-bound call (about 3 million instructions of guest code): what
/// fuel metering and bounds checks cost inside the guest.
fn compute_call(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::new(RuntimeConfig::new(dir.path().join("artifacts"))).unwrap();
    let program = runtime
        .prepare(&Sha256Digest::of(HOSTILE), HOSTILE)
        .unwrap();
    let limits = Limits::platform_default();
    let request = get("/burn", "n=100000");
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    c.bench_function("hostile /burn?n=100000: compute-bound call", |b| {
        b.to_async(&tokio).iter(|| async {
            let report = runtime
                .call(&program, &limits, Invocation::Request(request.clone()))
                .await;
            assert!(report.reply.is_some(), "{:?}", report.outcome);
            report
        })
    });
}

criterion_group!(benches, hello_call, compute_call);
criterion_main!(benches);
