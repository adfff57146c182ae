//! Key-value operations per second through a guest (the `notes` sample, in
//! a fresh instance per call, reaching storage through the host) against the
//! same operations straight through the storage layer's sqlx queries, in one
//! run, on SQLite and (with `MINIAPP_BENCH_DATABASE_URL`, a server URL such
//! as `postgres://postgres@127.0.0.1:5432/postgres`) on PostgreSQL.
//!
//! Three workloads: one `set` per call (`PUT /notes/{id}`), one `get` per
//! call (`GET /notes/{id}`), and a page of notes (`GET /notes`: a key
//! listing and ten gets in one call), each against the same storage calls
//! made directly.
//!
//! Then two references: the guest's instance with no host call, and a
//! round trip to another thread (what each sqlx query costs the caller
//! beyond the database's own work).
//!
//! Each workload runs twice: one call at a time (each call waits for the
//! last: latency), and 32 callers at once, each a task of its own (what a
//! server under load sees: throughput).
//!
//! Run: `cargo bench --bench storage`. Prints the median of 5 rounds of
//! each, alternating, and the ratio guest / direct. A word after `--`
//! runs only the workloads whose name starts with it
//! (`cargo bench --bench storage -- get`), and no references.

mod support;

use std::sync::Arc;
use std::time::Instant;

use miniapp::db::Db;
use miniapp::domain::{AppId, Sha256Digest};
use miniapp::runtime::{
    Grants, Invocation, Limits, Program, Reply, Request, Runtime, RuntimeConfig, StorageGrant,
};
use miniapp::storage::{Op, Partition, Quotas, Storage};

use support::median;

const NOTES: &[u8] = include_bytes!("../sample-programs/dist/notes.wasm");
const ROUNDS: usize = 5;
const OPS: usize = 1000;
const USER: i64 = 42;
/// Callers at once in the concurrent runs: as many as `scripts/load.sh`'s
/// connections.
const CALLERS: usize = 32;
/// The user whose ten notes make the page workload.
const READER: i64 = 43;

struct Bench {
    runtime: Runtime,
    program: Program,
    storage: Arc<Storage>,
    appid: AppId,
}

impl Bench {
    async fn guest(&self, method: &str, id: Option<usize>) {
        let (path, user) = match id {
            Some(id) => (format!("/notes/{id}"), USER),
            None => ("/notes".to_string(), READER),
        };
        let id = id.unwrap_or(0);
        let body = if method == "PUT" {
            format!("note {id}").into_bytes()
        } else {
            Vec::new()
        };
        self.call(method, path, user, body, 200).await;
    }

    /// One call of the guest, which must answer `status`.
    async fn call(&self, method: &str, path: String, user: i64, body: Vec<u8>, status: u16) {
        let request = Request {
            method: method.into(),
            path: path.clone(),
            query: String::new(),
            headers: Vec::new(),
            body,
        };
        let grants = Grants {
            storage: Some(StorageGrant {
                service: self.storage.clone(),
                appid: self.appid.clone(),
                caller: Some(user),
                quotas: Quotas::default(),
            }),
            ..Grants::default()
        };
        let report = self
            .runtime
            .call(
                &self.program,
                &Limits::platform_default(),
                grants,
                Invocation::Request(request),
            )
            .await;
        match report.reply {
            Some(Reply::Response(response)) if response.status == status => {}
            other => panic!(
                "{method} {path}: {other:?} {:?} {}",
                report.outcome, report.log
            ),
        }
    }

    async fn direct(&self, method: &str, id: Option<usize>) {
        let Some(id) = id else {
            let partition = Partition::user(self.appid.clone(), READER);
            let page = self
                .storage
                .list_keys(&partition, "note/", None, 100)
                .await
                .unwrap();
            for key in &page.keys {
                assert!(self.storage.get(&partition, key).await.unwrap().is_some());
            }
            return;
        };
        let partition = Partition::user(self.appid.clone(), USER);
        let key = format!("note/{id}");
        if method == "PUT" {
            let op = Op::Set {
                key,
                value: format!("note {id}").into_bytes(),
            };
            self.storage
                .apply(&partition, &Quotas::default(), vec![op])
                .await
                .unwrap();
        } else {
            assert!(self.storage.get(&partition, &key).await.unwrap().is_some());
        }
    }
}

