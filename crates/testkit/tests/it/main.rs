//! Tests of the testkit itself: the mock server speaks enough PostgreSQL for tokio-postgres.

mod mock;
