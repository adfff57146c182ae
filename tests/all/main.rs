//! Integration tests: one binary, a module per concern. Every test spawns the
//! real server on 127.0.0.1:0 with a fresh database, on SQLite and, when
//! `MINIAPP_TEST_DATABASE_URL` is set, on PostgreSQL too.

mod artifacts;
mod calls;
mod cli;
mod events;
mod fixtures;
mod identity;
mod lifecycle;
mod messaging;
mod payment;
mod sandbox;
mod storage;
mod support;
mod upload;
