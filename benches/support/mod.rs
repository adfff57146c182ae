//! What the custom-harness benchmarks share: the engines they run on and
//! the median they report.

use std::future::Future;

#[path = "../../tests/all/fixtures.rs"]
mod fixtures;
pub use fixtures::register_apps;

/// Runs `run(engine, url)` on a fresh SQLite database, then, when
/// `MINIAPP_BENCH_DATABASE_URL` names a PostgreSQL server, on a database
/// of its own there (dropped afterwards), on a 2-worker runtime like the
/// machine's two cores.
pub fn on_each_engine<F, Fut>(name: &str, run: F)
where
    F: Fn(&'static str, String) -> Fut,
    Fut: Future<Output = ()>,
{
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    tokio.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = format!("sqlite://{}", dir.path().join("bench.db").display());
        run("sqlite", sqlite).await;
        if let Ok(server) = std::env::var("MINIAPP_BENCH_DATABASE_URL") {
            use sqlx::Connection;
            let database = format!("miniapp_bench_{name}_{}", std::process::id());
            let mut admin = sqlx::PgConnection::connect(&server).await.unwrap();
            sqlx::query(&format!("CREATE DATABASE {database}"))
                .execute(&mut admin)
                .await
                .unwrap();
            let (base, _) = server.rsplit_once('/').unwrap();
            run("postgres", format!("{base}/{database}")).await;
            sqlx::query(&format!("DROP DATABASE {database} WITH (FORCE)"))
                .execute(&mut admin)
                .await
                .unwrap();
        }
    });
}

pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
