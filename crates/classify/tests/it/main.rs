//! Integration tests of pgsplit-classify: the data-driven corpus and the sqlparser
//! differential check.

mod corpus;
mod differential;
