//! The outside world in. Each source turns its input into contacts and hands them to the
//! store's one enqueue path (`Store::enqueue_changes`):
//! - `inbox` watches the folder and `csv_file` reads one file, which `ingest` streams;
//! - `webhooks` receives the contacts webhook (and Spoki's own events, which go to `reverse`);
//! - `mirror_journal` picks up other programs' edits to the mirror table.

pub mod csv_file;
pub mod inbox;
pub mod ingest;
pub mod mirror_journal;
pub mod webhooks;
