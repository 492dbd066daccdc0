//! One budget per Spoki action (governor GCRA, evenly spaced: burst 1), shared by every caller
//! of that action. Time comes from tokio's clock, so `tokio::time::pause()` drives it in tests.
//! A 429 or a previous run's last request can also hold a budget shut until a given instant.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use tokio::time::Instant;

use crate::config::{RateLimit, Settings};
use crate::spoki::actions::Action;

/// governor clock reading tokio's (pausable) monotonic time.
#[derive(Clone, Debug)]
pub struct TokioClock {
    origin: Instant,
}

impl TokioClock {
    fn new() -> TokioClock {
        TokioClock {
            origin: Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        Nanos::from(self.origin.elapsed())
    }
}

type Limiter = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Nanos>>;

/// Added to every interval: a slot is taken before the rows are claimed and the request
/// leaves, and that delay varies, so two sends could otherwise land closer than the limit
/// allows. At most 100 ms (0.17% of a 1/min slot).
fn guard(interval: Duration) -> Duration {
    (interval / 20).min(Duration::from_millis(100))
}

fn limiter(limit: RateLimit, clock: TokioClock) -> Limiter {
    let interval = limit.interval();
    let quota = Quota::with_period((interval + guard(interval)).max(Duration::from_nanos(1)))
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(NonZeroU32::MIN);
    RateLimiter::direct_with_clock(quota, clock)
}

/// The budget of one action.
#[derive(Debug)]
pub struct Budget {
    pub action: Action,
    inner: Mutex<BudgetState>,
    clock: TokioClock,
}

struct BudgetState {
    limit: RateLimit,
    limiter: Limiter,
    blocked_until: Option<Instant>,
    last_sent: Option<Instant>,
}

impl std::fmt::Debug for BudgetState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BudgetState")
            .field("limit", &self.limit)
            .field("blocked_until", &self.blocked_until)
            .finish()
    }
}

impl Budget {
    fn new(action: Action, limit: RateLimit) -> Budget {
        let clock = TokioClock::new();
        Budget {
            action,
            inner: Mutex::new(BudgetState {
                limit,
                limiter: limiter(limit, clock.clone()),
                blocked_until: None,
                last_sent: None,
            }),
            clock,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, BudgetState> {
        // A poisoned lock only means another thread panicked mid-update of plain data.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn limit(&self) -> RateLimit {
        self.state().limit
    }

    /// Takes a slot now, or says how long until one frees.
    pub fn try_acquire(&self) -> Result<(), Duration> {
        let mut st = self.state();
        let now = Instant::now();
        if let Some(until) = st.blocked_until {
            if until > now {
                return Err(until - now);
            }
            st.blocked_until = None;
        }
        st.limiter
            .check()
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Waits for a slot and takes it.
    pub async fn acquire(&self) {
        while let Err(wait) = self.try_acquire() {
            let wait = wait.max(Duration::from_millis(1));
            self.count_wait(wait);
            tokio::time::sleep(wait).await;
        }
    }

    /// Time spent waiting for this budget (a summary: `_sum` is the total seconds).
    fn count_wait(&self, wait: Duration) {
        metrics::histogram!("spoki_sync_rate_limit_wait_seconds", "action" => self.action.name())
            .record(wait.as_secs_f64());
    }

    /// Called right before a request leaves: waits until at least one interval (plus guard)
    /// has passed since the previous request of this action left. A slot is taken before the
    /// rows are claimed, and claiming takes a varying time, so this keeps the spacing true at
    /// the moment that counts.
    pub async fn pace(&self) {
        loop {
            let wait = {
                let mut st = self.state();
                let now = Instant::now();
                let interval = st.limit.interval();
                let gap = interval + guard(interval);
                match st.last_sent {
                    Some(last) if now < last + gap => last + gap - now,
                    _ => {
                        st.last_sent = Some(now);
                        return;
                    }
                }
            };
            self.count_wait(wait);
            tokio::time::sleep(wait).await;
        }
    }

    /// Holds the budget shut for `wait` (a 429's Retry-After, or the spacing still owed to a
    /// request a previous run made).
    pub fn block_for(&self, wait: Duration) {
        let until = Instant::now() + wait;
        let mut st = self.state();
        if st.blocked_until.is_none_or(|u| u < until) {
            st.blocked_until = Some(until);
        }
    }

    /// Applies a new limit (configuration reload). The next slot is at most one new interval
    /// away.
    pub fn set_limit(&self, limit: RateLimit) {
        let mut st = self.state();
        if st.limit != limit {
            st.limit = limit;
            st.limiter = limiter(limit, self.clock.clone());
            let until = Instant::now() + limit.interval();
            st.blocked_until = Some(st.blocked_until.map_or(until, |u| u.max(until)));
        }
    }
}

/// Every action's budget, one per `Action` (indexed by it, so every action has one).
#[derive(Clone, Debug)]
pub struct Budgets {
    all: Arc<Vec<Arc<Budget>>>,
}

impl Budgets {
    pub fn from_settings(settings: &Settings) -> Budgets {
        let all = Action::ALL
            .iter()
            .map(|&a| Arc::new(Budget::new(a, settings.limit(a))))
            .collect();
        Budgets { all: Arc::new(all) }
    }

    /// The budget of `action`.
    pub fn get(&self, action: Action) -> Arc<Budget> {
        // `ALL` lists the variants in declaration order, so the discriminant is the index.
        Arc::clone(&self.all[action as usize])
    }

    /// After a crash: no action sends before one whole interval has passed.
    pub fn hold_all_one_interval(&self) {
        for budget in self.all.iter() {
            budget.block_for(budget.limit().interval());
        }
    }

    pub fn apply(&self, settings: &Settings) {
        for budget in self.all.iter() {
            budget.set_limit(settings.limit(budget.action));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(text: &str) -> Budget {
        Budget::new(
            Action::BulkSyncContacts,
            RateLimit::parse(text).expect("limit"),
        )
    }

    #[test]
    fn every_action_has_its_own_budget() {
        let budgets = Budgets::from_settings(&Settings::from_toml("").expect("defaults"));
        for &a in Action::ALL {
            assert_eq!(budgets.get(a).action, a);
            assert_eq!(budgets.get(a).limit(), a.default_limit());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn slots_are_evenly_spaced() {
        let b = budget("2/10s");
        assert!(b.try_acquire().is_ok());
        let wait = b.try_acquire().expect_err("second slot is 5 s away");
        assert_eq!(wait, Duration::from_millis(5100));
        tokio::time::advance(Duration::from_millis(5100)).await;
        assert!(b.try_acquire().is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn acquire_waits_for_the_next_slot() {
        let b = budget("1/60s");
        let start = Instant::now();
        b.acquire().await;
        b.acquire().await;
        b.acquire().await;
        assert_eq!(Instant::now() - start, Duration::from_millis(120_200));
    }

    #[tokio::test(start_paused = true)]
    async fn pace_spaces_the_moments_requests_leave() {
        let b = budget("1/10s");
        let start = Instant::now();
        b.pace().await;
        tokio::time::advance(Duration::from_secs(3)).await;
        b.pace().await;
        assert_eq!(Instant::now() - start, Duration::from_millis(10_100));
    }

    #[tokio::test(start_paused = true)]
    async fn block_for_holds_the_budget_shut() {
        let b = budget("120/60s");
        b.block_for(Duration::from_secs(7));
        assert_eq!(b.try_acquire(), Err(Duration::from_secs(7)));
        tokio::time::advance(Duration::from_secs(7)).await;
        assert!(b.try_acquire().is_ok());
    }
}
