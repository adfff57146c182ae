//! Server configuration: command-line flags and their environment variables,
//! each with its documented default.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::accounts::{DEFAULT_SESSION_TTL, Username};
use crate::messaging::DEFAULT_DAILY_NOTIFICATIONS;
use crate::platform::{DEFAULT_MAX_COMPONENT_BYTES, DEFAULT_RETRY_SCHEDULE};
use crate::runtime::{DEFAULT_MAX_CONCURRENT_CALLS, Limits};

/// Default cap on a request body sent to a mini-program: 1 MiB.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 1 << 20;

/// How long a call's usage record and log are kept by default: 7 days.
pub const DEFAULT_CALL_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// [`DEFAULT_CALL_RETENTION`] as the flag spells it.
const DEFAULT_CALL_RETENTION_TEXT: &str = "7days";

/// [`DEFAULT_RETRY_SCHEDULE`] as the flag spells it.
const DEFAULT_RETRY_SCHEDULE_TEXT: &str = "15s,15s,30s,3m,10m,20m,30m,30m,30m,1h,3h,3h,3h,6h,6h";

/// How `miniapp serve` runs.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeConfig {
    /// Address to listen on.
    #[arg(long, env = "MINIAPP_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Directory for the SQLite database, compiled artifacts and a generated
    /// bootstrap admin password.
    #[arg(long, env = "MINIAPP_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,

    /// Database URL: `postgres://...` for PostgreSQL. Defaults to an SQLite
    /// file in the data directory.
    #[arg(long, env = "MINIAPP_DATABASE_URL")]
    pub database_url: Option<String>,

    /// Username of the bootstrap admin, created on first start when no
    /// account has the admin role.
    #[arg(long, env = "MINIAPP_ADMIN_USERNAME", default_value = "admin")]
    pub admin_username: Username,

    /// Password of the bootstrap admin. Defaults to a random password,
    /// generated on first start and kept in `<data-dir>/admin-password`.
    #[arg(long, env = "MINIAPP_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,

    /// How long a session token lives, in seconds (default 7 days).
    #[arg(long, env = "MINIAPP_SESSION_TTL_SECS", default_value_t = DEFAULT_SESSION_TTL.as_secs())]
    pub session_ttl_secs: u64,

    /// Largest component accepted at upload, in bytes (default 2 MiB).
    #[arg(long, env = "MINIAPP_MAX_COMPONENT_BYTES", default_value_t = DEFAULT_MAX_COMPONENT_BYTES)]
    pub max_component_bytes: usize,

    /// Largest request body forwarded to a mini-program, in bytes (default 1 MiB).
    #[arg(long, env = "MINIAPP_MAX_REQUEST_BYTES", default_value_t = DEFAULT_MAX_REQUEST_BYTES)]
    pub max_request_bytes: usize,

    /// Mini-program instances that may run at once; more calls wait (default 128).
    #[arg(long, env = "MINIAPP_MAX_CONCURRENT_CALLS", default_value_t = DEFAULT_MAX_CONCURRENT_CALLS)]
    pub max_concurrent_calls: u32,

    #[command(flatten)]
    pub limits: LimitConfig,

    /// The waits before each redelivery of an event a program did not
    /// acknowledge, comma-separated (`15s,15s,30s,3m,...`); after the last,
    /// the event is given up. Defaults to WeChat Pay's schedule.
    #[arg(
        long,
        env = "MINIAPP_EVENT_RETRY_SCHEDULE",
        value_delimiter = ',',
        value_parser = humantime::parse_duration,
        default_value = DEFAULT_RETRY_SCHEDULE_TEXT,
    )]
    pub event_retry_schedule: Vec<Duration>,

    /// Notifications one app may send one user per UTC day (default 20).
    #[arg(long, env = "MINIAPP_DAILY_NOTIFICATIONS", default_value_t = DEFAULT_DAILY_NOTIFICATIONS)]
    pub daily_notifications: i64,

    /// How long a call's usage record and log are kept (`7days`, `12h`,
    /// ...): older ones are deleted once a minute by the nodes that deliver
    /// events. At least a minute.
    #[arg(
        long,
        env = "MINIAPP_CALL_RETENTION",
        value_parser = parse_retention,
        default_value = DEFAULT_CALL_RETENTION_TEXT,
    )]
    pub call_retention: Duration,

    /// Do not deliver events from this node (a node that only serves
    /// requests). At least one node of a platform must deliver them.
    #[arg(long, env = "MINIAPP_NO_EVENT_DISPATCH")]
    pub no_event_dispatch: bool,

    /// Install the bundled sample programs (`hello`, `hostile`, `whoami`,
    /// `notes`, `leaderboard`, `shop`, `red-envelope`, `payment-probe`,
    /// `support-chat`) on
    /// start, released by the platform under the `samples` account.
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
            admin_username: "admin".parse().expect("a valid username"),
            admin_password: None,
            session_ttl_secs: DEFAULT_SESSION_TTL.as_secs(),
            max_component_bytes: DEFAULT_MAX_COMPONENT_BYTES,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            max_concurrent_calls: DEFAULT_MAX_CONCURRENT_CALLS,
            event_retry_schedule: DEFAULT_RETRY_SCHEDULE.to_vec(),
            no_event_dispatch: false,
            daily_notifications: DEFAULT_DAILY_NOTIFICATIONS,
            call_retention: DEFAULT_CALL_RETENTION,
            samples: false,
            native_baseline: false,
            limits: LimitConfig::default(),
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

