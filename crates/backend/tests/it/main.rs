//! pgsplit-backend integration tests against a real PostgreSQL primary.
//!
//! They read `PGSPLIT_TEST_PRIMARY` (`host:port`, set by `cargo xtask test`) and need a role
//! `app` (password `app`, CREATEDB) owning a database `app`. Without the variable they skip,
//! unless `PGSPLIT_REQUIRE_CLUSTER=1` makes that a failure (as `cargo xtask test` and CI do).
//! Each test works in its own fresh database, so counts in `pg_stat_activity` are its own and the
//! tests run in parallel.
//!
//! By hand: `PGSPLIT_TEST_PRIMARY=127.0.0.1:15432 cargo test -p pgsplit-backend`.

mod harness;
mod health;
mod pool;
