//! The commands beside `run`: `plan` (a file judged without sending), `demo` (the quickstart
//! on the simulator), and the admin API client behind `cmd` and `status`.

pub mod actions;
pub mod client;
#[cfg(feature = "sim")]
pub mod demo;
pub mod plan;

/// Whether text output may be coloured: only on a terminal, and never when `NO_COLOR` is set
/// to anything but the empty string (no-color.org).
pub fn colour(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        use std::ffi::OsStr;
        assert!(super::colour(true, None));
        assert!(super::colour(true, Some(OsStr::new(""))));
        assert!(!super::colour(true, Some(OsStr::new("1"))));
        assert!(!super::colour(false, None));
    }
}
