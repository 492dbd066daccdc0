//! The one road to Spoki. Every caller (the batcher, the command worker, the puller, the
//! deleter, custom-field creation) takes a `Slot` of its action's budget, then hands the call
//! to `Sender::send`, which paces it, sends it once, records when it left, classifies the
//! answer and, on a 429, holds the budget shut for `Retry-After`. The answer comes back as a
//! `Sent` outcome, and `Sent::retry_in` is the one retry policy: callers only decide what a
//! final outcome means for their rows.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::backoff;
use super::limits::{Budget, Budgets};
use crate::spoki::actions::Action;
use crate::spoki::{SpokiClient, SpokiError};
use crate::store::{Store, now_ms};

/// A slot taken from an action's budget: the proof that one request of it may leave.
#[must_use = "a slot is spent only by sending"]
#[derive(Debug)]
pub struct Slot {
    action: Action,
    budget: Arc<Budget>,
}

impl Slot {
    /// The action whose budget this slot is of.
    pub fn action(&self) -> Action {
        self.action
    }
}

/// What one request came to.
#[derive(Debug)]
pub enum Sent<T> {
    Done(T),
    /// 429: nothing happened. The action's budget is already held shut for `wait`.
    Throttled {
        wait: Duration,
    },
    /// 5xx, a timeout, a broken or refused connection. `may_have_applied`: the request may
    /// have taken effect although no answer came.
    Transient {
        error: SpokiError,
        may_have_applied: bool,
    },
    /// 401 or 403: the key's or the account's problem, not the request's.
    Unauthorized {
        status: u16,
        body: Value,
    },
    /// Any other 4xx: Spoki refused the request, and will refuse it again. `items`: for a
    /// bulk write whose refusal names its items, each refused item's reason, in order.
    Refused {
        status: u16,
        body: Value,
        items: Option<Vec<Option<String>>>,
    },
    /// A create refused because the thing exists already (a hint read from the 400's body).
    AlreadyExists {
        body: Value,
    },
    /// A 2xx whose body is not what the endpoint documents: Spoki did it.
    Garbled {
        reason: String,
    },
    /// Nothing was sent, and sending again will not help (a link off Spoki's host, a bad
    /// path).
    Fatal {
        reason: String,
    },
}

impl<T> Sent<T> {
    /// The retry policy, in one place: a throttled request again once its budget opens; an
    /// unauthorized or transient one after exponential backoff with jitter (`failures`
    /// counts this one); a refusal or a done request never.
    pub fn retry_in(&self, failures: u32, max_backoff: Duration) -> Option<Duration> {
        match self {
            Sent::Throttled { wait } => Some(*wait),
            Sent::Transient { .. } | Sent::Unauthorized { .. } => {
                Some(backoff::delay(failures.max(1), max_backoff))
            }
            Sent::Done(_)
            | Sent::Refused { .. }
            | Sent::AlreadyExists { .. }
            | Sent::Garbled { .. }
            | Sent::Fatal { .. } => None,
        }
    }

    /// Whether this attempt counts as a failure toward giving up (a 429 does not: nothing
    /// happened, and waiting is the fix).
    pub fn is_failure(&self) -> bool {
        !matches!(self, Sent::Done(_) | Sent::Throttled { .. })
    }

    /// A short text for logs and stored errors (never the key).
    pub fn describe(&self) -> String {
        match self {
            Sent::Done(_) => "done".to_owned(),
            Sent::Throttled { wait } => {
                format!("rate limited by Spoki (retry in {} ms)", wait.as_millis())
            }
            Sent::Transient { error, .. } => error.to_string(),
            Sent::Unauthorized { status, body } | Sent::Refused { status, body, .. } => {
                format!("Spoki refused the request with HTTP {status}: {body}")
            }
            Sent::AlreadyExists { body } => format!("Spoki says it already exists: {body}"),
            Sent::Garbled { reason } => format!("unexpected answer from Spoki: {reason}"),
            Sent::Fatal { reason } => reason.clone(),
        }
    }

    /// `no_retry_after`: how long a 429 without `Retry-After` waits (one interval of the
    /// action's limit).
    fn classify(result: Result<T, SpokiError>, no_retry_after: Duration) -> Sent<T> {
        match result {
            Ok(v) => Sent::Done(v),
            Err(SpokiError::Throttled { retry_after }) => Sent::Throttled {
                wait: retry_after
                    .filter(|d| !d.is_zero())
                    .unwrap_or(no_retry_after),
            },
            Err(SpokiError::Unauthorized { status, body }) => Sent::Unauthorized { status, body },
            Err(SpokiError::Rejected {
                status,
                body,
                items,
            }) => Sent::Refused {
                status,
                body,
                items,
            },
            Err(SpokiError::AlreadyExists { body }) => Sent::AlreadyExists { body },
            Err(SpokiError::Decode { reason }) => Sent::Garbled { reason },
            Err(SpokiError::Fatal { reason }) => Sent::Fatal { reason },
            Err(error @ SpokiError::Transient { .. }) => Sent::Transient {
                may_have_applied: error.may_have_applied(),
                error,
            },
        }
    }
}

