//! The deleter: queued deletions carried out, from the mirror (contacts gone from Spoki) and
//! in Spoki (rows deleted from the mirror, with `mirror.propagate_deletes`).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Mirror;
use crate::outbound::sender::Sent;
use crate::spoki::actions::Action;
use crate::store::{TO_MIRROR, TO_SPOKI};

impl Mirror {
    /// Carries out ready deletions until `cancel`.
    pub async fn run_deleter(self, cancel: CancellationToken) {
        loop {
            let worked = match self.delete_some(&cancel).await {
                Ok(n) => n > 0,
                Err(error) => {
                    tracing::error!(%error, "cannot carry out deletions; retrying");
                    false
                }
            };
            if worked {
                continue;
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = self.deletes_wake.notified() => {}
                () = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
        }
    }

    async fn delete_some(&self, cancel: &CancellationToken) -> anyhow::Result<usize> {
        let mut done = 0;
        for d in self.store.ready_deletes(TO_MIRROR, 500).await? {
            self.store.finish_delete(&d.phone, TO_MIRROR).await?;
            done += 1;
        }
        if done > 0 {
            tracing::info!(
                contacts = done,
                "removed contacts gone from Spoki from the mirror"
            );
        }
        for d in self.store.ready_deletes(TO_SPOKI, 50).await? {
            if cancel.is_cancelled() {
                break;
            }
            let id = match d.spoki_id {
                Some(id) => Some(id),
                None => self.lookup_id(&d.phone).await?,
            };
            if let Some(id) = id {
                let slot = self.sender.slot(Action::DeleteContact).await;
                let call = self.sender.client().delete_contact(id);
                match self.sender.send(slot, call).await {
                    Sent::Done(()) | Sent::Garbled { .. } | Sent::Refused { status: 404, .. } => {}
                    Sent::Refused { status, body, .. } => {
                        let reason = format!("Spoki refused the deletion (HTTP {status}): {body}");
                        self.store
                            .reject_delete(&d.phone, TO_SPOKI, &reason)
                            .await?;
                        continue;
                    }
                    // The budget is held shut for Retry-After.
                    Sent::Throttled { .. } => return Ok(done),
                    other => {
                        let wait = other
                            .retry_in(1, self.settings.get().max_backoff)
                            .unwrap_or(Duration::from_secs(1));
                        tracing::warn!(error = %other.describe(), "deleting a contact in Spoki failed; will retry");
                        tokio::time::sleep(wait).await;
                        return Ok(done);
                    }
                }
            }
            tracing::info!(phone = %d.phone, "deleted in Spoki (removed from the mirror)");
            self.store.finish_delete(&d.phone, TO_SPOKI).await?;
            done += 1;
        }
        Ok(done)
    }

    /// Spoki's id for a phone, or `None` when Spoki has no such contact.
    async fn lookup_id(&self, phone: &str) -> anyhow::Result<Option<i64>> {
        let slot = self.sender.slot(Action::ListContacts).await;
        let call = self.sender.client().find_contacts_by_phone(phone);
        match self.sender.send(slot, call).await {
            Sent::Done(page) => Ok(page
                .results
                .iter()
                .find(|c| c.phone == phone)
                .and_then(|c| c.id)),
            other => anyhow::bail!("cannot look up {phone} in Spoki: {}", other.describe()),
        }
    }
}
