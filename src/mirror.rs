//! The tasks of the Spoki ⇄ mirror direction (CONTRACT §4):
//! - the poller turns other programs' mirror edits (journaled by triggers) into outbox writes;
//! - the puller pages through Spoki's contacts and merges them into the mirror, field by
//!   field, at `mirror.pull_interval` and on demand;
//! - the deleter carries out queued deletions in either direction.
//!
//! Each runs on its own budget and in short transactions, so a long pull never holds up the
//! push direction.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::{self, Settings};
use crate::domain::{ContactFields, Phone};
use crate::live::Live;
use crate::outbound::backoff;
use crate::outbound::limits::Budgets;
use crate::spoki::actions::Action;
use crate::spoki::{ContactRecord, SpokiClient, SpokiError};
use crate::store::{
    MergeOutcome, SpokiContact, Store, StoreError, TO_MIRROR, TO_SPOKI, now_rfc3339,
};

/// Journal entries handled per transaction.
const POLL_BATCH: i64 = 1000;
/// Contacts per page of the pull (the simulator's cap; Spoki's is not documented).
const PULL_PAGE_SIZE: u32 = 200;

/// The `[mirror]` settings plus the retry cap the pull uses.
#[derive(Clone, Debug)]
pub struct MirrorSettings {
    pub sync: config::MirrorSettings,
    pub max_backoff: Duration,
}

impl MirrorSettings {
    pub fn from_settings(s: &Settings) -> MirrorSettings {
        MirrorSettings {
            sync: s.mirror.clone(),
            max_backoff: s.batch.max_backoff,
        }
    }
}

#[derive(Clone)]
pub struct Mirror {
    store: Store,
    client: SpokiClient,
    budgets: Budgets,
    /// Reloadable.
    pub settings: Live<MirrorSettings>,
    /// Wakes the batcher when writes were queued.
    batcher_wake: Arc<Notify>,
    /// Starts a pull now (`POST /v1/sync/pull`).
    pub pull_now: Arc<Notify>,
    /// Wakes the deleter (a confirmation through the admin API).
    pub deletes_wake: Arc<Notify>,
}

/// Logs and counts merge conflicts: both values, the winner.
pub fn report_conflicts(outcome: &MergeOutcome) {
    for (phone, c) in &outcome.conflicts {
        tracing::info!(
            %phone,
            field = %c.field,
            mirror = %c.mirror,
            spoki = %c.spoki,
            winner = c.winner,
            "field changed on both sides"
        );
        metrics::counter!("spoki_sync_merge_conflicts_total", "winner" => c.winner).increment(1);
    }
}

/// A contact as Spoki sent it, if its phone is one we can key on.
pub fn spoki_contact(record: &ContactRecord) -> Option<SpokiContact> {
    let phone = Phone::from_e164(record.phone.trim())?;
    Some(SpokiContact {
        phone,
        spoki_id: Some(record.id),
        fields: ContactFields::from(record),
    })
}

impl Mirror {
    pub fn new(
        store: Store,
        client: SpokiClient,
        budgets: Budgets,
        settings: Live<MirrorSettings>,
        batcher_wake: Arc<Notify>,
    ) -> Mirror {
        Mirror {
            store,
            client,
            budgets,
            settings,
            batcher_wake,
            pull_now: Arc::new(Notify::new()),
            deletes_wake: Arc::new(Notify::new()),
        }
    }

    /// Polls the mirror journal every `poll_interval` until `cancel`.
    pub async fn run_poller(self, cancel: CancellationToken) {
        loop {
            match self.poll_once().await {
                Ok(()) => {}
                Err(error) => tracing::error!(%error, "cannot poll the mirror; retrying"),
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(self.settings.get().sync.poll_interval) => {}
            }
        }
    }

    /// Consumes the whole journal, a batch per transaction.
    pub async fn poll_once(&self) -> Result<(), StoreError> {
        let settings = self.settings.get();
        loop {
            let out = self
                .store
                .poll_mirror(
                    POLL_BATCH,
                    settings.sync.propagate_deletes,
                    settings.sync.max_delete_share,
                )
                .await?;
            if out.entries == 0 {
                return Ok(());
            }
            tracing::info!(
                edits = out.entries,
                queued = out.queued,
                rejected = out.rejected,
                deletes = out.deletes,
                "picked up mirror edits"
            );
            if out.queued > 0 {
                self.batcher_wake.notify_one();
            }
            if out.deletes > 0 {
                if out.held {
                    tracing::warn!(
                        deletes = out.deletes,
                        share = settings.sync.max_delete_share,
                        "mirror deletions held: more than mirror.max_delete_share of the \
                         contacts; confirm with POST /v1/sync/deletes/confirm or cancel with \
                         POST /v1/sync/deletes/cancel"
                    );
                } else {
                    self.deletes_wake.notify_one();
                }
            }
            if out.entries < POLL_BATCH as u64 {
                return Ok(());
            }
        }
    }

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
    ) -> Option<Result<crate::spoki::Page<ContactRecord>, SpokiError>> {
        let budget = self.budgets.get(Action::ListContacts);
        let mut failures = 0u32;
        loop {
            tokio::select! {
                () = cancel.cancelled() => return None,
                () = budget.acquire() => {}
            }
            budget.pace().await;
            match self.client.list_contacts(page, PULL_PAGE_SIZE).await {
                Err(SpokiError::RateLimited { retry_after }) => {
                    budget.block_for(retry_after.unwrap_or_else(|| budget.limit().interval()));
                }
                Err(e) if e.is_retryable() && failures < 10 => {
                    failures += 1;
                    let wait = backoff::delay(failures, self.settings.get().max_backoff);
                    tracing::warn!(page, error = %e, "pull page failed; retrying");
                    tokio::select! {
                        () = cancel.cancelled() => return None,
                        () = tokio::time::sleep(wait) => {}
                    }
                }
                other => return Some(other),
            }
        }
    }

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
                let budget = self.budgets.get(Action::DeleteContact);
                budget.acquire().await;
                budget.pace().await;
                match self.client.delete_contact(id).await {
                    Ok(()) | Err(SpokiError::Rejected { status: 404, .. }) => {}
                    Err(SpokiError::Rejected { status, body }) => {
                        let reason = format!("Spoki refused the deletion (HTTP {status}): {body}");
                        self.store
                            .reject_delete(&d.phone, TO_SPOKI, &reason)
                            .await?;
                        continue;
                    }
                    Err(SpokiError::RateLimited { retry_after }) => {
                        budget.block_for(retry_after.unwrap_or_else(|| budget.limit().interval()));
                        return Ok(done);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "deleting a contact in Spoki failed; will retry");
                        tokio::time::sleep(Duration::from_secs(1)).await;
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
        let budget = self.budgets.get(Action::ListContacts);
        budget.acquire().await;
        budget.pace().await;
        let page = self.client.find_contacts_by_phone(phone).await?;
        Ok(page.results.iter().find(|c| c.phone == phone).map(|c| c.id))
    }
}
