//! What the runtime adds to every call, in process: a fresh instance, the
//! call and the teardown, for the smallest program (`hello`) and for a
//! compute-bound one (where fuel metering and bounds checks show).
//!
//! Run: `cargo bench --bench runtime`

use criterion::{Criterion, criterion_group, criterion_main};
use miniapp::domain::Sha256Digest;
use miniapp::runtime::{Grants, Invocation, Limits, Request, Runtime, RuntimeConfig};

const HELLO: &[u8] = include_bytes!("../sample-programs/dist/hello.wasm");
const HOSTILE: &[u8] = include_bytes!("../sample-programs/dist/hostile.wasm");

/// Benchmarks calls of `component` with `GET {path}?{query}` under the
/// platform's default limits.
fn bench_call(c: &mut Criterion, name: &str, component: &[u8], path: &str, query: &str) {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::new(RuntimeConfig::new(dir.path().join("artifacts"))).unwrap();
    let program = runtime
        .prepare(&Sha256Digest::of(component), component)
        .unwrap();
    let limits = Limits::platform_default();
    let request = Request {
        method: "GET".into(),
        path: path.into(),
        query: query.into(),
        headers: vec![("accept".into(), "*/*".into())],
        body: Vec::new(),
    };
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    c.bench_function(name, |b| {
        b.to_async(&tokio).iter(|| async {
            let report = runtime
                .call(
                    &program,
                    &limits,
                    Grants::default(),
                    Invocation::Request(request.clone()),
                )
                .await;
            assert!(report.reply.is_some(), "{:?}", report.outcome);
            report
        })
    });
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

criterion_group!(benches, hello_call, compute_call);
criterion_main!(benches);
