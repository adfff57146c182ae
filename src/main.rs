//! The `miniapp` command: a thin shell over the library. `miniapp serve`
//! runs the server; the client commands (`login`, `upload`, `review` …) go
//! to [`miniapp::cli`]; with no command, the demo server runs.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use miniapp::Server;
use miniapp::config::ServeConfig;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "miniapp",
    version,
    about = "An open platform for mini-programs"
)]
struct Cli {
    #[command(flatten)]
    client: miniapp::cli::Options,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the platform server.
    Serve(ServeConfig),
    #[command(flatten)]
    Client(miniapp::cli::Command),
}

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    let (config, demo) = match cli.command {
        Some(Command::Client(command)) => return Ok(miniapp::cli::run(cli.client, command)),
        Some(Command::Serve(config)) => (config, false),
        // With no subcommand: the newcomer's demo, the server with the samples installed.
        None => {
            let mut config = ServeConfig::with_data_dir("data".into());
            config.samples = true;
            (config, true)
        }
    };
    init_tracing();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(serve(config, demo))?;
    Ok(ExitCode::SUCCESS)
}

fn init_tracing() {
    let filter = EnvFilter::try_from_env("MINIAPP_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("MINIAPP_LOG_FORMAT").is_ok_and(|format| format == "json");
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn serve(config: ServeConfig, demo: bool) -> anyhow::Result<()> {
    let server = Server::bind(&config).await?;
    let addr = server.local_addr();
    tracing::info!(%addr, database = %miniapp::db::redact(&config.database_url()), "miniapp listening");
    if demo {
        println!(
            "\nminiapp is running on http://{addr} with the sample programs installed. Try:\n\n\
             \x20 curl http://{addr}/apps/hello/\n\
             \x20 curl 'http://{addr}/apps/hello/hello/world'\n\
             \x20 curl 'http://{addr}/apps/hello/any/path?x=1'\n\
             \x20 curl http://{addr}/apps/hostile/spin          # an endless loop, stopped by its limits\n\
             \x20 curl http://{addr}/apps/hostile/wasi/file     # the sandbox has no files\n\
             \x20 curl http://{addr}/apps/shop/products        # a shop; paying needs an account and a PIN\n\
             \x20 miniapp login --server http://{addr} --username {admin} --password-stdin < {password}\n\
             \x20 miniapp status --app hello\n\n\
             (The admin's password is written to {password} on the first start.)\n\
             Stop with Ctrl-C.\n",
            admin = config.admin_username,
            password = config.data_dir.join("admin-password").display(),
        );
    }
    server.run(shutdown_signal()).await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutting down: finishing in-flight calls");
}
