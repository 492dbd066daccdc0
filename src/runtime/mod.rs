//! Running as a service: configuration reload (`reload`), systemd's notify protocol and
//! watchdog (`service`), and signals. Only `app` (and the admin API's reload route) use it.

pub mod reload;
pub mod service;
pub mod signals;
