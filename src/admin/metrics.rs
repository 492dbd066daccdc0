//! Prometheus metrics. Counters are recorded where things happen (`metrics::counter!`);
//! queue depths are read from the database at each scrape, so they are never stale.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::store::{STATUSES, Store, StoreError};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder once; `None` when another recorder got there first
/// (then `/metrics` shows only the depths read at scrape time).
pub fn handle() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            // Contacts per request are whole numbers: buckets, not a summary's estimated
            // quantiles (which read like 499.7 contacts).
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("spoki_sync_batch_fill_contacts".into()),
                    &FILL_BUCKETS,
                )
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            describe();
            register_at_zero();
            Some(handle)
        })
        .clone()
}

/// Bucket bounds of `spoki_sync_batch_fill_contacts`, in contacts (500 is a full bulk request).
const FILL_BUCKETS: [f64; 8] = [1.0, 10.0, 50.0, 100.0, 250.0, 499.0, 500.0, 1000.0];

/// Every counter the README names exists from the start at 0, with the label values known in
/// advance (Prometheus convention: a series that appears only when it first moves cannot be
/// told from one that was never scraped, and `rate()` misses its first increment).
fn register_at_zero() {
    use crate::spoki::actions::Action;
    for &action in Action::ALL {
        let name = action.name();
        metrics::counter!("spoki_sync_spoki_requests_total", "action" => name, "status" => "200")
            .absolute(0);
        metrics::counter!("spoki_sync_spoki_throttled_total", "action" => name).absolute(0);
        metrics::counter!("spoki_sync_retries_total", "action" => name).absolute(0);
        for status in ["succeeded", "failed"] {
            metrics::counter!("spoki_sync_commands_finished_total", "action" => name, "status" => status)
                .absolute(0);
        }
    }
    for action in [
        Action::BulkSyncContacts,
        Action::SyncContactsToList,
        Action::CreateOrUpdateContact,
    ] {
        metrics::counter!("spoki_sync_contacts_sent_total", "action" => action.name()).absolute(0);
    }
    for winner in ["mirror", "spoki"] {
        metrics::counter!("spoki_sync_merge_conflicts_total", "winner" => winner).absolute(0);
    }
    for reason in ["unsigned", "bad_signature", "malformed", "not_configured"] {
        metrics::counter!("spoki_sync_webhook_refused_total", "reason" => reason).absolute(0);
    }
    metrics::counter!("spoki_sync_inbox_scans_total").absolute(0);
}

fn describe() {
    use metrics::{describe_counter, describe_gauge};
    describe_counter!(
        "spoki_sync_spoki_requests_total",
        "Requests sent to Spoki, by action and answer (HTTP status, or the transport failure)"
    );
    describe_counter!(
        "spoki_sync_spoki_throttled_total",
        "429 answers from Spoki, by action"
    );
    describe_counter!(
        "spoki_sync_commands_finished_total",
        "Commands that ended, by action and status"
    );
    describe_gauge!(
        "spoki_sync_outbox_depth",
        "Contact writes waiting in the outbox, by state (pending, inflight)"
    );
    describe_gauge!(
        "spoki_sync_command_queue_depth",
        "Commands in the queue, by status"
    );
    describe_gauge!("spoki_sync_rejects", "Changes recorded as rejected");
    describe_counter!(
        "spoki_sync_rejects_total",
        "Rejects recorded since start, by source and reason class"
    );
    describe_counter!(
        "spoki_sync_contacts_sent_total",
        "Contacts Spoki acknowledged, by action"
    );
    describe_counter!(
        "spoki_sync_retries_total",
        "Requests retried after a 5xx, a timeout or a broken connection, by action"
    );
    describe_counter!(
        "spoki_sync_webhook_refused_total",
        "Webhook requests refused, by reason (unsigned, bad_signature, malformed, not_configured)"
    );
    describe_counter!(
        "spoki_sync_merge_conflicts_total",
        "Fields changed on both sides, by the side that won"
    );
    metrics::describe_histogram!(
        "spoki_sync_batch_fill_contacts",
        "Contacts per acknowledged contact-writing request"
    );
    metrics::describe_histogram!(
        "spoki_sync_rate_limit_wait_seconds",
        "Time spent waiting for a rate-limit slot, by action"
    );
    describe_gauge!(
        "spoki_sync_last_push_timestamp_seconds",
        "When Spoki last acknowledged contacts (unix seconds; 0 never)"
    );
    describe_gauge!(
        "spoki_sync_last_pull_timestamp_seconds",
        "When the last full pull from Spoki ended (unix seconds; 0 never)"
    );
    describe_gauge!(
        "spoki_sync_files",
        "Inbox files handled, by outcome (processed, failed)"
    );
    describe_counter!(
        "spoki_sync_skipped_records_total",
        "Records of Spoki's list answers skipped because they cannot be read (no usable phone \
         or code, not an object), by action"
    );
    describe_counter!(
        "spoki_sync_pulls_total",
        "Pulls from Spoki that ended, by outcome (complete, incomplete: no deletions inferred)"
    );
    // Present from the start, at zero, so a dashboard sees them before the first skip.
    for action in ["list_contacts", "list_custom_fields"] {
        metrics::counter!("spoki_sync_skipped_records_total", "action" => action).increment(0);
    }
    for outcome in ["complete", "incomplete"] {
        metrics::counter!("spoki_sync_pulls_total", "outcome" => outcome).increment(0);
    }
}

