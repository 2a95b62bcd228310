//! pgsplit end-to-end tests: the proxy in-process in front of the real primary that
//! `cargo xtask test` starts, driven by tokio-postgres, pgbench and psql.
//!
//! Without the cluster's environment variables the real-cluster tests skip, unless
//! `PGSPLIT_REQUIRE_CLUSTER=1` makes that a failure (as `cargo xtask test` and CI do).
//! The `mock_server` tests need no cluster and always run.
//!
//! By hand, against `cargo xtask cluster up` (or any PostgreSQL with role `app`/`app`, CREATEDB):
//! `PGSPLIT_TEST_PRIMARY=127.0.0.1:15432 PGSPLIT_TEST_SUPERUSER=postgres:postgres cargo test -p pgsplit-e2e`.
//! `RUST_LOG=pgsplit=debug` shows the proxy's logs of a failing test; `PGSPLIT_E2E_BYPASS_PROXY=1`
//! runs the same tests straight against the server (see `harness.rs`).

mod auth;
mod basic;
mod cancel;
mod cluster;
mod console;
mod copy;
mod errors;
mod faults;
mod harness;
mod health;
mod limits;
mod mock_server;
mod notify;
mod own_cluster;
mod pooling;
mod reload;
mod routing;
mod safety;
mod session;
mod shutdown;
mod tls;
mod tools;

use md5::{Digest, Md5};

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// PostgreSQL's `md5(text)`: lower-case hex of the MD5 digest.
pub(crate) fn md5_hex(data: &[u8]) -> String {
    hex(&Md5::digest(data))
}
