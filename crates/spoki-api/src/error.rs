//! One error type for every Spoki call, typed by what the answer means: throttled, refused
//! (with the items a bulk refusal names), already there, unauthorized, transient (with whether
//! it may have applied) or fatal. `Retry-After` is read here, in either of its forms.

use std::time::{Duration, SystemTime};

/// The longest wait a `Retry-After` may impose: a value beyond it (a date far off, a huge
/// number) is read as this, so one odd header cannot stop an action for days.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, thiserror::Error)]
pub enum SpokiError {
    /// 429: over the limit; nothing happened. `retry_after` is the server's `Retry-After`.
    #[error("rate limited by Spoki (retry after {retry_after:?})")]
    Throttled { retry_after: Option<Duration> },
    /// A 4xx other than 401, 403 and 429: Spoki refused the request and will refuse it again.
    /// `items`: for a bulk write whose refusal names its items one by one, the reason for each
    /// refused item (`None` for an item that was fine), in request order.
    #[error("Spoki rejected the request with HTTP {status}: {body}")]
    Rejected {
        status: u16,
        body: serde_json::Value,
        items: Option<Vec<Option<String>>>,
    },
    /// A create refused because the thing already exists (read from Spoki's 400 body: a hint,
    /// not proof; a caller that must be sure lists again).
    #[error("Spoki says it already exists: {body}")]
    AlreadyExists { body: serde_json::Value },
    /// 401 or 403: the key's or the account's problem, not the request's.
    #[error("Spoki refused the API key or the account (HTTP {status}): {body}")]
    Unauthorized {
        status: u16,
        body: serde_json::Value,
    },
    /// A 5xx answer (`status`), no answer in time, a broken or a refused connection.
    /// `may_have_applied`: the request may have taken effect although no answer came (false
    /// only when it certainly never left, e.g. connection refused).
    #[error("{reason}")]
    Transient {
        reason: String,
        status: Option<u16>,
        may_have_applied: bool,
    },
    /// A 2xx whose body is not what the endpoint documents: Spoki did it, we cannot read it.
    #[error("unexpected answer from Spoki: {reason}")]
    Decode { reason: String },
    /// Nothing was sent and sending again will not help: a bad path, a `next` link to another
    /// host (the API key never leaves for one), an HTTP client that cannot be built.
    #[error("{reason}")]
    Fatal { reason: String },
}

impl SpokiError {
    /// Whether the request may have changed something in Spoki although it failed.
    pub fn may_have_applied(&self) -> bool {
        matches!(
            self,
            SpokiError::Transient {
                may_have_applied: true,
                ..
            }
        )
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            SpokiError::Throttled { retry_after } => *retry_after,
            _ => None,
        }
    }

    /// The HTTP status Spoki answered, when it answered one.
    pub fn status(&self) -> Option<u16> {
        match self {
            SpokiError::Throttled { .. } => Some(429),
            SpokiError::Rejected { status, .. } | SpokiError::Unauthorized { status, .. } => {
                Some(*status)
            }
            SpokiError::AlreadyExists { .. } => Some(400),
            SpokiError::Transient { status, .. } => *status,
            SpokiError::Decode { .. } | SpokiError::Fatal { .. } => None,
        }
    }

    /// Spoki's error body, for refusals.
    pub fn body(&self) -> Option<&serde_json::Value> {
        match self {
            SpokiError::Rejected { body, .. }
            | SpokiError::Unauthorized { body, .. }
            | SpokiError::AlreadyExists { body } => Some(body),
            _ => None,
        }
    }

    /// A short label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            SpokiError::Throttled { .. } => "rate_limited",
            SpokiError::Rejected { .. } => "rejected",
            SpokiError::AlreadyExists { .. } => "already_exists",
            SpokiError::Unauthorized { .. } => "unauthorized",
            SpokiError::Transient {
                status: Some(_), ..
            } => "server_error",
            SpokiError::Transient {
                may_have_applied: true,
                ..
            } => "unanswered",
            SpokiError::Transient { .. } => "unreachable",
            SpokiError::Decode { .. } => "decode",
            SpokiError::Fatal { .. } => "fatal",
        }
    }

    /// A 5xx answer.
    pub(crate) fn server(status: u16) -> SpokiError {
        SpokiError::Transient {
            reason: format!("Spoki answered HTTP {status}"),
            status: Some(status),
            may_have_applied: true,
        }
    }
}

