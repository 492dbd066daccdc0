//! The mirror journal as a source: edits other programs made to the `contacts` table
//! (journaled by triggers, even while the daemon is down) become outbox writes, a batch per
//! transaction, every `mirror.poll_interval`.

use tokio_util::sync::CancellationToken;

use crate::reverse::Mirror;
use crate::store::StoreError;

/// Journal entries handled per transaction.
const POLL_BATCH: i64 = 1000;

impl Mirror {
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
                edits = out.contacts,
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
}
