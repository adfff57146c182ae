//! miniapp: an open platform for mini-programs. Third-party WebAssembly
//! components run in fresh, sandboxed, metered wasmtime instances and reach
//! the world only through capability-limited host APIs.
//!
//! The binary (`src/main.rs`) is a thin shell over [`Server`]. See
//! ARCHITECTURE.md for the map of modules and their invariants.

pub mod accounts;
pub mod cli;
pub mod config;
pub mod db;
pub mod domain;
pub mod hashing;
pub mod http;
pub mod identity;
pub mod lifecycle;
pub mod messaging;
pub mod payment;
pub mod platform;
pub mod runtime;
pub mod samples;
pub mod storage;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use config::ServeConfig;
use platform::{Platform, PlatformSettings};
use runtime::{Runtime, RuntimeConfig};

/// A bound, ready-to-run platform server.
pub struct Server {
    listener: tokio::net::TcpListener,
    platform: Arc<Platform>,
    max_request_bytes: usize,
    native_baseline: bool,
}

impl Server {
    /// Opens the database (migrating it), builds the runtime, installs the
    /// samples if asked, and binds the listener.
    pub async fn bind(config: &ServeConfig) -> anyhow::Result<Server> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
        let default_limits = config.limits.defaults();
        let max_limits = config.limits.maxima();
        default_limits
            .check_within(&max_limits)
            .map_err(|problem| {
                anyhow::anyhow!("the default limits do not fit the platform maxima: {problem}")
            })?;
        let db = db::Db::connect(&config.database_url()).await?;
        let mut runtime_config = RuntimeConfig::new(config.data_dir.join("artifacts"));
        runtime_config.max_concurrent_calls = config.max_concurrent_calls;
        runtime_config.max_limits = max_limits;
        let runtime = Runtime::new(runtime_config)?;
        let settings = PlatformSettings {
            max_component_bytes: config.max_component_bytes,
            default_limits,
            session_ttl: Duration::from_secs(config.session_ttl_secs),
            event_retry_schedule: config.event_retry_schedule.clone(),
            dispatch_events: !config.no_event_dispatch,
            daily_notifications: config.daily_notifications,
            call_retention: config.call_retention,
        };
        let platform = Platform::new(db, runtime, settings).await?;
        let generated = platform
            .bootstrap_admin(&config.admin_username, config.admin_password.clone())
            .await?;
        if let Some(password) = generated {
            let path = write_secret_file(&config.data_dir.join("admin-password"), &password)?;
            tracing::info!(
                username = %config.admin_username,
                password_file = %path.display(),
                "bootstrap admin password generated"
            );
        }
        if config.samples {
            samples::install(&platform).await?;
        }
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        Ok(Server {
            listener,
            platform,
            max_request_bytes: config.max_request_bytes,
            native_baseline: config.native_baseline,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn platform(&self) -> &Arc<Platform> {
        &self.platform
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests,
    /// writes pending usage records and closes the database.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let state = Arc::new(http::AppState::new(
            self.platform.clone(),
            self.max_request_bytes,
        ));
        let router = http::router(state, self.native_baseline);
        let platform = self.platform.clone();
        let shutdown = async move {
            shutdown.await;
            platform.close_streams();
        };
        axum::serve(self.listener, router)
            .with_graceful_shutdown(shutdown)
            .await?;
        self.platform.shutdown().await;
        self.platform.db().close().await;
        Ok(())
    }
}

/// Writes a generated secret to `path`, readable by the owner only.
fn write_secret_file(path: &Path, secret: &str) -> anyhow::Result<PathBuf> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    std::io::Write::write_all(&mut file, secret.as_bytes())?;
    Ok(path.to_path_buf())
}
