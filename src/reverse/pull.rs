//! The puller: every page of Spoki's contacts merged into the mirror and the base, then, after
//! a complete pass only, the contacts Spoki no longer has queued for deletion from the mirror
//! (held past `mirror.max_delete_share`). Records that cannot be read are skipped and counted;
//! the rest of their page goes on.

use std::collections::HashSet;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Mirror, report_conflicts, spoki_contact};
use crate::domain::Phone;
use crate::outbound::sender::Sent;
use crate::spoki::actions::Action;
use crate::spoki::{ContactRecord, Page, Pager, PassEnd, Unreadable, note_skipped};
use crate::store::{SpokiContact, now_rfc3339};

/// Contacts per page of the pull (the simulator's cap; Spoki's is not documented).
const PULL_PAGE_SIZE: u32 = 200;

/// What one pull pass has seen so far.
#[derive(Default)]
struct Tally {
    /// Phones of every readable contact.
    seen: HashSet<Phone>,
    /// Spoki ids of records skipped for their phone: the contacts they are must not be taken
    /// for gone.
    unreadable_ids: HashSet<i64>,
    writes: u64,
    queued: u64,
    requests: u64,
    skipped: usize,
}

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

    /// One full pull: every page of Spoki's contacts merged into the mirror, then, if the pass
    /// was complete, contacts Spoki no longer has are queued for deletion from the mirror.
    /// Pages follow Spoki's `next` links (`spoki::Pager`); a pass that ends early (a 404 on a
    /// later page, a loop, a link off Spoki's host) keeps what it merged and infers nothing.
    pub async fn pull(&self, cancel: &CancellationToken) -> anyhow::Result<()> {
        let settings = self.settings.get();
        let started = now_rfc3339();
        let clock = std::time::Instant::now();
        let mut pager = self.sender.client().contacts_pager(PULL_PAGE_SIZE)?;
        let mut tally = Tally::default();
        let mut stopped: Option<String> = None;
        while pager.next_url().is_some() {
            let Some(result) = self.fetch_page(&mut pager, cancel).await else {
                return Ok(()); // stopping
            };
            tally.requests += 1;
            let records = match result {
                Ok(Some(p)) => p,
                Ok(None) => break, // the pager ended the pass (a 404 on a later page)
                Err(e) => anyhow::bail!("page {}: {e}", pager.pages() + 1),
            };
            self.merge_page(&records, &mut tally, settings.sync.conflict_winner)
                .await?;
            if let Err(error) = pager.advance(&records) {
                stopped = Some(error.to_string());
            }
        }
        if let Some(PassEnd::Incomplete { reason }) = pager.end() {
            self.store
                .set_meta("last_pull_incomplete_at", &now_rfc3339())
                .await?;
            metrics::counter!("spoki_sync_pulls_total", "outcome" => "incomplete").increment(1);
            tracing::warn!(
                contacts = tally.seen.len(),
                requests = tally.requests,
                skipped = tally.skipped,
                mirror_writes = tally.writes,
                reason,
                "pull from Spoki incomplete: what it read is merged, no deletion is inferred"
            );
            if let Some(error) = stopped {
                anyhow::bail!(error);
            }
            return Ok(());
        }
        let (missing, held) = self
            .store
            .queue_missing_after_pull(
                &tally.seen,
                &tally.unreadable_ids,
                &started,
                settings.sync.max_delete_share,
            )
            .await?;
        self.store.set_meta("last_pull_at", &now_rfc3339()).await?;
        metrics::counter!("spoki_sync_pulls_total", "outcome" => "complete").increment(1);
        tracing::info!(
            contacts = tally.seen.len(),
            requests = tally.requests,
            skipped = tally.skipped,
            mirror_writes = tally.writes,
            queued_for_spoki = tally.queued,
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

    /// One page of the pass merged into the mirror and the base; its unreadable records noted.
    async fn merge_page(
        &self,
        records: &Page<ContactRecord>,
        tally: &mut Tally,
        winner: crate::config::ConflictWinner,
    ) -> anyhow::Result<()> {
        tally.skipped += records.skipped.len();
        tally.unreadable_ids.extend(
            records
                .skipped
                .iter()
                .filter_map(|u| u.id.as_deref()?.parse::<i64>().ok()),
        );
        let mut contacts: Vec<SpokiContact> = Vec::with_capacity(records.results.len());
        for record in &records.results {
            match spoki_contact(record) {
                Some(c) => contacts.push(c),
                None => {
                    tally.skipped += 1;
                    tally.unreadable_ids.extend(record.id);
                    note_skipped(
                        Action::ListContacts,
                        &Unreadable {
                            id: record.id.map(|id| id.to_string()),
                            reason: "the phone is not an E.164 number".to_owned(),
                        },
                    );
                }
            }
        }
        tally.seen.extend(contacts.iter().map(|c| c.phone));
        let outcome = self.store.merge_from_spoki(&contacts, winner).await?;
        report_conflicts(&outcome);
        tally.writes += outcome.mirror_writes;
        tally.queued += outcome.queued;
        if outcome.queued > 0 {
            self.batcher_wake.notify_one();
        }
        Ok(())
    }

    /// The pager's next page, retried through 429s, 5xx and timeouts; `Ok(None)` when the
    /// pager ended the pass on the answer (a 404 on a later page); `None` when cancelled.
    async fn fetch_page(
        &self,
        pager: &mut Pager<ContactRecord>,
        cancel: &CancellationToken,
    ) -> Option<Result<Option<Page<ContactRecord>>, String>> {
        let url = pager.next_url()?.clone();
        let mut failures = 0u32;
        loop {
            let slot = tokio::select! {
                () = cancel.cancelled() => return None,
                slot = self.sender.slot(Action::ListContacts) => slot,
            };
            let call = self
                .sender
                .client()
                .fetch_page::<ContactRecord>(Action::ListContacts, &url);
            let sent = self.sender.send(slot, call).await;
            let failure = sent.is_failure();
            match sent {
                Sent::Done(p) => return Some(Ok(Some(p))),
                Sent::Refused { status, .. } if pager.refused(status) => return Some(Ok(None)),
                // The budget is held shut for Retry-After; the next slot waits for it.
                Sent::Throttled { .. } => {}
                ref retried @ (Sent::Transient { .. } | Sent::Unauthorized { .. })
                    if failures < 10 =>
                {
                    failures += u32::from(failure);
                    let wait = retried
                        .retry_in(failures, self.settings.get().max_backoff)
                        .unwrap_or(Duration::from_secs(1));
                    tracing::warn!(page = pager.pages() + 1, error = %retried.describe(), "pull page failed; retrying");
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
