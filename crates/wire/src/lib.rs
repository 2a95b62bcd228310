//! PostgreSQL v3 wire protocol, sans-IO (being written).
