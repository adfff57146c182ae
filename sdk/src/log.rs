//! Writing to the call's log: the `log.write` import and the level macros.
//!
//! The log of one call is bounded by the host (64 KiB by default); lines past
//! the bound are dropped and the log is marked truncated. Logging never fails.

/// How much a log line matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Step-by-step detail.
    Trace,
    /// Detail for the developer chasing a problem.
    Debug,
    /// What happened, in the ordinary course.
    Info,
    /// Something unexpected that the program got over.
    Warn,
    /// Something failed.
    Error,
}

impl Level {
    /// The level's name in lower case, as the platform shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// Appends one line to this call's log.
///
/// Off WebAssembly (in a program's unit tests, say) there is no host, and the
/// line goes to standard error instead.
pub fn write(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    {
        use crate::bindings::miniapp::host::log as wit;
        let level = match level {
            Level::Trace => wit::Level::Trace,
            Level::Debug => wit::Level::Debug,
            Level::Info => wit::Level::Info,
            Level::Warn => wit::Level::Warn,
            Level::Error => wit::Level::Error,
        };
        wit::write(level, message);
    }
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("[{}] {message}", level.as_str());
}

/// Logs a line at [`Level::Trace`], formatted as by `format!`.
#[macro_export]
macro_rules! trace {
    ($($arg:tt)+) => {
        $crate::log::write($crate::log::Level::Trace, &$crate::__private::format!($($arg)+))
    };
}

/// Logs a line at [`Level::Debug`], formatted as by `format!`.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => {
        $crate::log::write($crate::log::Level::Debug, &$crate::__private::format!($($arg)+))
    };
}

/// Logs a line at [`Level::Info`], formatted as by `format!`.
///
/// ```
/// let user = "Ada";
/// miniapp_sdk::info!("greeted {user}");
/// ```
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => {
        $crate::log::write($crate::log::Level::Info, &$crate::__private::format!($($arg)+))
    };
}

/// Logs a line at [`Level::Warn`], formatted as by `format!`.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => {
        $crate::log::write($crate::log::Level::Warn, &$crate::__private::format!($($arg)+))
    };
}

/// Logs a line at [`Level::Error`], formatted as by `format!`.
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => {
        $crate::log::write($crate::log::Level::Error, &$crate::__private::format!($($arg)+))
    };
}
