//! pgsplit composition root (being written).
