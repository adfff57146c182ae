//! WASI 0.2 for components from other languages, locked down: no preopened
//! directories, no environment or arguments, no sockets or name lookup,
//! stdin empty; stdout and stderr go to the call's log; clocks and random work.

use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::runtime::CallState;

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        // Built on first use: most calls of programs that never touch WASI
        // pay nothing for it.
        let log = &self.log;
        let ctx = self.wasi.get_or_insert_with(|| locked_down(log));
        WasiCtxView {
            ctx,
            table: &mut self.table,
        }
    }
}

fn locked_down(log: &crate::runtime::call_log::SharedLog) -> WasiCtx {
    WasiCtx::builder()
        .stdout(log.stream())
        .stderr(log.stream())
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(|_, _| Box::pin(async { false }))
        .build()
}
