//! The `log` capability: lines into the call's bounded log. Granted to every program.

use crate::runtime::CallState;
use crate::runtime::miniapp::host::log::{Host, Level};

impl Host for CallState {
    async fn write(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        self.host_calls += 1;
        let level = match level {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        };
        self.log.with(|log| log.line(level, &message));
        Ok(())
    }
}

impl crate::runtime::miniapp::host::types::Host for CallState {}