/// The Prometheus text: the recorded counters plus the depths read now.
pub async fn render(store: &Store) -> Result<String, StoreError> {
    let counts = store.status_counts().await?;
    let by_status = store.command_counts().await?;
    let Some(handle) = handle() else {
        return Ok(fallback(&counts, &by_status));
    };
    metrics::gauge!("spoki_sync_outbox_depth", "state" => "pending")
        .set(counts.outbox_pending as f64);
    metrics::gauge!("spoki_sync_outbox_depth", "state" => "inflight")
        .set(counts.outbox_inflight as f64);
    for status in STATUSES {
        let n = by_status
            .iter()
            .find(|(s, _)| s == status)
            .map_or(0, |(_, n)| *n);
        metrics::gauge!("spoki_sync_command_queue_depth", "status" => status).set(n as f64);
    }
    metrics::gauge!("spoki_sync_rejects").set(counts.rejected as f64);
    metrics::gauge!("spoki_sync_files", "outcome" => "processed")
        .set(counts.files_processed as f64);
    metrics::gauge!("spoki_sync_files", "outcome" => "failed").set(counts.files_failed as f64);
    for (name, at) in [
        (
            "spoki_sync_last_push_timestamp_seconds",
            &counts.last_push_at,
        ),
        (
            "spoki_sync_last_pull_timestamp_seconds",
            &counts.last_pull_at,
        ),
    ] {
        let secs = at
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map_or(0.0, |t| t.timestamp_millis() as f64 / 1000.0);
        metrics::gauge!(name).set(secs);
    }
    handle.run_upkeep();
    Ok(handle.render())
}

/// The depths alone, in Prometheus text, for when the recorder could not be installed.
fn fallback(counts: &crate::store::StatusCounts, by_status: &[(String, i64)]) -> String {
    let mut out = String::from("# TYPE spoki_sync_outbox_depth gauge\n");
    out.push_str(&format!(
        "spoki_sync_outbox_depth{{state=\"pending\"}} {}\nspoki_sync_outbox_depth{{state=\"inflight\"}} {}\n",
        counts.outbox_pending, counts.outbox_inflight
    ));
    out.push_str("# TYPE spoki_sync_command_queue_depth gauge\n");
    for status in STATUSES {
        let n = by_status
            .iter()
            .find(|(s, _)| s == status)
            .map_or(0, |(_, n)| *n);
        out.push_str(&format!(
            "spoki_sync_command_queue_depth{{status=\"{status}\"}} {n}\n"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn batch_fill_is_rendered_in_whole_contact_buckets() {
        let Some(handle) = super::handle() else {
            return; // another recorder in this process: nothing of ours to render
        };
        metrics::histogram!("spoki_sync_batch_fill_contacts", "action" => "fill_test")
            .record(500.0);
        let text = handle.render();
        assert!(
            text.contains(
                "spoki_sync_batch_fill_contacts_bucket{action=\"fill_test\",le=\"500\"} 1"
            ),
            "{text}"
        );
        assert!(
            !text.contains("spoki_sync_batch_fill_contacts{action=\"fill_test\",quantile"),
            "a summary's estimated quantiles: {text}"
        );
    }
}
