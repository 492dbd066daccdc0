//! Decides when Spoki is called: per-endpoint budgets, the one sender every call goes
//! through, and the contact batcher.

pub mod backoff;
pub mod batcher;
#[cfg(all(test, feature = "sim"))]
mod batcher_tests;
pub mod custom_fields;
pub mod limits;
pub mod sender;
