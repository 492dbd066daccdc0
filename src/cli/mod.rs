//! The commands beside `run`: `plan` (a file judged without sending), `demo` (the quickstart
//! on the simulator), and the admin API client behind `cmd` and `status`.

pub mod client;
#[cfg(feature = "sim")]
pub mod demo;
pub mod plan;
