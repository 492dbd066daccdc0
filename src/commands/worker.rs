//! Runs queued commands under their action's budget (the same budgets the contact sync uses),
//! one at a time per action so each action's commands go in the order they were queued.
//!
//! Retry policy (ARCHITECTURE.md, "Command queue"):
//! - 429: the budget is held shut for `Retry-After` and the command waits; a throttled request
//!   had no effect, so this holds for every action and is not counted as a failure.
//! - Spoki's other 4xx: the command fails at once with Spoki's body.
//! - 5xx, timeouts, broken or refused connections: retried with backoff and jitter, up to
//!   `commands.max_attempts` such failures, when repeating is harmless: the action is
//!   repeat-safe (`Action::repeat_safe`) or the request certainly never took effect (refused
//!   connection). A create whose request may have reached Spoki fails instead, saying so,
//!   rather than risk a duplicate.
//! - A repeat-safe delete retried after an unanswered attempt that gets 404 succeeded: the
//!   first attempt did the work.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::automation::{self, Started, Triggers};
use super::params::Rendered;
use super::replaced::Replaced;
use crate::live::Live;
use crate::outbound::limits::Budgets;
use crate::outbound::sender::{Sender, Sent, Slot};
use crate::spoki::actions::{Action, Method as SpokiMethod};
use crate::spoki::{Answer, SpokiClient, SpokiError};
use crate::store::{DueCommand, Outcome, Store, StoreError, now_ms};

/// Commands running at once, over all actions.
const MAX_PARALLEL: usize = 4;

#[derive(Clone, Debug)]
pub struct WorkerSettings {
    /// Retryable failures (429s not counted) before a command is given up.
    pub max_attempts: u32,
    pub max_backoff: Duration,
}

#[derive(Clone)]
pub struct CommandWorker {
    store: Store,
    /// The one road to Spoki (budgets, pacing, 429 holds).
    sender: Sender,
    settings: Live<WorkerSettings>,
    wake: Arc<Notify>,
    /// Automation triggers looked up so far (`start_automation`).
    triggers: Triggers,
    /// Removed routes already found gone (onboarding link, reports).
    replaced: Replaced,
}

/// What one attempt came to.
enum Attempt {
    Done(Outcome),
    Retry {
        after: Duration,
        reason: String,
        http_status: Option<u16>,
        failure: bool,
        ambiguous: bool,
    },
}

impl CommandWorker {
    pub fn new(
        store: Store,
        client: SpokiClient,
        budgets: Budgets,
        settings: Live<WorkerSettings>,
        wake: Arc<Notify>,
    ) -> CommandWorker {
        CommandWorker {
            sender: Sender::new(client, budgets, store.clone()),
            store,
            settings,
            wake,
            triggers: Triggers::default(),
            replaced: Replaced::default(),
        }
    }

    /// Puts back what a crash left running (see `Store::recover_running_commands`).
    pub async fn recover(&self) -> Result<(), StoreError> {
        let (requeued, failed) = self
            .store
            .recover_running_commands(|name| {
                Action::from_name(name).is_some_and(Action::repeat_safe)
            })
            .await?;
        if requeued + failed > 0 {
            tracing::warn!(
                requeued,
                failed,
                "commands were running when the last run stopped; repeat-safe ones are queued \
                 again, the others failed as possibly applied"
            );
        }
        Ok(())
    }

    /// Runs until `cancel`; then lets commands in flight finish for up to `drain`. One that
    /// does not stays `running` and is recovered at the next start.
    pub async fn run(self, cancel: CancellationToken, drain: Duration) {
        let mut in_flight: JoinSet<Action> = JoinSet::new();
        let mut busy: HashSet<Action> = HashSet::new();
        loop {
            if cancel.is_cancelled() {
                break;
            }
            let wait = match self.launch_due(&mut in_flight, &mut busy).await {
                Ok(wait) => wait,
                Err(error) => {
                    tracing::error!(%error, "cannot read the command queue; retrying");
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                () = cancel.cancelled() => break,
                () = self.wake.notified() => {}
                Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                    if let Ok(action) = done {
                        busy.remove(&action);
                    }
                }
                () = tokio::time::sleep(wait) => {}
            }
        }
        let _ = tokio::time::timeout(drain, async {
            while in_flight.join_next().await.is_some() {}
        })
        .await;
    }

