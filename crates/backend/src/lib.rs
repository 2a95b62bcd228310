//! Server side (being written).
