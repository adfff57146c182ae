//! Instantiate + call + teardown of the `hello` sample, in process: the cost
//! the runtime adds to every call.
//!
//! Run: `cargo bench --bench runtime`

use criterion::{Criterion, criterion_group, criterion_main};
use miniapp::domain::Sha256Digest;
use miniapp::runtime::{Invocation, Limits, Request, Runtime, RuntimeConfig};

const HELLO: &[u8] = include_bytes!("../sample-programs/dist/hello.wasm");

fn hello_call(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::new(RuntimeConfig::new(dir.path().join("artifacts"))).unwrap();
    let program = runtime.prepare(&Sha256Digest::of(HELLO), HELLO).unwrap();
    let limits = Limits::platform_default();
    let request = Request {
        method: "GET".into(),
        path: "/bench".into(),
        query: "x=1".into(),
        headers: vec![("accept".into(), "*/*".into())],
        body: Vec::new(),
    };
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

criterion_group!(benches, hello_call);
criterion_main!(benches);
