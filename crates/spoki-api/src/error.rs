//! One error type for every Spoki call, saying whether a retry makes sense.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum SpokiError {
    /// 429: over the limit; nothing happened.
    #[error("rate limited by Spoki (retry after {retry_after:?})")]
    RateLimited { retry_after: Option<Duration> },
    /// A 4xx other than 429: Spoki refused the request and will refuse it again.
    #[error("Spoki rejected the request with HTTP {status}: {body}")]
    Rejected {
        status: u16,
        body: serde_json::Value,
    },
    /// A 5xx answer.
    #[error("Spoki answered HTTP {status}")]
    Server { status: u16 },
    /// No answer in time, or the connection broke after the request left: it may have been
    /// applied.
    #[error("no answer from Spoki ({reason}); the request may have been applied")]
    Unanswered { reason: String },
    /// The request never left (connection refused, DNS): nothing was applied.
    #[error("could not reach Spoki: {reason}")]
    Unreachable { reason: String },
    /// A 2xx whose body is not what the endpoint documents.
    #[error("unexpected answer from Spoki: {reason}")]
    Decode { reason: String },
}

impl SpokiError {
    /// Whether the request may have changed something in Spoki although it failed.
    pub fn may_have_applied(&self) -> bool {
        matches!(
            self,
            SpokiError::Unanswered { .. } | SpokiError::Server { .. }
        )
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            SpokiError::RateLimited { retry_after } => *retry_after,
            _ => None,
        }
    }

    /// Spoki's error body, for rejections.
    pub fn body(&self) -> Option<&serde_json::Value> {
        match self {
            SpokiError::Rejected { body, .. } => Some(body),
            _ => None,
        }
    }

    /// A short label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            SpokiError::RateLimited { .. } => "rate_limited",
            SpokiError::Rejected { .. } => "rejected",
            SpokiError::Server { .. } => "server_error",
            SpokiError::Unanswered { .. } => "unanswered",
            SpokiError::Unreachable { .. } => "unreachable",
            SpokiError::Decode { .. } => "decode",
        }
    }
}

/// Reads `Retry-After` as delta-seconds (the form DRF sends); an HTTP date is ignored.
pub(crate) fn parse_retry_after(value: Option<&str>) -> Option<Duration> {
    let secs: f64 = value?.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unanswered_and_server_errors_may_have_applied() {
        assert!(SpokiError::Server { status: 503 }.may_have_applied());
        assert!(
            SpokiError::Unanswered {
                reason: "timeout".into()
            }
            .may_have_applied()
        );
        assert!(!SpokiError::RateLimited { retry_after: None }.may_have_applied());
        assert!(
            !SpokiError::Unreachable {
                reason: "refused".into()
            }
            .may_have_applied()
        );
    }

    #[test]
    fn retry_after_seconds() {
        assert_eq!(parse_retry_after(Some("7")), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT")),
            None
        );
        assert_eq!(parse_retry_after(None), None);
    }
}
