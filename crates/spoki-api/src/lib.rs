//! Everything that knows Spoki: its paths and JSON, the HTTP client, its typed error, the
//! catalogue of actions with their default rate limits, and the values they share (a secret
//! that never prints, a rate limit). Each call is one attempt; callers own retries because
//! every attempt must take its own rate-limit slot. No SQL and no tasks of its own.
//!
//! The daemon reaches it as `spoki_sync::spoki`; the simulator (`spoki-sim`) must never
//! depend on it, so a wire-format mistake here cannot be mirrored there.

pub mod actions;
mod client;
mod error;
mod pager;
mod values;
mod wire;

pub use client::{Answer, SpokiClient, note_skipped};
pub use error::{MAX_RETRY_AFTER, SpokiError};
pub use pager::{Pager, PassEnd};

/// Makes rustls' `ring` provider the process default, once; every HTTP client is built
/// after it (`SpokiClient::new` calls it, so does the binary at start). Later calls are no-ops.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
pub use values::{RateLimit, Secret, parse_duration};
pub use wire::{
    ContactFieldValue, ContactPayload, ContactRecord, CustomFieldRecord, Page, Record, Unreadable,
    already_exists, refused_items,
};
