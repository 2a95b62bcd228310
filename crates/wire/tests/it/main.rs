//! Integration tests of pgsplit-wire: one binary, one module per area of the crate.

mod backend;
mod errfields;
mod frame;
mod frontend;
mod malformed;
mod md5;
mod scram;
mod sqlstate;
mod startup;
mod support;
