//! `spoki-sync plan FILE.csv`: reads the file exactly as the inbox would, diffs it against the
//! state database (read-only; a missing database counts as empty) and says what would be sent
//! and how long it would take under the rate limits. Sends nothing, writes nothing.

use std::path::Path;

use serde::Serialize;

use crate::config::Settings;
use crate::domain::ListId;
use crate::outbound::batcher::{BULK, BULK_MAX, LIST, SINGLE};
use crate::sources::ingest::{self, IngestError, PlanSink};
use crate::store::Store;

#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    pub file: String,
    pub rows: u64,
    pub valid: u64,
    pub invalid: u64,
    pub duplicates: u64,
    pub creates: u64,
    pub updates: u64,
    pub unchanged: u64,
    pub requests: u64,
    pub eta_seconds: u64,
    pub endpoint: &'static str,
    pub ignored_columns: Vec<String>,
}

pub async fn plan(
    settings: &Settings,
    file: &Path,
    list: Option<i64>,
) -> Result<Plan, IngestError> {
    crate::normalise::warm_up();
    let store = Store::open_read_only(&settings.storage.database).await?;
    let mut sink = PlanSink::new(store);
    let list = list.map_or(ListId::NONE, ListId);
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let report = ingest::ingest_file(
        file,
        &name,
        ingest::IngestOptions::from_settings(settings, list),
        &mut sink,
    )
    .await?;
    let writes = sink.writes;
    let (endpoint, requests) = if !list.is_none() {
        (LIST, writes.div_ceil(BULK_MAX as u64))
    } else if writes as usize <= settings.batch.single_max_pending {
        (SINGLE, writes)
    } else {
        (BULK, writes.div_ceil(BULK_MAX as u64))
    };
    let interval = settings.limit(endpoint).interval();
    let endpoint = endpoint.name();
    // The first request leaves at once; each further one waits one interval.
    let eta = interval.mul_f64(requests.saturating_sub(1) as f64);
    let invalid = report.rejected.len() as u64;
    Ok(Plan {
        file: name,
        rows: report.rows,
        valid: report.rows - invalid,
        invalid,
        duplicates: report.duplicates,
        creates: report.creates,
        updates: report.updates,
        unchanged: report.unchanged,
        requests,
        eta_seconds: eta.as_secs_f64().ceil() as u64,
        endpoint,
        ignored_columns: report.ignored_columns,
    })
}

impl Plan {
    pub fn human(&self) -> String {
        format!(
            "{file}: {rows} rows, {valid} valid ({dups} repeated phones), {invalid} rejected\n\
             contacts: {creates} new, {updates} changed, {unchanged} unchanged\n\
             to send: {requests} request(s) to {endpoint}, about {eta}s under the rate limits",
            file = self.file,
            rows = self.rows,
            valid = self.valid,
            dups = self.duplicates,
            invalid = self.invalid,
            creates = self.creates,
            updates = self.updates,
            unchanged = self.unchanged,
            requests = self.requests,
            endpoint = self.endpoint,
            eta = self.eta_seconds,
        )
    }
}

/// `check-config --online`: one cheap request (a one-contact page of `GET contacts/`) to see
/// whether Spoki accepts the API key.
///
/// # Errors
/// Spoki's refusal or a transport failure.
pub async fn check_online(settings: &Settings) -> Result<(), crate::spoki::SpokiError> {
    let key =
        settings
            .spoki
            .api_key
            .clone()
            .ok_or_else(|| crate::spoki::SpokiError::Unauthorized {
                status: 401,
                body: serde_json::json!({"detail": "spoki.api_key is not set"}),
            })?;
    let client = crate::spoki::SpokiClient::new(
        settings.spoki.base_url.clone(),
        key,
        settings.spoki.timeout,
    )?;
    client.list_contacts(1, 1).await.map(drop)
}
