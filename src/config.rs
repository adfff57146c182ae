//! Server configuration: command-line flags and their environment variables,
//! each with its documented default.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::platform::DEFAULT_MAX_COMPONENT_BYTES;

/// Default cap on a request body sent to a mini-program: 1 MiB.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 1 << 20;

/// How `miniapp serve` runs.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeConfig {
    /// Address to listen on.
    #[arg(long, env = "MINIAPP_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Directory for the SQLite database, compiled artifacts and the admin token.
    #[arg(long, env = "MINIAPP_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,

    /// Database URL: `postgres://...` for PostgreSQL. Defaults to an SQLite
    /// file in the data directory.
    #[arg(long, env = "MINIAPP_DATABASE_URL")]
    pub database_url: Option<String>,

    /// Bearer token for the developer API. Defaults to a random token
    /// generated on first start and kept in `<data-dir>/admin-token`.
    #[arg(long, env = "MINIAPP_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// Largest component accepted at upload, in bytes (default 2 MiB).
    #[arg(long, env = "MINIAPP_MAX_COMPONENT_BYTES", default_value_t = DEFAULT_MAX_COMPONENT_BYTES)]
    pub max_component_bytes: usize,

    /// Largest request body forwarded to a mini-program, in bytes (default 1 MiB).
    #[arg(long, env = "MINIAPP_MAX_REQUEST_BYTES", default_value_t = DEFAULT_MAX_REQUEST_BYTES)]
    pub max_request_bytes: usize,

    /// Mini-program instances that may run at once; more calls wait (default 128).
    #[arg(long, env = "MINIAPP_MAX_CONCURRENT_CALLS", default_value_t = 128)]
    pub max_concurrent_calls: u32,

    /// Install the bundled sample programs (`hello`, `hostile`) on start.
    #[arg(long)]
    pub samples: bool,

    /// Also serve `/native/hello/{*path}`, a native handler answering what
    /// the `hello` sample answers: the baseline of `scripts/load.sh`.
    #[arg(long, hide = true)]
    pub native_baseline: bool,
}

impl ServeConfig {
    /// The configuration for `data_dir` with every other setting at its default.
    pub fn with_data_dir(data_dir: PathBuf) -> Self {
        ServeConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir,
            database_url: None,
            admin_token: None,
            max_component_bytes: DEFAULT_MAX_COMPONENT_BYTES,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            max_concurrent_calls: 128,
            samples: false,
            native_baseline: false,
        }
    }

    /// The database URL in effect.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.data_dir.join("miniapp.db").display()),
        }
    }
}
