//! Integration tests: the real daemon (in-process via `spawn_app`, or the real binary) against
//! the bundled simulator on loopback, with a real SQLite file and a real watched folder.

mod big_files;
mod catalogue;
mod chaos;
mod commands;
mod database;
mod helpers;
mod hostile_http;
mod inbox;
mod inbox_hostile;
mod mirror;
mod newcomer;
mod nothing_lost;
mod resilience;
mod service;
mod spoki_writes;
mod tolerant_reads;
