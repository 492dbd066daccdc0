//! Decides when Spoki is called: per-endpoint budgets and the contact batcher.

pub mod backoff;
pub mod batcher;
pub mod limits;
