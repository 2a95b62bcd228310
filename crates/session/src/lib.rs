//! Per-client session (being written).
