//! The custom fields queued contacts use: listed in Spoki once, created (as text fields) when
//! missing and `csv.create_custom_fields` is on, otherwise marked refused. Rows that carry a
//! waiting code are not claimed (the claim checks it); every other row goes on meanwhile.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use super::limits::Budgets;
use super::sender::{Sender, Sent};
use crate::spoki::CustomFieldRecord;
use crate::spoki::actions::Action;
use crate::store::{FieldStatus, Store, StoreError};

#[derive(Clone, Debug)]
pub struct CustomFields {
    store: Store,
    budgets: Budgets,
    /// Spoki's fields were listed since start (a create answers "exists" for the rest).
    listed: Arc<AtomicBool>,
}

impl CustomFields {
    pub fn new(store: Store, budgets: Budgets) -> CustomFields {
        CustomFields {
            store,
            budgets,
            listed: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Creates the custom fields the queued contacts use but Spoki lacks (or, with `create`
    /// off, marks the ones Spoki lacks as refused). Returns when to come back if a budget is
    /// not free; only the rows that carry a waiting code wait meanwhile.
    pub async fn ensure(
        &self,
        sender: &Sender,
        create: bool,
        max_backoff: Duration,
    ) -> Result<Option<Duration>, StoreError> {
        let wanted = self
            .store
            .custom_fields_with_status(FieldStatus::Wanted)
            .await?;
        if wanted.is_empty() {
            return Ok(None);
        }
        use std::sync::atomic::Ordering;
        // With creation off, a code is refused only after a fresh look at Spoki's fields.
        if !self.listed.load(Ordering::Relaxed) || !create {
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
            // Every page the pager leads to (whatever the pagination style); a record that
            // cannot be read is skipped by the client, the rest still counts.
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
                match listed {
                    Sent::Done(p) => {
                        for f in &p.results {
                            if wanted.iter().any(|(c, _)| c == &f.code) {
                                self.store
                                    .set_custom_field_status(&f.code, FieldStatus::Exists, None)
                                    .await?;
                            }
                        }
                        if let Err(error) = pager.advance(&p) {
                            tracing::error!(%error, "custom-field listing stopped");
                        }
                    }
                    Sent::Refused { status, .. } if pager.refused(status) => {}
                    other => {
                        return Ok(Some(self.wait_after(
                            &other,
                            Action::ListCustomFields,
                            max_backoff,
                        )));
                    }
                }
            }
            if let Some(crate::spoki::PassEnd::Incomplete { reason }) = pager.end() {
                // What was not seen may exist: never refuse a code on an incomplete listing;
                // creating one that exists answers "exists".
                tracing::warn!(
                    reason,
                    "custom-field listing incomplete; listing again later"
                );
                if !create {
                    let wait = self
                        .budgets
                        .get(Action::ListCustomFields)
                        .limit()
                        .interval()
                        .max(Duration::from_secs(1));
                    return Ok(Some(wait));
                }
            } else {
                self.listed.store(true, Ordering::Relaxed);
            }
        }
        for (code, label) in self
            .store
            .custom_fields_with_status(FieldStatus::Wanted)
            .await?
        {
            if !create {
                let reason = "not in Spoki, and csv.create_custom_fields is off";
                tracing::warn!(code, reason, "custom field values will not be sent");
                self.store
                    .set_custom_field_status(&code, FieldStatus::Failed, Some(reason))
                    .await?;
                continue;
            }
            let slot = match sender.try_slot(Action::CreateCustomField) {
                Ok(slot) => slot,
                Err(w) => return Ok(Some(w)),
            };
            let created = sender
                .send(slot, sender.client().create_custom_field(&label, &code))
                .await;
            match created {
                Sent::Done(()) | Sent::Garbled { .. } => {
                    tracing::info!(code, "created custom field in Spoki");
                    self.store
                        .set_custom_field_status(&code, FieldStatus::Exists, None)
                        .await?;
                }
                // The client read Spoki's 400 as "this code is taken".
                Sent::AlreadyExists { .. } => {
                    self.store
                        .set_custom_field_status(&code, FieldStatus::Exists, None)
                        .await?;
                }
                // Only a 400 is about the field itself; 401/403/404 are the account's or the
                // route's problem and are retried like any other failure.
                Sent::Refused {
                    status: 400, body, ..
                } => {
                    let text = body.to_string();
                    {
                        tracing::warn!(
                            code,
                            reason = text,
                            "Spoki refused a custom field; its values will not be sent"
                        );
                        self.store
                            .set_custom_field_status(&code, FieldStatus::Failed, Some(&text))
                            .await?;
                    }
                }
                other => {
                    return Ok(Some(self.wait_after(
                        &other,
                        Action::CreateCustomField,
                        max_backoff,
                    )));
                }
            }
        }
        Ok(None)
    }

    /// After a failed custom-field call: the wait the retry policy gives, during which the
    /// action's budget stays shut (a 429 has shut it already).
    fn wait_after<T>(&self, sent: &Sent<T>, action: Action, max_backoff: Duration) -> Duration {
        let wait = sent
            .retry_in(1, max_backoff)
            .unwrap_or_else(|| self.budgets.get(action).limit().interval())
            .max(Duration::from_secs(1));
        self.budgets.get(action).block_for(wait);
        tracing::warn!(action = action.name(), error = %sent.describe(), "custom-field call failed; will retry");
        wait
    }
}
