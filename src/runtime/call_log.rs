//! The bounded log of one call: `log.write` lines and the guest's stdout and stderr.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi_io::streams::{OutputStream, StreamResult};

use crate::domain::storable_text;

/// Default bound on one call's log: 64 KiB.
pub const DEFAULT_LOG_LIMIT: usize = 64 << 10;

/// What a call wrote, capped at a fixed number of bytes. Writes past the cap
/// are dropped and counted, never refused: a guest cannot fail or block by
/// logging too much.
#[derive(Debug)]
pub struct CallLog {
    text: Vec<u8>,
    limit: usize,
    dropped: u64,
}

impl CallLog {
    pub fn new(limit: usize) -> Self {
        CallLog {
            text: Vec::new(),
            limit,
            dropped: 0,
        }
    }

    /// Appends raw bytes, keeping what fits under the limit.
    pub fn append(&mut self, bytes: &[u8]) {
        let room = self.limit.saturating_sub(self.text.len());
        let kept = bytes.len().min(room);
        self.text.extend_from_slice(&bytes[..kept]);
        self.dropped += (bytes.len() - kept) as u64;
    }

    /// Appends one line written through the `log` interface.
    pub fn line(&mut self, level: &str, message: &str) {
        for part in [level.as_bytes(), b": ", message.as_bytes(), b"\n"] {
            self.append(part);
        }
    }

    /// The log as text, with a closing marker when anything was dropped.
    /// Invalid UTF-8 and NUL characters are replaced with U+FFFD: PostgreSQL
    /// text cannot hold NUL, and one record it refuses would fail the whole
    /// batch of usage records written with it, every app's.
    pub fn render(&self) -> String {
        let mut text = storable_text(String::from_utf8_lossy(&self.text).into_owned());
        if self.dropped > 0 {
            if !text.ends_with('\n') && !text.is_empty() {
                text.push('\n');
            }
            text.push_str(&format!(
                "[log truncated: {} more bytes dropped]\n",
                self.dropped
            ));
        }
        text
    }
}

/// A call's log shared between the store and the guest's output streams.
#[derive(Debug, Clone)]
pub struct SharedLog(Arc<Mutex<CallLog>>);

impl SharedLog {
    pub fn new(limit: usize) -> Self {
        SharedLog(Arc::new(Mutex::new(CallLog::new(limit))))
    }

    pub fn with<R>(&self, f: impl FnOnce(&mut CallLog) -> R) -> R {
        // A poisoned lock only means a writer panicked mid-append; the bytes
        // already in the log are still worth keeping.
        let mut log = self.0.lock().unwrap_or_else(|poison| poison.into_inner());
        f(&mut log)
    }

    /// A stdout or stderr for the guest that writes into this log.
    pub fn stream(&self) -> LogStream {
        LogStream(self.clone())
    }
}

/// The guest's stdout or stderr: accepts every byte, keeps what fits in the log.
#[derive(Debug, Clone)]
pub struct LogStream(SharedLog);

impl IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogStream {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi_io::async_trait]
impl wasmtime_wasi_io::poll::Pollable for LogStream {
    async fn ready(&mut self) {}
}

#[wasmtime_wasi_io::async_trait]
impl OutputStream for LogStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.0.with(|log| log.append(&bytes));
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 << 10)
    }
}

impl tokio::io::AsyncWrite for LogStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.0.with(|log| log.append(buf));
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_keeps_what_fits_and_marks_the_rest_dropped() {
        let mut log = CallLog::new(17);
        log.line("info", "0123456789");
        log.append(b"abcdefghij");
        let text = log.render();
        assert!(text.starts_with("info: 0123456789\n"), "{text}");
        assert!(
            text.ends_with("[log truncated: 10 more bytes dropped]\n"),
            "{text}"
        );
    }

    #[test]
    fn nul_characters_are_replaced_so_every_engine_stores_the_log() {
        let mut log = CallLog::new(64);
        log.line("info", "a\0b");
        log.append(b"\0");
        assert_eq!(log.render(), "info: a\u{FFFD}b\n\u{FFFD}");
    }

    #[test]
    fn log_under_the_limit_has_no_marker() {
        let mut log = CallLog::new(64);
        log.line("warn", "careful");
        assert_eq!(log.render(), "warn: careful\n");
    }
}
