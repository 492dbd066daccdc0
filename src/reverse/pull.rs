//! The puller: every page of Spoki's contacts merged into the mirror and the base, then the
//! contacts Spoki no longer has queued for deletion from the mirror (held past
//! `mirror.max_delete_share`).

use std::collections::HashSet;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Mirror, report_conflicts, spoki_contact};
use crate::domain::Phone;
use crate::outbound::sender::Sent;
use crate::spoki::ContactRecord;
use crate::spoki::actions::Action;
use crate::store::{SpokiContact, now_rfc3339};

/// Contacts per page of the pull (the simulator's cap; Spoki's is not documented).
const PULL_PAGE_SIZE: u32 = 200;

impl Mirror {
    /// Pulls at `pull_interval` (never when it is 0) and whenever `pull_now` is notified.
    pub async fn run_puller(self, cancel: CancellationToken) {
        let mut interval = self.settings.get().sync.pull_interval;
        let mut next = if interval.is_zero() {
            None
        } else {
            Some(tokio::time::Instant::now() + interval)
        };
        loop {
            // A reload that changes the interval takes effect at the next check (within 1 s).
            let check = tokio::time::sleep(Duration::from_secs(1));
            let timer = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = cancel.cancelled() => return,
                () = self.pull_now.notified() => {}
                () = timer => {}
                () = check => {
                    let now = self.settings.get().sync.pull_interval;
                    if now != interval {
                        interval = now;
                        next = (!interval.is_zero())
                            .then(|| tokio::time::Instant::now() + interval);
                    }
                    continue;
                }
            }
            if let Err(error) = self.pull(&cancel).await {
                tracing::error!(%error, "pull from Spoki failed; the next one starts over");
            }
            interval = self.settings.get().sync.pull_interval;
            next = (!interval.is_zero()).then(|| tokio::time::Instant::now() + interval);
        }
    }

    /// One full pull: every page of Spoki's contacts merged into the mirror, then contacts
    /// Spoki no longer has are queued for deletion from the mirror.
    pub async fn pull(&self, cancel: &CancellationToken) -> anyhow::Result<()> {
        let settings = self.settings.get();
        let started = now_rfc3339();
        let clock = std::time::Instant::now();
        let mut seen: HashSet<Phone> = HashSet::new();
        let mut page = 1u32;
        let (mut writes, mut queued, mut requests) = (0u64, 0u64, 0u64);
        loop {
            let Some(result) = self.fetch_page(page, cancel).await else {
                return Ok(()); // stopping
            };
            requests += 1;
            let records = match result {
                Ok(p) => p,
                Err(e) => anyhow::bail!("page {page}: {e}"),
            };
            let contacts: Vec<SpokiContact> =
                records.results.iter().filter_map(spoki_contact).collect();
            seen.extend(contacts.iter().map(|c| c.phone));
            let outcome = self
                .store
                .merge_from_spoki(&contacts, settings.sync.conflict_winner)
                .await?;
            report_conflicts(&outcome);
            writes += outcome.mirror_writes;
            queued += outcome.queued;
            if outcome.queued > 0 {
                self.batcher_wake.notify_one();
            }
            if records.next.is_none() || records.results.is_empty() {
                break;
            }
            page += 1;
        }
        let (missing, held) = self
            .store
            .queue_missing_after_pull(&seen, &started, settings.sync.max_delete_share)
            .await?;
        self.store.set_meta("last_pull_at", &now_rfc3339()).await?;
        tracing::info!(
            contacts = seen.len(),
            requests,
            mirror_writes = writes,
            queued_for_spoki = queued,
            gone_from_spoki = missing,
            seconds = clock.elapsed().as_secs_f64(),
            "pull from Spoki done"
        );
        if missing > 0 {
            if held {
                tracing::warn!(
                    missing,
                    "contacts gone from Spoki are held: more than mirror.max_delete_share; \
                     confirm with POST /v1/sync/deletes/confirm"
                );
            } else {
                self.deletes_wake.notify_one();
            }
        }
        Ok(())
    }

    /// One page, retried through 429s, 5xx and timeouts; `None` when cancelled.
    async fn fetch_page(
        &self,
        page: u32,
        cancel: &CancellationToken,
    ) -> Option<Result<crate::spoki::Page<ContactRecord>, String>> {
        let mut failures = 0u32;
        loop {
            let slot = tokio::select! {
                () = cancel.cancelled() => return None,
                slot = self.sender.slot(Action::ListContacts) => slot,
            };
            let call = self.sender.client().list_contacts(page, PULL_PAGE_SIZE);
            let sent = self.sender.send(slot, call).await;
            let failure = sent.is_failure();
            match sent {
                Sent::Done(p) => return Some(Ok(p)),
                // The budget is held shut for Retry-After; the next slot waits for it.
                Sent::Throttled { .. } => {}
                ref retried @ (Sent::Transient { .. } | Sent::Unauthorized { .. })
                    if failures < 10 =>
                {
                    failures += u32::from(failure);
                    let wait = retried
                        .retry_in(failures, self.settings.get().max_backoff)
                        .unwrap_or(Duration::from_secs(1));
                    tracing::warn!(page, error = %retried.describe(), "pull page failed; retrying");
                    tokio::select! {
                        () = cancel.cancelled() => return None,
                        () = tokio::time::sleep(wait) => {}
                    }
                }
                other => return Some(Err(other.describe())),
            }
        }
    }
}