    /// Starts the oldest queued command of each action when it is due, its action has
    /// nothing running and a slot is free; returns how long to sleep before looking again.
    /// Only the oldest of an action may go, so an action's commands reach Spoki in the order
    /// they were queued, retries included.
    async fn launch_due(
        &self,
        in_flight: &mut JoinSet<Action>,
        busy: &mut HashSet<Action>,
    ) -> Result<Duration, StoreError> {
        let mut wait = Duration::from_secs(1);
        let now = now_ms();
        for cmd in self.store.queue_heads().await? {
            if in_flight.len() >= MAX_PARALLEL {
                break;
            }
            if cmd.next_attempt_ms > now {
                let until = u64::try_from(cmd.next_attempt_ms - now).unwrap_or(1);
                wait = wait.min(Duration::from_millis(until));
                continue;
            }
            let Some(action) = Action::from_name(&cmd.action) else {
                // Only checked actions are queued; one unknown to this version fails.
                let error = json!({"error": format!("unknown action {:?}", cmd.action)});
                let outcome = Outcome::Failed {
                    http_status: None,
                    error,
                };
                self.store.command_finish(cmd.seq, &outcome).await?;
                continue;
            };
            if busy.contains(&action) {
                continue;
            }
            // An automation start whose trigger is not known yet looks it up first, under
            // the lookup's own budget; the start's slot is taken only once it is known.
            let first = if action == Action::StartAutomation
                && self
                    .triggers
                    .get(automation::automation_of(&cmd.params))
                    .is_none()
            {
                Action::RetrieveAutomation
            } else {
                action
            };
            match self.sender.try_slot(first) {
                Ok(slot) => {
                    busy.insert(action);
                    let me = self.clone();
                    in_flight.spawn(async move {
                        me.run_one(slot, action, cmd).await;
                        action
                    });
                }
                Err(slot) => wait = wait.min(slot.max(Duration::from_millis(1))),
            }
        }
        Ok(wait)
    }

