//! Decides when Spoki is called: per-endpoint budgets, the one sender every call goes
//! through, and the contact batcher.

pub mod backoff;
pub mod batcher;
pub mod limits;
pub mod sender;
