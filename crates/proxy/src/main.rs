//! The pgsplit binary.
fn main() {}