/// A retention period: a duration of at least a minute, since the sweep
/// runs once a minute and a shorter one would delete records their
/// developer has not had the time to read.
fn parse_retention(text: &str) -> Result<Duration, String> {
    let period = humantime::parse_duration(text).map_err(|err| err.to_string())?;
    if period < Duration::from_secs(60) {
        return Err(format!(
            "{text} is shorter than the shortest retention, 1 minute"
        ));
    }
    Ok(period)
}

const DEFAULT: Limits = Limits::platform_default();
const MAXIMUM: Limits = Limits::platform_maximum();

/// The platform's per-call limits: what an app gets unless it was given its
/// own, and the most any app may be given. Table and instance caps keep
/// their built-in values (see [`Limits`]).
#[derive(Debug, Clone, clap::Args)]
pub struct LimitConfig {
    /// Fuel (instructions) per call, for apps without limits of their own.
    #[arg(long, env = "MINIAPP_DEFAULT_FUEL", default_value_t = DEFAULT.fuel)]
    pub default_fuel: u64,

    /// Deadline per call in milliseconds, for apps without limits of their own.
    #[arg(long, env = "MINIAPP_DEFAULT_DEADLINE_MS", default_value_t = DEFAULT.deadline_ms)]
    pub default_deadline_ms: u64,

    /// Linear memory per call in bytes, for apps without limits of their own.
    #[arg(long, env = "MINIAPP_DEFAULT_MEMORY_BYTES", default_value_t = DEFAULT.memory_bytes)]
    pub default_memory_bytes: u64,

    /// The most fuel any app may be given.
    #[arg(long, env = "MINIAPP_MAX_FUEL", default_value_t = MAXIMUM.fuel)]
    pub max_fuel: u64,

    /// The longest deadline any app may be given, in milliseconds.
    #[arg(long, env = "MINIAPP_MAX_DEADLINE_MS", default_value_t = MAXIMUM.deadline_ms)]
    pub max_deadline_ms: u64,

    /// The most memory any app may be given, in bytes; also sizes the
    /// pooling allocator's memory slots.
    #[arg(long, env = "MINIAPP_MAX_MEMORY_BYTES", default_value_t = MAXIMUM.memory_bytes)]
    pub max_memory_bytes: u64,
}

impl Default for LimitConfig {
    fn default() -> Self {
        LimitConfig {
            default_fuel: DEFAULT.fuel,
            default_deadline_ms: DEFAULT.deadline_ms,
            default_memory_bytes: DEFAULT.memory_bytes,
            max_fuel: MAXIMUM.fuel,
            max_deadline_ms: MAXIMUM.deadline_ms,
            max_memory_bytes: MAXIMUM.memory_bytes,
        }
    }
}

impl LimitConfig {
    /// The limits of apps without their own.
    pub fn defaults(&self) -> Limits {
        Limits {
            fuel: self.default_fuel,
            deadline_ms: self.default_deadline_ms,
            memory_bytes: self.default_memory_bytes,
            ..DEFAULT
        }
    }

    /// The most any app may be given.
    pub fn maxima(&self) -> Limits {
        Limits {
            fuel: self.max_fuel,
            deadline_ms: self.max_deadline_ms,
            memory_bytes: self.max_memory_bytes,
            ..MAXIMUM
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_default_retry_schedule_flag_spells_the_constant() {
        let parsed: Vec<_> = super::DEFAULT_RETRY_SCHEDULE_TEXT
            .split(',')
            .map(|wait| humantime::parse_duration(wait).unwrap())
            .collect();
        assert_eq!(parsed, super::DEFAULT_RETRY_SCHEDULE);
    }

    #[test]
    fn retention_is_a_duration_of_at_least_a_minute() {
        assert_eq!(
            super::parse_retention(super::DEFAULT_CALL_RETENTION_TEXT),
            Ok(super::DEFAULT_CALL_RETENTION)
        );
        assert_eq!(
            super::parse_retention("90s"),
            Ok(std::time::Duration::from_secs(90))
        );
        let short = super::parse_retention("59s").unwrap_err();
        assert!(short.contains("1 minute"), "{short}");
        assert!(super::parse_retention("seven days").is_err());
    }
}