async fn run(engine: &str, url: &str, only: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::connect(url).await.unwrap();
    support::register_apps(&db, &["bench"]).await;
    let runtime = Runtime::new(RuntimeConfig::new(dir.path().join("artifacts"))).unwrap();
    let program = runtime.prepare(&Sha256Digest::of(NOTES), NOTES).unwrap();
    let bench = Bench {
        runtime,
        program,
        storage: Arc::new(Storage::new(db.clone())),
        appid: "bench".parse().unwrap(),
    };
    let reader = Partition::user(bench.appid.clone(), READER);
    let notes = (0..10)
        .map(|n| Op::Set {
            key: format!("note/{n}"),
            value: format!("note {n}").into_bytes(),
        })
        .collect();
    bench
        .storage
        .apply(&reader, &Quotas::default(), notes)
        .await
        .unwrap();
    // The notes the single-note workloads read, written beforehand so that
    // each workload can run alone and every `set` round overwrites.
    for n in 0..OPS {
        bench.direct("PUT", Some(n)).await;
    }
    let bench = Arc::new(bench);
    for (label, method, single) in WORKLOADS {
        if only.is_some_and(|only| !label.starts_with(only)) {
            continue;
        }
        for callers in [1, CALLERS] {
            let (mut guest, mut direct) = (Vec::new(), Vec::new());
            for _ in 0..ROUNDS {
                guest.push(rate(&bench, Path::Guest, method, single, callers).await);
                direct.push(rate(&bench, Path::Direct, method, single, callers).await);
            }
            let (guest, direct) = (median(guest), median(direct));
            println!(
                "{engine:<10} {label:<22} {callers:>2} at once: guest {guest:>7.0}/s, \
                 direct {direct:>7.0}/s, ratio {:.2}",
                guest / direct
            );
        }
    }
    if only.is_none() {
        // Where a guest's time goes besides the database: the instance alone
        // (an id too long for a key is refused before any host call), and a
        // round trip to another thread, which every sqlx query makes (SQLite
        // runs each connection on a thread of its own).
        let too_long = format!("/notes/{}", "x".repeat(300));
        let instance = per_op(|| bench.call("GET", too_long.clone(), USER, Vec::new(), 400)).await;
        let handoff = per_op(|| async {
            tokio::task::spawn_blocking(|| ()).await.unwrap();
        })
        .await;
        println!(
            "{engine:<10} the guest's instance, no host call: {instance:.1} µs; \
             a round trip to another thread: {handoff:.1} µs"
        );
    }
    db.close().await;
}

/// Each workload: its name, the method of its calls, and whether a call is
/// on one note (or a page of them).
const WORKLOADS: [(&str, &str, bool); 3] = [
    ("set", "PUT", true),
    ("get", "GET", true),
    ("page (list + 10 gets)", "GET", false),
];

#[derive(Clone, Copy)]
enum Path {
    Guest,
    Direct,
}

/// Operations per second of [`OPS`] operations, `callers` of them in flight
/// at once, each caller a task of its own (as a server's requests are).
/// With `single`, operation `n` is on note `n`; otherwise each is a page.
async fn rate(
    bench: &Arc<Bench>,
    path: Path,
    method: &'static str,
    single: bool,
    callers: usize,
) -> f64 {
    let started = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|caller| {
            let bench = bench.clone();
            tokio::spawn(async move {
                for n in (caller..OPS).step_by(callers) {
                    let id = single.then_some(n);
                    match path {
                        Path::Guest => bench.guest(method, id).await,
                        Path::Direct => bench.direct(method, id).await,
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    OPS as f64 / started.elapsed().as_secs_f64()
}

/// The median time of one `op`, in microseconds, over [`ROUNDS`] rounds of
/// [`OPS`].
async fn per_op<F, Fut>(mut op: F) -> f64
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut rates = Vec::new();
    for _ in 0..ROUNDS {
        let started = Instant::now();
        for _ in 0..OPS {
            op().await;
        }
        rates.push(OPS as f64 / started.elapsed().as_secs_f64());
    }
    1e6 / median(rates)
}

fn main() {
    // `cargo bench` passes `--bench`; the one other word is the filter.
    let only = std::env::args().skip(1).find(|arg| !arg.starts_with('-'));
    if let Some(only) = &only
        && !WORKLOADS
            .iter()
            .any(|(label, ..)| label.starts_with(only.as_str()))
    {
        let names: Vec<_> = WORKLOADS.iter().map(|(label, ..)| *label).collect();
        eprintln!("no workload starts with {only:?}; the workloads: {names:?}");
        std::process::exit(2);
    }
    support::on_each_engine("storage", |engine, url| {
        let only = only.clone();
        async move { run(engine, &url, only.as_deref()).await }
    });
}
