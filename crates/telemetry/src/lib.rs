//! Logging and metrics setup (being written).
