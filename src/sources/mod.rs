//! The outside world in: CSV files (reader and inbox watcher). Each source turns input into
//! contacts and hands them to `ingest`.

pub mod csv_file;
pub mod inbox;
