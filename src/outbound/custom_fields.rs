//! The custom fields queued contacts use: listed in Spoki, created (as text fields, with the
//! first value queued as `example`) when missing and `csv.create_custom_fields` is on, otherwise
//! marked refused. Rows that carry a waiting code are not claimed (the claim checks it); every
//! other row goes on meanwhile.
//!
//! What decides a code's fate is Spoki's list of fields, never the wording of an error: after
//! a 400 (or 409, 422) on a create the fields are listed again, and the code is refused only if
//! it is still missing. 401, 403, 429, 5xx and timeouts are retried like any call. Refused
//! codes are wanted again at start and after a configuration reload (`recheck`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::limits::Budgets;
use super::sender::{Sender, Sent};
use crate::spoki::CustomFieldRecord;
use crate::spoki::actions::Action;
use crate::store::{FieldStatus, Store, StoreError};

/// Why a code missing in Spoki is not created while creation is off.
pub const NOT_CREATED: &str = "not in Spoki, and csv.create_custom_fields is off";

#[derive(Clone, Debug)]
pub struct CustomFields {
    store: Store,
    budgets: Budgets,
    /// Spoki's fields were listed since start, and nothing since asks for a fresh look.
    listed: Arc<AtomicBool>,
    /// A reload asked for refused codes to be tried again.
    recheck: Arc<AtomicBool>,
    /// Codes whose create Spoki refused, with its answer, until a fresh listing says whether
    /// they exist after all.
    refused: Arc<Mutex<HashMap<String, String>>>,
    /// Failed calls in a row, for the backoff.
    failures: Arc<AtomicU32>,
}

/// What one create came to.
enum Created {
    Done,
    /// Spoki refused it: look at its fields again before deciding.
    Refused,
    /// Come back after this long.
    Wait(Duration),
}

impl CustomFields {
    pub fn new(store: Store, budgets: Budgets) -> CustomFields {
        CustomFields {
            store,
            budgets,
            listed: Arc::new(AtomicBool::new(false)),
            // A start is a fresh configuration too: codes refused before are tried again.
            recheck: Arc::new(AtomicBool::new(true)),
            refused: Arc::new(Mutex::new(HashMap::new())),
            failures: Arc::new(AtomicU32::new(0)),
        }
    }

    /// Refused codes are wanted again at the next step (the configuration was reloaded).
    pub fn recheck(&self) {
        self.recheck.store(true, Ordering::Relaxed);
    }