/// Reads `Retry-After` (RFC 9110, section 10.2.3): delta-seconds (the form DRF sends) or an HTTP-date
/// (IMF-fixdate, and the obsolete RFC 850 and asctime forms), relative to `now`. A date in the
/// past means no wait; anything is clamped to [`MAX_RETRY_AFTER`]. Unreadable: `None`.
pub(crate) fn parse_retry_after(value: Option<&str>, now: SystemTime) -> Option<Duration> {
    let value = value?.trim();
    let wait = if value.bytes().all(|b| b.is_ascii_digit()) && !value.is_empty() {
        // Delta-seconds are digits only; a huge number is simply long.
        Duration::from_secs(value.parse::<u64>().unwrap_or(u64::MAX))
    } else if let Ok(secs) = value.parse::<f64>() {
        // Not the standard's form, but unambiguous (some servers send "1.5").
        if !(secs.is_finite() && secs >= 0.0) {
            return None;
        }
        Duration::from_secs_f64(secs.min(MAX_RETRY_AFTER.as_secs_f64()))
    } else {
        let at = httpdate::parse_http_date(value).ok()?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_errors_that_may_have_arrived_may_have_applied() {
        assert!(SpokiError::server(503).may_have_applied());
        let timeout = SpokiError::Transient {
            reason: "timeout".into(),
            status: None,
            may_have_applied: true,
        };
        assert!(timeout.may_have_applied());
        assert_eq!(timeout.kind(), "unanswered");
        assert!(!SpokiError::Throttled { retry_after: None }.may_have_applied());
        let refused = SpokiError::Transient {
            reason: "refused".into(),
            status: None,
            may_have_applied: false,
        };
        assert!(!refused.may_have_applied());
        assert_eq!(refused.kind(), "unreachable");
        assert_eq!(SpokiError::server(502).status(), Some(502));
    }

    #[test]
    fn retry_after_in_seconds() {
        let now = SystemTime::now();
        assert_eq!(
            parse_retry_after(Some("7"), now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(parse_retry_after(Some(" 0 "), now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after(Some("1.5"), now),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(parse_retry_after(Some("-3"), now), None);
        assert_eq!(parse_retry_after(Some("soon"), now), None);
        assert_eq!(parse_retry_after(Some(""), now), None);
        assert_eq!(parse_retry_after(None, now), None);
    }

    #[test]
    fn retry_after_as_an_http_date() {
        // Wed, 21 Oct 2015 07:28:00 GMT
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        let now = at - Duration::from_secs(30);
        for form in [
            "Wed, 21 Oct 2015 07:28:00 GMT",
            "Wednesday, 21-Oct-15 07:28:00 GMT",
            "Wed Oct 21 07:28:00 2015",
        ] {
            assert_eq!(
                parse_retry_after(Some(form), now),
                Some(Duration::from_secs(30)),
                "{form}"
            );
        }
        assert_eq!(
            parse_retry_after(
                Some("Wed, 21 Oct 2015 07:28:00 GMT"),
                at + Duration::from_secs(5)
            ),
            Some(Duration::ZERO),
            "a date already past means no wait"
        );
        assert_eq!(
            parse_retry_after(Some("Wed, 32 Oct 2015 07:28:00 GMT"), now),
            None
        );
    }

    #[test]
    fn retry_after_is_clamped() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        assert_eq!(
            parse_retry_after(Some("99999999999999999999999"), now),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(parse_retry_after(Some("86400"), now), Some(MAX_RETRY_AFTER));
        assert_eq!(
            parse_retry_after(Some("Fri, 01 Jan 2100 00:00:00 GMT"), now),
            Some(MAX_RETRY_AFTER)
        );
    }
}
