//! spoki-sync: keeps a business's contacts in Spoki and its own systems in step.
//! See ARCHITECTURE.md for the map of modules and the rules they keep.

pub mod admin;
pub mod app;
pub mod commands;
pub mod config;
#[cfg(feature = "sim")]
pub mod demo;
pub mod diff;
pub mod domain;
pub mod ingest;
pub mod live;
pub mod merge;
pub mod mirror;
pub mod mirror_rules;
pub mod normalise;
pub mod outbound;
pub mod plan;
pub mod reload;
pub mod service;
pub mod signals;
pub mod sources;
pub mod store;
pub mod webhooks;

/// The Spoki client crate, under the name the daemon's modules use.
pub use spoki_api as spoki;
/// The bundled simulator (feature `sim`, on by default).
#[cfg(feature = "sim")]
pub use spoki_sim as sim;