/// Sends requests to Spoki under the per-action budgets.
#[derive(Clone, Debug)]
pub struct Sender {
    client: SpokiClient,
    budgets: Budgets,
    store: Store,
}

impl Sender {
    pub fn new(client: SpokiClient, budgets: Budgets, store: Store) -> Sender {
        Sender {
            client,
            budgets,
            store,
        }
    }

    /// The client, to build calls with (they run only inside `send`).
    pub fn client(&self) -> &SpokiClient {
        &self.client
    }

    /// Takes a slot of `action`'s budget now, or says how long until one frees.
    pub fn try_slot(&self, action: Action) -> Result<Slot, Duration> {
        let budget = self.budgets.get(action);
        budget.try_acquire()?;
        Ok(Slot { action, budget })
    }

    /// Waits for a slot of `action`'s budget.
    pub async fn slot(&self, action: Action) -> Slot {
        let budget = self.budgets.get(action);
        budget.acquire().await;
        Slot { action, budget }
    }

    /// Sends `call` (a request of `slot`'s action, not yet started: futures do nothing until
    /// polled) once. Nothing stands between the pacing and the request leaving; the moment it
    /// left is stored once the answer is in, so a restart keeps the spacing.
    pub async fn send<T>(
        &self,
        slot: Slot,
        call: impl Future<Output = Result<T, SpokiError>>,
    ) -> Sent<T> {
        let Slot { action, budget } = slot;
        budget.pace().await;
        let sent_at = now_ms();
        let result = call.await;
        if let Err(error) = self.store.mark_budget(action.name(), sent_at).await {
            tracing::warn!(%error, action = action.name(), "cannot record when a request left");
        }
        let sent = Sent::classify(
            result,
            budget.limit().interval().max(Duration::from_millis(1)),
        );
        if let Sent::Throttled { wait } = &sent {
            budget.block_for(*wait);
            tracing::warn!(
                action = action.name(),
                wait_ms = wait.as_millis() as u64,
                "Spoki answered 429; the action waits"
            );
        }
        sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_retry_policy_is_one_table() {
        let max = Duration::from_secs(60);
        let throttled: Sent<()> = Sent::Throttled {
            wait: Duration::from_secs(7),
        };
        assert_eq!(throttled.retry_in(1, max), Some(Duration::from_secs(7)));
        assert!(!throttled.is_failure());
        let unauthorized: Sent<()> = Sent::Unauthorized {
            status: 401,
            body: Value::Null,
        };
        assert!(unauthorized.retry_in(1, max).is_some());
        assert!(unauthorized.is_failure());
        let transient: Sent<()> = Sent::Transient {
            error: SpokiError::Transient {
                reason: "HTTP 503".into(),
                status: Some(503),
                may_have_applied: true,
            },
            may_have_applied: true,
        };
        let wait = transient.retry_in(3, max).expect("retried");
        assert!(wait >= Duration::from_secs(2) && wait <= Duration::from_secs(4));
        let refused: Sent<()> = Sent::Refused {
            status: 400,
            body: Value::Null,
            items: None,
        };
        assert_eq!(refused.retry_in(1, max), None);
        assert_eq!(Sent::Done(()).retry_in(1, max), None);
    }

    #[test]
    fn answers_are_classified_by_status() {
        let c = |e: SpokiError| Sent::<()>::classify(Err(e), Duration::from_secs(1));
        assert!(matches!(
            c(SpokiError::Unauthorized {
                status: 403,
                body: Value::Null
            }),
            Sent::Unauthorized { status: 403, .. }
        ));
        assert!(matches!(
            c(SpokiError::Rejected {
                status: 413,
                body: Value::Null,
                items: None,
            }),
            Sent::Refused { status: 413, .. }
        ));
        let items = Some(vec![None, Some("bad phone".to_owned())]);
        assert!(matches!(
            c(SpokiError::Rejected {
                status: 400,
                body: Value::Null,
                items: items.clone(),
            }),
            Sent::Refused { status: 400, items: i, .. } if i == items
        ));
        assert!(matches!(
            c(SpokiError::AlreadyExists { body: Value::Null }),
            Sent::AlreadyExists { .. }
        ));
        assert!(matches!(
            c(SpokiError::Fatal {
                reason: "off host".into()
            }),
            Sent::Fatal { .. }
        ));
        assert!(matches!(
            c(SpokiError::Transient {
                reason: "timeout".into(),
                status: None,
                may_have_applied: true,
            }),
            Sent::Transient {
                may_have_applied: true,
                ..
            }
        ));
        assert!(matches!(
            c(SpokiError::Transient {
                reason: "refused".into(),
                status: None,
                may_have_applied: false,
            }),
            Sent::Transient {
                may_have_applied: false,
                ..
            }
        ));
        assert!(matches!(
            c(SpokiError::Throttled { retry_after: None }),
            Sent::Throttled { wait } if wait == Duration::from_secs(1)
        ));
        assert!(matches!(
            c(SpokiError::Throttled {
                retry_after: Some(Duration::from_secs(9))
            }),
            Sent::Throttled { wait } if wait == Duration::from_secs(9)
        ));
    }
}
