//! spoki-sync: keeps a business's contacts in Spoki and its own systems in step.
//! The modules follow the data: `sources` (inbox, CSV, webhooks, mirror journal) → `diff` and
//! the store's one enqueue path → `outbound` (budgets, the one sender, batcher) → Spoki, and
//! back through `reverse` (pull, deletions, merge) into the mirror. See ARCHITECTURE.md for the
//! map of modules and the rules they keep.

pub mod admin;
pub mod app;
pub mod cli;
pub mod commands;
pub mod config;
pub mod diff;
pub mod domain;
pub mod introspect;
pub mod listener;
pub mod live;
pub mod merge;
pub mod mirror_rules;
pub mod normalise;
pub mod outbound;
pub mod reverse;
pub mod runtime;
#[cfg(all(test, feature = "sim"))]
mod sim_rig;
pub mod sources;
pub mod store;

/// The Spoki client crate, under the name the daemon's modules use.
pub use spoki_api as spoki;
/// The bundled simulator (feature `sim`, on by default).
#[cfg(feature = "sim")]
pub use spoki_sim as sim;
