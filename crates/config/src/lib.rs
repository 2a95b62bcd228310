//! pgsplit configuration (being written).
mod types;
pub use types::*;