    fn refused(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        // A poisoned lock only means another thread panicked mid-update of plain data.
        self.refused.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates the custom fields the queued contacts use but Spoki lacks (or, with `create`
    /// off, marks the ones Spoki lacks as refused). Returns when to come back if a budget is
    /// not free or a call failed; only the rows that carry a waiting code wait meanwhile.
    pub async fn ensure(
        &self,
        sender: &Sender,
        create: bool,
        max_backoff: Duration,
    ) -> Result<Option<Duration>, StoreError> {
        if self.recheck.swap(false, Ordering::Relaxed) {
            let again = self.store.retry_failed_custom_fields().await?;
            if again > 0 {
                tracing::info!(
                    codes = again,
                    "custom fields refused before are tried again"
                );
            }
            self.listed.store(false, Ordering::Relaxed);
            self.refused().clear();
        }
        let wanted = self
            .store
            .custom_fields_with_status(FieldStatus::Wanted)
            .await?;
        if wanted.is_empty() {
            return Ok(None);
        }
        // With creation off, a code is refused only after a fresh look at Spoki's fields.
        if !self.listed.load(Ordering::Relaxed) || !create {
            if let Some(wait) = self.list_wanted(sender, &wanted, max_backoff).await? {
                return Ok(Some(wait));
            }
            self.listed.store(true, Ordering::Relaxed);
        }
        for (code, label) in self
            .store
            .custom_fields_with_status(FieldStatus::Wanted)
            .await?
        {
            let refused = self.refused().remove(&code);
            if !create || refused.is_some() {
                let reason = refused.unwrap_or_else(|| NOT_CREATED.to_owned());
                tracing::warn!(code, reason, "custom field values will not be sent");
                self.store
                    .set_custom_field_status(&code, FieldStatus::Failed, Some(&reason))
                    .await?;
                continue;
            }
            match self.create_one(sender, &code, &label, max_backoff).await? {
                Created::Done => {}
                // The next step lists Spoki's fields afresh and decides.
                Created::Refused => return Ok(Some(Duration::ZERO)),
                Created::Wait(wait) => return Ok(Some(wait)),
            }
        }
        Ok(None)
    }

    /// Lists Spoki's fields, page by page, and marks the wanted codes found there as
    /// existing. `Some(wait)` when a page could not be read.
    async fn list_wanted(
        &self,
        sender: &Sender,
        wanted: &[(String, String)],
        max_backoff: Duration,
    ) -> Result<Option<Duration>, StoreError> {
        let mut pager = match sender.client().custom_fields_pager() {
            Ok(pager) => pager,
            Err(error) => {
                let sent = Sent::<()>::Fatal {
                    reason: error.to_string(),
                };
                return Ok(Some(self.wait_after(
                    &sent,
                    Action::ListCustomFields,
                    max_backoff,
                )));
            }
        };
        // Every page the pager leads to (whatever the pagination style); a record that cannot
        // be read is skipped by the client, the rest still counts.
        while let Some(url) = pager.next_url().cloned() {
            let slot = match sender.try_slot(Action::ListCustomFields) {
                Ok(slot) => slot,
                Err(w) => return Ok(Some(w)),
            };
            let listed = sender
                .send(
                    slot,
                    sender
                        .client()
                        .fetch_page::<CustomFieldRecord>(Action::ListCustomFields, &url),
                )
                .await;
            let p = match listed {
                Sent::Done(p) => p,
                Sent::Refused { status, .. } if pager.refused(status) => break,
                other => {
                    return Ok(Some(self.wait_after(
                        &other,
                        Action::ListCustomFields,
                        max_backoff,
                    )));
                }
            };
            self.failures.store(0, Ordering::Relaxed);
            for f in &p.results {
                if wanted.iter().any(|(c, _)| c == &f.code) {
                    self.store
                        .set_custom_field_status(&f.code, FieldStatus::Exists, None)
                        .await?;
                    self.refused().remove(&f.code);
                }
            }
            if let Err(error) = pager.advance(&p) {
                tracing::error!(%error, "custom-field listing stopped");
            }
        }
        match pager.end() {
            Some(crate::spoki::PassEnd::Incomplete { reason }) => {
                // What was not seen may exist: nothing is decided on an incomplete listing.
                tracing::warn!(
                    reason,
                    "custom-field listing incomplete; listing again later"
                );
                let wait = self
                    .budgets
                    .get(Action::ListCustomFields)
                    .limit()
                    .interval()
                    .max(Duration::from_secs(1));
                Ok(Some(wait))
            }
            _ => Ok(None),
        }
    }

    /// One `POST custom-fields/`, with the first value queued for the code as its example.
    async fn create_one(
        &self,
        sender: &Sender,
        code: &str,
        label: &str,
        max_backoff: Duration,
    ) -> Result<Created, StoreError> {
        let example = self.store.custom_field_example(code).await?;
        let slot = match sender.try_slot(Action::CreateCustomField) {
            Ok(slot) => slot,
            Err(w) => return Ok(Created::Wait(w)),
        };
        let created = sender
            .send(
                slot,
                sender
                    .client()
                    .create_custom_field(label, code, example.as_deref()),
            )
            .await;
        // "Exists" read from the body is only a hint: the listing decides, as for any refusal.
        let created = match created {
            Sent::AlreadyExists { body } => Sent::Refused {
                status: 400,
                body,
                items: None,
            },
            other => other,
        };
        match created {
            Sent::Done(()) | Sent::Garbled { .. } => {
                tracing::info!(code, "created custom field in Spoki");
                self.failures.store(0, Ordering::Relaxed);
                self.store
                    .set_custom_field_status(code, FieldStatus::Exists, None)
                    .await?;
                Ok(Created::Done)
            }
            // About the field itself (it exists already, or Spoki will not take it): whatever
            // the words, Spoki's list of fields decides.
            Sent::Refused {
                status: status @ (400 | 409 | 422),
                body,
                ..
            } => {
                let mut text = body.to_string();
                if text.len() > 300 {
                    let cut = (0..=300).rev().find(|&i| text.is_char_boundary(i));
                    text.truncate(cut.unwrap_or(0));
                    text.push('…');
                }
                tracing::info!(
                    code,
                    status,
                    "Spoki refused to create a custom field; listing its fields to see whether it exists"
                );
                self.refused().insert(
                    code.to_owned(),
                    format!("Spoki refused to create it (HTTP {status}): {text}"),
                );
                self.listed.store(false, Ordering::Relaxed);
                Ok(Created::Refused)
            }
            other => Ok(Created::Wait(self.wait_after(
                &other,
                Action::CreateCustomField,
                max_backoff,
            ))),
        }
    }

    /// After a failed custom-field call: the wait the retry policy gives (growing with the
    /// failures in a row), during which the action's budget stays shut (a 429 has shut it
    /// already). Never a refusal of the field: 401, 403, 404 and 5xx are retried.
    fn wait_after<T>(&self, sent: &Sent<T>, action: Action, max_backoff: Duration) -> Duration {
        let failures = self
            .failures
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        let wait = sent
            .retry_in(failures, max_backoff)
            .unwrap_or_else(|| {
                crate::outbound::backoff::delay(failures, max_backoff)
                    .max(self.budgets.get(action).limit().interval())
            })
            .max(Duration::from_secs(1));
        self.budgets.get(action).block_for(wait);
        tracing::warn!(action = action.name(), error = %sent.describe(), "custom-field call failed; will retry");
        wait
    }
}
