//! Per-endpoint rate limits over a rolling window.
//! Endpoints without a documented limit share the configurable default.
//!
//! An endpoint is a method plus a path template, e.g. `POST /lists/{id}/sync_contacts/`, so
//! every list shares one budget. Only requests that were let through are remembered: a
//! throttled request neither has a side effect nor uses up a slot.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

/// Key of [`RateLimiter::set_limit`] that changes the limit of every endpoint without its own.
pub(super) const DEFAULT_KEY: &str = "default";

/// Spoki's documented per-minute limits for the endpoints the simulator serves.
pub(super) const BUILTIN_LIMITS: &[(&str, u32)] = &[
    ("POST /contacts/sync_all/", 1),
    ("POST /lists/{id}/sync_contacts/", 1),
    ("GET /lists/", 5),
    ("GET /lists/{id}/", 5),
    ("DELETE /lists/{id}/", 5),
    ("POST /lists/{id}/remove_contacts/", 5),
    ("POST /lists/{id}/remove_all_contacts/", 5),
    ("POST /contacts/{id}/add_operator/", 5),
    ("POST /contacts/{id}/remove_operator/", 5),
    ("GET /custom-fields/", 5),
    ("POST /custom-fields/", 5),
    ("GET /custom-fields/{id}/", 5),
    ("PATCH /custom-fields/{id}/", 5),
    ("DELETE /custom-fields/{id}/", 5),
    ("GET /accounts/", 5),
    ("GET /roles/{id}/", 5),
    ("DELETE /roles/{id}/", 5),
    ("PATCH /campaigns/{id}/", 5),
    ("POST /invitations/{id}/send/", 5),
    ("POST /invitations/{id}/update_role/", 5),
    ("POST /lists/", 10),
    ("POST /roles/add_service_user/", 10),
    ("POST /roles/{id}/generate_private_key/", 10),
    ("GET /roles/{id}/has_private_key/", 10),
    ("POST /roles/{id}/update_role/", 10),
    ("POST /templates/", 10),
    ("PATCH /templates/{id}/", 10),
    ("DELETE /templates/{id}/", 10),
    ("DELETE /media/{id}/", 60),
    ("DELETE /tickets/{id}/", 60),
    ("GET /contacts/", 120),
    ("POST /contacts/sync/", 120),
    ("POST /media/", 120),
    ("PATCH /media/{id}/", 120),
    ("POST /tickets/", 120),
];

#[derive(Debug)]
pub(super) struct RateLimiter {
    window: Duration,
    default_limit: u32,
    overrides: HashMap<String, u32>,
    /// When each let-through request of the current window arrived, oldest first.
    hits: HashMap<String, VecDeque<Instant>>,
}

impl RateLimiter {
    pub(super) fn new(
        window: Duration,
        default_limit: u32,
        overrides: HashMap<String, u32>,
    ) -> Self {
        let mut limiter = Self {
            window,
            default_limit,
            overrides: HashMap::new(),
            hits: HashMap::new(),
        };
        for (endpoint, limit) in overrides {
            limiter.set_limit(&endpoint, limit);
        }
        limiter
    }

    pub(super) fn limit_for(&self, endpoint: &str) -> u32 {
        self.overrides
            .get(endpoint)
            .copied()
            .or_else(|| {
                BUILTIN_LIMITS
                    .iter()
                    .find(|(name, _)| *name == endpoint)
                    .map(|(_, limit)| *limit)
            })
            .unwrap_or(self.default_limit)
    }

    /// Whether `endpoint` has a limit of its own (built in or set), not just the default.
    /// Endpoints Spoki does not rate limit (automation starts) are limited only then.
    pub(super) fn has_own_limit(&self, endpoint: &str) -> bool {
        self.overrides.contains_key(endpoint)
            || BUILTIN_LIMITS.iter().any(|(name, _)| *name == endpoint)
    }

    pub(super) fn set_limit(&mut self, endpoint: &str, per_window: u32) {
        if endpoint == DEFAULT_KEY {
            self.default_limit = per_window;
        } else {
            self.overrides.insert(endpoint.to_owned(), per_window);
        }
    }

    pub(super) fn set_window(&mut self, window: Duration) {
        self.window = window;
    }

    /// Takes a slot for `endpoint` at `now`, or says how long until one frees.
    pub(super) fn try_acquire(&mut self, endpoint: &str, now: Instant) -> Result<(), Duration> {
        let limit = usize::try_from(self.limit_for(endpoint)).unwrap_or(usize::MAX);
        let window = self.window;
        let hits = self.hits.entry(endpoint.to_owned()).or_default();
        while hits
            .front()
            .is_some_and(|&at| now.saturating_duration_since(at) >= window)
        {
            hits.pop_front();
        }
        if hits.len() < limit {
            hits.push_back(now);
            return Ok(());
        }
        // With a limit lowered at runtime more hits than the limit may be live: a slot frees
        // when enough of the oldest have left the window to bring the count under it.
        let wait = match hits.len().checked_sub(limit).and_then(|i| hits.get(i)) {
            Some(&at) if limit > 0 => (at + window).saturating_duration_since(now),
            _ => window,
        };
        Err(wait.max(Duration::from_millis(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_limits_and_overrides() {
        let mut limiter = RateLimiter::new(
            Duration::from_secs(60),
            60,
            HashMap::from([("GET /contacts/".to_owned(), 7)]),
        );
        assert_eq!(limiter.limit_for("POST /contacts/sync_all/"), 1);
        assert_eq!(limiter.limit_for("GET /contacts/"), 7);
        assert_eq!(limiter.limit_for("GET /contacts/{id}/"), 60);
        limiter.set_limit(DEFAULT_KEY, 3);
        assert_eq!(limiter.limit_for("GET /contacts/{id}/"), 3);
    }

    #[test]
    fn rolling_window_frees_the_oldest_slot() {
        let mut limiter = RateLimiter::new(Duration::from_secs(10), 2, HashMap::new());
        let t0 = Instant::now();
        let key = "GET /contacts/{id}/";
        assert!(limiter.try_acquire(key, t0).is_ok());
        assert!(
            limiter
                .try_acquire(key, t0 + Duration::from_secs(4))
                .is_ok()
        );
        let wait = limiter
            .try_acquire(key, t0 + Duration::from_secs(6))
            .expect_err("third request in the window");
        assert_eq!(wait, Duration::from_secs(4));
        // The refused request took no slot: at t0+10 the first one has left the window.
        assert!(
            limiter
                .try_acquire(key, t0 + Duration::from_secs(10))
                .is_ok()
        );
        assert!(
            limiter
                .try_acquire(key, t0 + Duration::from_secs(11))
                .is_err()
        );
    }

    #[test]
    fn lowering_a_limit_counts_every_live_hit() {
        let mut limiter = RateLimiter::new(Duration::from_secs(10), 3, HashMap::new());
        let t0 = Instant::now();
        let key = "POST /lists/";
        limiter.set_limit(key, 3);
        for s in 0..3 {
            assert!(
                limiter
                    .try_acquire(key, t0 + Duration::from_secs(s))
                    .is_ok()
            );
        }
        limiter.set_limit(key, 1);
        let wait = limiter
            .try_acquire(key, t0 + Duration::from_secs(3))
            .expect_err("over the lowered limit");
        // All three live hits must leave the window; the newest leaves at t0+12.
        assert_eq!(wait, Duration::from_secs(9));
        limiter.set_limit(key, 0);
        assert_eq!(
            limiter.try_acquire(key, t0 + Duration::from_secs(3)),
            Err(Duration::from_secs(10))
        );
    }
}
