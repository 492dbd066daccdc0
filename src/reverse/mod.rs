//! Spoki → mirror (docs/mirror.md): the `Mirror` handle its tasks share, and what turns a
//! contact as Spoki sent it into ours.
//! - `pull`: the puller pages through Spoki's contacts and merges them into the mirror, field
//!   by field, at `mirror.pull_interval` and on demand;
//! - `delete`: the deleter carries out queued deletions in either direction;
//! - the poller of the mirror journal (the other direction) lives in
//!   `sources::mirror_journal`.
//!
//! Each runs on its own budget and in short transactions, so a long pull never holds up the
//! push direction.

mod delete;
mod pull;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::config::{self, Settings};
use crate::domain::{ContactFields, Phone};
use crate::live::Live;
use crate::outbound::limits::Budgets;
use crate::outbound::sender::Sender;
use crate::spoki::{ContactRecord, SpokiClient};
use crate::store::{MergeOutcome, SpokiContact, Store};

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
    pub(crate) store: Store,
    /// The one road to Spoki (budgets, pacing, 429 holds).
    pub(crate) sender: Sender,
    /// Reloadable.
    pub settings: Live<MirrorSettings>,
    /// Wakes the batcher when writes were queued.
    pub(crate) batcher_wake: Arc<Notify>,
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
        spoki_id: record.id,
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
            sender: Sender::new(client, budgets, store.clone()),
            store,
            settings,
            batcher_wake,
            pull_now: Arc::new(Notify::new()),
            deletes_wake: Arc::new(Notify::new()),
        }
    }
}
