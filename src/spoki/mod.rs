//! The only module that knows Spoki's paths and JSON: the HTTP client, its typed error and the
//! wire shapes. Each call is one attempt; callers own retries because every attempt must take
//! its own rate-limit slot.

pub mod actions;
mod client;
mod error;
mod wire;

pub use client::{Answer, SpokiClient};
pub use error::SpokiError;
pub use wire::{ContactPayload, ContactRecord, CustomFieldRecord, Page};
