//! spoki-sync: keeps a business's contacts in Spoki and its own systems in step.
//! See ARCHITECTURE.md for the map of modules and the rules they keep.

pub mod admin;
pub mod app;
pub mod commands;
pub mod config;
pub mod demo;
pub mod diff;
pub mod domain;
pub mod ingest;
pub mod live;
pub mod merge;
pub mod mirror;
pub mod normalise;
pub mod outbound;
pub mod plan;
pub mod reload;
pub mod service;
pub mod signals;
pub mod sim;
pub mod sources;
pub mod spoki;
pub mod store;
pub mod webhooks;
