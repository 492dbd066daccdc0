//! Small values every Spoki call and the configuration share: a secret that never prints, and
//! a rate limit written `COUNT/DURATION`.

use std::fmt;
use std::time::Duration;

/// A value that must never reach a log line or an error message.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// `COUNT/DURATION`, e.g. `1/60s`: at most `count` requests in any `per` window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub count: u32,
    pub per: Duration,
}

impl RateLimit {
    pub const fn per_minute(count: u32) -> RateLimit {
        RateLimit {
            count,
            per: Duration::from_secs(60),
        }
    }

    pub fn parse(text: &str) -> Result<RateLimit, String> {
        let (count, per) = text
            .split_once('/')
            .ok_or_else(|| format!("{text:?} is not COUNT/DURATION, e.g. 1/60s"))?;
        let count: u32 = count
            .trim()
            .parse()
            .map_err(|_| format!("{text:?}: {count:?} is not a whole number"))?;
        let per = parse_duration(per.trim())?;
        if count == 0 || per.is_zero() {
            return Err(format!("{text:?}: count and duration must be above zero"));
        }
        Ok(RateLimit { count, per })
    }

    /// The even spacing between two requests under this limit.
    pub fn interval(&self) -> Duration {
        self.per / self.count
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.count, humantime::format_duration(self.per))
    }
}

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("{text:?} is not a duration like 500ms, 2s or 15m ({e})"))
}