    async fn run_one(&self, slot: Slot, action: Action, cmd: DueCommand) {
        let attempt = self.attempt(slot, action, &cmd).await;
        if let Attempt::Done(Outcome::Succeeded { result, .. }) = &attempt {
            self.forget_what_changed(action, &cmd, result.as_ref())
                .await;
        }
        loop {
            let saved = match &attempt {
                Attempt::Done(outcome) => {
                    log_outcome(action, &cmd, outcome);
                    self.store.command_finish(cmd.seq, outcome).await
                }
                Attempt::Retry {
                    after,
                    reason,
                    http_status,
                    failure,
                    ambiguous,
                } => {
                    tracing::info!(
                        command = %cmd.id,
                        action = action.name(),
                        attempts = cmd.attempts + 1,
                        retry_in_ms = after.as_millis() as u64,
                        reason = %reason,
                        "command will be retried"
                    );
                    let next = now_ms() + i64::try_from(after.as_millis()).unwrap_or(i64::MAX);
                    self.store
                        .command_retry(cmd.seq, next, reason, *http_status, *failure, *ambiguous)
                        .await
                }
            };
            match saved {
                Ok(()) => break,
                Err(error) => {
                    tracing::error!(%error, command = %cmd.id, "cannot record a command's result; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        self.wake.notify_one();
    }

    /// Contact writes made by a command bypass the diff's baseline (`contact_state`,
    /// `list_members`); the baseline for what they touched is dropped so the next CSV or
    /// mirror change for those contacts is sent rather than judged unchanged.
    async fn forget_what_changed(&self, action: Action, cmd: &DueCommand, result: Option<&Value>) {
        let str_of = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_owned);
        let id = cmd.params.get("id").and_then(Value::as_i64);
        let contacts = || -> Vec<String> {
            cmd.params
                .get("contacts")
                .and_then(Value::as_array)
                .map(|items| items.iter().filter_map(|c| str_of(c, "phone")).collect())
                .unwrap_or_default()
        };
        let forgotten = match action {
            Action::CreateOrUpdateContact | Action::StartAutomation => {
                let phones: Vec<String> = str_of(&cmd.params, "phone").into_iter().collect();
                self.store.forget_contacts(&phones, None).await
            }
            Action::BulkSyncContacts | Action::SyncContactsToList => {
                self.store.forget_contacts(&contacts(), None).await
            }
            Action::UpdateContact | Action::DeleteContact => {
                let phones: Vec<String> = result
                    .and_then(|r| str_of(r, "phone"))
                    .into_iter()
                    .collect();
                self.store.forget_contacts(&phones, id).await
            }
            Action::RemoveContactsFromList | Action::RemoveAllListContacts | Action::DeleteList => {
                match id {
                    Some(list) => self.store.forget_list_members(list).await,
                    None => Ok(()),
                }
            }
            _ => Ok(()),
        };
        if let Err(error) = forgotten {
            tracing::warn!(%error, command = %cmd.id, "cannot update the sync baseline after a command");
        }
    }

    /// Sends the command once (twice for the onboarding fallback, two requests for an
    /// automation start) and decides what follows.
    async fn attempt(&self, slot: Slot, action: Action, cmd: &DueCommand) -> Attempt {
        let request: Rendered = match serde_json::from_value(cmd.request.clone()) {
            Ok(r) => r,
            Err(e) => {
                return Attempt::Done(Outcome::Failed {
                    http_status: None,
                    error: json!({"error": format!("stored request is unreadable: {e}")}),
                });
            }
        };
        // Marked running first: nothing may stand between `pace()` and the send, or a slow
        // database write could bunch two requests together.
        if let Err(error) = self.store.command_sending(cmd.seq).await {
            return Attempt::Retry {
                after: Duration::from_secs(1),
                reason: format!("cannot mark the command running: {error}"),
                http_status: None,
                failure: false,
                ambiguous: false,
            };
        }
        let sent = if action == Action::StartAutomation {
            match automation::start(&self.sender, &self.triggers, slot, &cmd.params).await {
                Started::Sent(sent) => sent,
                Started::Again(after) => {
                    return Attempt::Retry {
                        after,
                        reason: "waiting for a slot to start the automation".to_owned(),
                        http_status: None,
                        failure: false,
                        ambiguous: false,
                    };
                }
            }
        } else if self.replaced.gone(action) {
            self.replaced
                .send(&self.sender, slot, action, &request, None)
                .await
        } else {
            let sent = self.sender.send(slot, self.call(action, &request)).await;
            if self.replaced.says_gone(action, &sent) {
                let slot = self.sender.slot(action).await;
                self.replaced
                    .send(&self.sender, slot, action, &request, Some(sent))
                    .await
            } else {
                sent
            }
        };
        self.judge(action, cmd, sent)
    }

    /// The command's request; it runs inside `Sender::send`.
    async fn call(&self, action: Action, request: &Rendered) -> Result<Answer, SpokiError> {
        let method = Method::from_bytes(request.method.as_bytes()).unwrap_or(Method::GET);
        self.sender
            .client()
            .send(
                action,
                method,
                &request.path,
                &request.query,
                request.body.as_ref(),
            )
            .await
    }

    fn judge(&self, action: Action, cmd: &DueCommand, sent: Sent<Answer>) -> Attempt {
        match sent {
            Sent::Done(answer) => Attempt::Done(Outcome::Succeeded {
                http_status: Some(answer.status.as_u16()),
                result: answer.body,
            }),
            // The sender has held the budget shut already; a throttled request did nothing.
            Sent::Throttled { wait } => Attempt::Retry {
                after: wait,
                reason: sent.describe(),
                http_status: Some(429),
                failure: false,
                ambiguous: false,
            },
            Sent::Refused { status: 404, .. }
                if cmd.ambiguous && action.method() == SpokiMethod::Delete =>
            {
                Attempt::Done(Outcome::Succeeded {
                    http_status: Some(404),
                    result: None,
                })
            }
            // A 4xx other than 429 fails the command at once.
            Sent::Refused { status, body, .. } | Sent::Unauthorized { status, body } => {
                Attempt::Done(Outcome::Failed {
                    http_status: Some(status),
                    error: body,
                })
            }
            Sent::AlreadyExists { body } => Attempt::Done(Outcome::Failed {
                http_status: Some(400),
                error: body,
            }),
            Sent::Garbled { reason } | Sent::Fatal { reason } => Attempt::Done(Outcome::Failed {
                http_status: None,
                error: json!({ "error": reason }),
            }),
            Sent::Transient {
                ref error,
                may_have_applied,
            } => {
                if may_have_applied && !action.repeat_safe() {
                    return Attempt::Done(Outcome::Failed {
                        http_status: server_status(error),
                        error: json!({
                            "error": format!(
                                "{error}. {action} creates something each time it is sent, so it \
                                 was not repeated: check in Spoki and queue it again if needed"
                            )
                        }),
                    });
                }
                let failures = u32::try_from(cmd.failures + 1).unwrap_or(u32::MAX);
                let settings = self.settings.get();
                if failures >= settings.max_attempts {
                    return Attempt::Done(Outcome::Failed {
                        http_status: server_status(error),
                        error: json!({
                            "error": format!("gave up after {failures} failed attempts: {error}")
                        }),
                    });
                }
                metrics::counter!("spoki_sync_retries_total", "action" => action.name())
                    .increment(1);
                Attempt::Retry {
                    after: sent
                        .retry_in(failures, settings.max_backoff)
                        .unwrap_or(Duration::from_secs(1)),
                    reason: error.to_string(),
                    http_status: server_status(error),
                    failure: true,
                    ambiguous: may_have_applied,
                }
            }
        }
    }
}

fn server_status(error: &SpokiError) -> Option<u16> {
    error.status()
}

fn log_outcome(action: Action, cmd: &DueCommand, outcome: &Outcome) {
    match outcome {
        Outcome::Succeeded { http_status, .. } => tracing::info!(
            command = %cmd.id,
            action = action.name(),
            attempts = cmd.attempts + 1,
            status = http_status.unwrap_or_default(),
            "command succeeded"
        ),
        Outcome::Failed { http_status, .. } => tracing::warn!(
            command = %cmd.id,
            action = action.name(),
            attempts = cmd.attempts + 1,
            status = http_status.unwrap_or_default(),
            "command failed"
        ),
    }
    let status = match outcome {
        Outcome::Succeeded { .. } => "succeeded",
        Outcome::Failed { .. } => "failed",
    };
    metrics::counter!("spoki_sync_commands_finished_total", "action" => action.name(), "status" => status)
        .increment(1);
}

#[cfg(all(test, feature = "sim"))]
#[path = "worker_tests.rs"]
mod tests;
