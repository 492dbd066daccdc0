//! Drains the outbox into Spoki. Bulk Sync Contacts carries exactly 500 contacts whenever 500
//! or more wait; a handful of waiting changes go one by one through Create or Update Contact
//! (its own budget) so they arrive within about a second; list rows go through Sync Contacts to
//! List. A contact in a request in flight is never sent again in parallel.
//!
//! `step` claims and launches at most one request and says how long to wait otherwise; `run`
//! loops over it. Each request's answer is settled in the store: 2xx acknowledges, retryable
//! errors release the rows (with backoff), a 400 rejects exactly the rows Spoki named.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::backoff;
use super::custom_fields::CustomFields;
use super::limits::Budgets;
use super::sender::{Sender, Sent, Slot};
use crate::config::Settings;
use crate::domain::{Contact, ListId, Phone};
use crate::spoki::actions::Action;
use crate::spoki::{ContactPayload, SpokiClient, SpokiError};
use crate::store::{OutboxRow, Release, Route, Store, StoreError, now_ms};

pub const BULK_MAX: usize = 500;
pub const BULK: Action = Action::BulkSyncContacts;
pub const SINGLE: Action = Action::CreateOrUpdateContact;
pub const LIST: Action = Action::SyncContactsToList;
const MAX_IN_FLIGHT: usize = 6;
const SETTLE_ATTEMPTS: u32 = 8;

/// What `step` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// A request was launched; call again.
    Launched,
    /// Nothing can leave now; the next chance is at most this far away.
    Wait(Duration),
}

#[derive(Clone, Debug)]
pub struct BatcherSettings {
    pub single_max_pending: usize,
    pub max_backoff: Duration,
    pub create_custom_fields: bool,
}

impl BatcherSettings {
    pub fn from_settings(s: &Settings) -> BatcherSettings {
        BatcherSettings {
            single_max_pending: s.batch.single_max_pending,
            max_backoff: s.batch.max_backoff,
            create_custom_fields: s.csv.create_custom_fields,
        }
    }
}

/// Counters the batcher keeps for status, tests and the demo.
#[derive(Debug, Default)]
pub struct BatcherStats {
    pub bulk_requests: std::sync::atomic::AtomicU64,
    pub single_requests: std::sync::atomic::AtomicU64,
    pub list_requests: std::sync::atomic::AtomicU64,
    pub contacts_acknowledged: std::sync::atomic::AtomicU64,
    pub throttled: std::sync::atomic::AtomicU64,
    pub retries: std::sync::atomic::AtomicU64,
    pub rejected: std::sync::atomic::AtomicU64,
}

#[derive(Clone)]
pub struct Batcher {
    store: Store,
    /// The one road to Spoki (budgets, pacing, 429 holds).
    sender: Sender,
    budgets: Budgets,
    settings: Arc<std::sync::RwLock<BatcherSettings>>,
    /// Beats each time the main loop goes round (the systemd watchdog watches it).
    pub heartbeat: crate::live::Heartbeat,
    wake: Arc<Notify>,
    pub stats: Arc<BatcherStats>,
    /// The custom fields the queued rows need, created before the rows that carry them go.
    custom_fields: CustomFields,
}

#[derive(Debug, thiserror::Error)]
pub enum BatcherError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn bump(counter: &std::sync::atomic::AtomicU64, by: u64) {
    counter.fetch_add(by, std::sync::atomic::Ordering::Relaxed);
}

impl Batcher {
    pub fn new(
        store: Store,
        client: SpokiClient,
        budgets: Budgets,
        settings: BatcherSettings,
        wake: Arc<Notify>,
    ) -> Batcher {
        Batcher {
            custom_fields: CustomFields::new(store.clone(), budgets.clone()),
            sender: Sender::new(client, budgets.clone(), store.clone()),
            store,
            budgets,
            settings: Arc::new(std::sync::RwLock::new(settings)),
            heartbeat: crate::live::Heartbeat::new(),
            wake,
            stats: Arc::new(BatcherStats::default()),
        }
    }

    fn settings(&self) -> BatcherSettings {
        self.settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn update_settings(&self, s: BatcherSettings) {
        *self.settings.write().unwrap_or_else(|e| e.into_inner()) = s;
        // A reload is the operator's way to say "try the refused custom fields again".
        self.custom_fields.recheck();
        self.wake.notify_one();
    }

    /// Restores the spacing owed to requests a previous run made, from the stored marks.
    pub async fn restore_budget_marks(&self) -> Result<(), StoreError> {
        let now = now_ms();
        for (action, at) in self.store.budget_marks().await? {
            let Some(action) = Action::from_name(&action) else {
                continue;
            };
            let budget = self.budgets.get(action);
            let owed = budget.limit().interval().as_millis() as i64 - (now - at);
            if owed > 0 {
                budget.block_for(Duration::from_millis(owed as u64));
            }
        }
        Ok(())
    }

    /// Runs until `cancel`; then lets requests in flight finish for up to `drain`.
    pub async fn run(self, cancel: CancellationToken, drain: Duration) {
        let mut in_flight: JoinSet<()> = JoinSet::new();
        loop {
            self.heartbeat.beat();
            if cancel.is_cancelled() {
                break;
            }
            let wait = if in_flight.len() >= MAX_IN_FLIGHT {
                Duration::from_secs(3600)
            } else {
                match self.step(&mut in_flight).await {
                    Ok(Step::Launched) => continue,
                    Ok(Step::Wait(d)) => d,
                    Err(e) => {
                        tracing::error!(error = %e, "batcher step failed; retrying in 1 s");
                        Duration::from_secs(1)
                    }
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = self.wake.notified() => {}
                // Goes round at least once a second, so the heartbeat shows a live loop.
                _ = tokio::time::sleep(wait.min(Duration::from_secs(1))) => {}
                Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
            }
        }
        if !in_flight.is_empty() {
            tracing::info!(requests = in_flight.len(), "waiting for requests in flight");
            let finished = tokio::time::timeout(drain, async {
                while in_flight.join_next().await.is_some() {}
            })
            .await;
            if finished.is_err() {
                tracing::warn!(
                    "requests still in flight at the deadline; they will be sent again after restart"
                );
                in_flight.abort_all();
            }
        }
    }

    /// Launches at most one request onto `in_flight`.
    pub async fn step(&self, in_flight: &mut JoinSet<()>) -> Result<Step, BatcherError> {
        let settings = self.settings();
        let mut wait = Duration::from_secs(3600);

        // Rows that carry a code still waiting to be created are not eligible (the claim
        // checks it); every other row goes on while the creations wait for their budget.
        if let Some(w) = self
            .custom_fields
            .ensure(
                &self.sender,
                settings.create_custom_fields,
                settings.max_backoff,
            )
            .await?
        {
            wait = wait.min(w);
        }
        let failed_codes: HashMap<String, String> = self
            .store
            .failed_custom_fields()
            .await?
            .into_iter()
            .collect();

        // Bulk: a real backlog.
        let waiting = self
            .store
            .count_eligible(ListId::NONE, Route::Any, BULK_MAX as i64 + 1)
            .await? as usize;
        if waiting > settings.single_max_pending
            && self
                .try_launch(
                    in_flight,
                    Request::Bulk,
                    &[Route::Any],
                    BULK_MAX as i64,
                    &failed_codes,
                    &mut wait,
                )
                .await?
        {
            return Ok(Step::Launched);
        }

        if self.try_lists(in_flight, &failed_codes, &mut wait).await? {
            return Ok(Step::Launched);
        }

        // One by one: rows whose batch Spoki refused without naming them, or few waiting.
        let refused = self
            .store
            .count_eligible(ListId::NONE, Route::Single, 1)
            .await?
            > 0;
        let few = waiting > 0 && waiting <= settings.single_max_pending;
        let routes: &[Route] = if few {
            &[Route::Single, Route::Any]
        } else {
            &[Route::Single]
        };
        if (refused || few)
            && self
                .try_launch(
                    in_flight,
                    Request::Single,
                    routes,
                    1,
                    &failed_codes,
                    &mut wait,
                )
                .await?
        {
            return Ok(Step::Launched);
        }

        if let Some(due) = self.store.next_due_ms().await? {
            let ms = (due - now_ms()).max(0) as u64;
            if ms > 0 {
                wait = wait.min(Duration::from_millis(ms));
            }
        }
        Ok(Step::Wait(wait.max(Duration::from_millis(5))))
    }

    /// Lists: up to 500 rows of the first list with eligible rows, under the one list budget;
    /// rows of a list batch Spoki refused without naming them go alone.
    async fn try_lists(
        &self,
        in_flight: &mut JoinSet<()>,
        failed_codes: &HashMap<String, String>,
        wait: &mut Duration,
    ) -> Result<bool, StoreError> {
        for list in self.store.pending_lists().await? {
            let (routes, limit): (&[Route], i64) =
                if self.store.count_eligible(list, Route::Any, 1).await? > 0 {
                    (&[Route::Any], BULK_MAX as i64)
                } else if self.store.count_eligible(list, Route::Single, 1).await? > 0 {
                    (&[Route::Single], 1)
                } else {
                    continue;
                };
            if self
                .try_launch(
                    in_flight,
                    Request::List(list),
                    routes,
                    limit,
                    failed_codes,
                    wait,
                )
                .await?
            {
                return Ok(true);
            }
            // Every list shares the one budget, and it is not free.
            break;
        }
        Ok(false)
    }

    /// Takes a slot of `request`'s budget and launches up to `limit` eligible rows, claiming
    /// from each route in turn (`Route::Single`: rows to send one by one). When the budget is
    /// not free, lowers `wait` to the time it frees and returns `false`.
    async fn try_launch(
        &self,
        in_flight: &mut JoinSet<()>,
        request: Request,
        routes: &[Route],
        limit: i64,
        failed_codes: &HashMap<String, String>,
        wait: &mut Duration,
    ) -> Result<bool, StoreError> {
        let slot = match self.sender.try_slot(request.action()) {
            Ok(slot) => slot,
            Err(w) => {
                *wait = (*wait).min(w);
                return Ok(false);
            }
        };
        for &route in routes {
            let rows = self.store.claim(request.list(), route, limit).await?;
            if !rows.is_empty() {
                self.launch(in_flight, slot, request, rows, failed_codes)
                    .await?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn launch(
        &self,
        in_flight: &mut JoinSet<()>,
        slot: Slot,
        request: Request,
        rows: Vec<OutboxRow>,
        failed_codes: &HashMap<String, String>,
    ) -> Result<(), StoreError> {
        // Values of codes Spoki refused to create cannot be sent; each such row gets a reject
        // naming them once Spoki took the rest of it, so nothing vanishes silently.
        let mut stripped = Vec::new();
        let payloads: Vec<ContactPayload> = rows
            .iter()
            .map(|r| {
                let mut c = Contact {
                    phone: r.phone,
                    fields: r.fields.clone(),
                };
                let refused: Vec<String> = c
                    .fields
                    .custom_fields
                    .keys()
                    .filter_map(|code| failed_codes.get(code).map(|why| format!("{code} ({why})")))
                    .collect();
                if !refused.is_empty() {
                    c.fields
                        .custom_fields
                        .retain(|code, _| !failed_codes.contains_key(code));
                    stripped.push((
                        r.clone(),
                        format!(
                            "custom field value not sent: Spoki has no field {}",
                            refused.join(", ")
                        ),
                    ));
                }
                ContactPayload::from(&c)
            })
            .collect();
        let me = self.clone();
        in_flight.spawn(async move {
            // The sender paces, sends, stores when it left and holds the budget after a 429.
            // A crash before the answer is recorded leaves the rows in flight, and the next
            // start then waits a whole interval (`App::build`).
            let result = me.sender.send(slot, me.call(request, &payloads)).await;
            // Recording the answer is retried (every store step is idempotent for rows already
            // settled): rows left in flight would wait for the next start.
            let mut attempt = 0;
            while let Err(e) = me.settle(request, &rows, &result, &stripped).await {
                attempt += 1;
                if attempt == SETTLE_ATTEMPTS {
                    tracing::error!(error = %e, "could not record Spoki's answer; the rows are requeued at the next start");
                    break;
                }
                tracing::warn!(error = %e, attempt, "could not record Spoki's answer; retrying");
                tokio::time::sleep(Duration::from_millis(100 << attempt.min(6))).await;
            }
            me.wake.notify_one();
        });
        Ok(())
    }

    /// The request itself; it runs inside `Sender::send`.
    async fn call(
        &self,
        request: Request,
        payloads: &[ContactPayload],
    ) -> Result<HashMap<Phone, i64>, SpokiError> {
        let client = self.sender.client();
        match request {
            Request::Bulk => {
                bump(&self.stats.bulk_requests, 1);
                client.bulk_sync_contacts(payloads).await?;
                Ok(HashMap::new())
            }
            Request::List(list) => {
                bump(&self.stats.list_requests, 1);
                client.sync_contacts_to_list(list.0, payloads).await?;
                Ok(HashMap::new())
            }
            Request::Single => {
                bump(&self.stats.single_requests, 1);
                let mut ids = HashMap::new();
                for p in payloads {
                    if let Some(rec) = client.create_or_update_contact(p).await?
                        && let Some(phone) = Phone::from_e164(&rec.phone)
                        && let Some(id) = rec.id
                    {
                        ids.insert(phone, id);
                    }
                }
                Ok(ids)
            }
        }
    }

    async fn settle(
        &self,
        request: Request,
        rows: &[OutboxRow],
        result: &Sent<HashMap<Phone, i64>>,
        stripped: &[(OutboxRow, String)],
    ) -> Result<(), StoreError> {
        let action = request.action();
        match result {
            // A 2xx whose body we could not read still means Spoki took the write.
            Sent::Done(ids) => self.settle_done(action, rows, ids, stripped).await?,
            Sent::Garbled { reason } => {
                tracing::warn!(
                    action = action.name(),
                    reason,
                    "2xx with an unexpected body; counting it as done"
                );
                self.settle_done(action, rows, &HashMap::new(), stripped)
                    .await?;
            }
            Sent::Throttled { .. } => {
                bump(&self.stats.throttled, 1);
                self.store
                    .release(rows, Release::now().because("429 Too Many Requests"))
                    .await?;
            }
            Sent::Refused {
                status: 400,
                body,
                items,
            } => {
                self.settle_rejection(request, rows, body, items.clone())
                    .await?;
            }
            // The request was too large for Spoki: final for a lone contact, and a batch is
            // sent one by one to find the contact that is.
            Sent::Refused { status: 413, .. } => {
                let body = Value::String(
                    "Spoki refused the request as too large (HTTP 413); the contact's fields \
                     are more than Spoki takes"
                        .to_owned(),
                );
                self.settle_rejection(request, rows, &body, None).await?;
            }
            Sent::Refused {
                status: 404, body, ..
            } if matches!(request, Request::List(_)) => {
                let reason = format!("list not found in Spoki: {body}");
                bump(&self.stats.rejected, rows.len() as u64);
                let rows: Vec<_> = rows.iter().map(|r| (r.clone(), reason.clone())).collect();
                self.store.reject(&rows).await?;
            }
            // 5xx, timeouts, broken connections, auth errors (401/403, the account's problem
            // rather than the rows'), and refusals that name no fault of the rows: retry later,
            // never drop.
            other => self.settle_retry(action, rows, other).await?,
        }
        Ok(())
    }

    /// Spoki took the write (a 2xx, even one whose body we could not read).
    async fn settle_done(
        &self,
        action: Action,
        rows: &[OutboxRow],
        ids: &HashMap<Phone, i64>,
        stripped: &[(OutboxRow, String)],
    ) -> Result<(), StoreError> {
        self.store.acknowledge_noting(rows, ids, stripped).await?;
        bump(&self.stats.contacts_acknowledged, rows.len() as u64);
        metrics::counter!("spoki_sync_contacts_sent_total", "action" => action.name())
            .increment(rows.len() as u64);
        metrics::histogram!("spoki_sync_batch_fill_contacts", "action" => action.name())
            .record(rows.len() as f64);
        let first = rows.iter().map(|r| r.id).min().unwrap_or_default();
        let last = rows.iter().map(|r| r.id).max().unwrap_or_default();
        tracing::info!(
            action = action.name(),
            contacts = rows.len(),
            outbox_rows = %format!("{first}..={last}"),
            "Spoki acknowledged contacts"
        );
        Ok(())
    }

    /// 5xx, timeouts, broken connections, auth errors (401/403, the account's problem rather
    /// than the rows'), and refusals that name no fault of the rows: retry later, never drop.
    async fn settle_retry(
        &self,
        action: Action,
        rows: &[OutboxRow],
        outcome: &Sent<HashMap<Phone, i64>>,
    ) -> Result<(), StoreError> {
        bump(&self.stats.retries, 1);
        metrics::counter!("spoki_sync_retries_total", "action" => action.name()).increment(1);
        let attempts = rows.iter().map(|r| r.attempts).max().unwrap_or(0) + 1;
        let failures = u32::try_from(attempts).unwrap_or(u32::MAX);
        let max_backoff = self.settings().max_backoff;
        let delay = outcome
            .retry_in(failures, max_backoff)
            .unwrap_or_else(|| backoff::delay(failures, max_backoff));
        let text = outcome.describe();
        tracing::warn!(action = action.name(), error = %text, attempt = attempts,
            retry_in_ms = delay.as_millis() as u64, "request failed; will retry");
        self.store
            .release(
                rows,
                Release::now()
                    .because(&text)
                    .failed_until(now_ms() + delay.as_millis() as i64),
            )
            .await
    }

    /// A 400: reject the rows Spoki named (`items`, read by the client from the body); if it
    /// did not say which, send them one by one.
    async fn settle_rejection(
        &self,
        request: Request,
        rows: &[OutboxRow],
        body: &Value,
        items: Option<Vec<Option<String>>>,
    ) -> Result<(), StoreError> {
        let items = items.filter(|i| i.len() == rows.len() && !matches!(request, Request::Single));
        if rows.len() == 1 || matches!(request, Request::Single) {
            let reason = body.to_string();
            tracing::warn!(phone = %rows[0].phone, reason, "Spoki rejected a contact");
            bump(&self.stats.rejected, rows.len() as u64);
            let rows: Vec<_> = rows.iter().map(|r| (r.clone(), reason.clone())).collect();
            return self.store.reject(&rows).await;
        }
        if let Some(items) = items {
            let mut bad = Vec::new();
            let mut good = Vec::new();
            for (row, item) in rows.iter().cloned().zip(items) {
                match item {
                    Some(reason) => bad.push((row, reason)),
                    None => good.push(row),
                }
            }
            if !bad.is_empty() {
                tracing::warn!(
                    rejected = bad.len(),
                    resent = good.len(),
                    "Spoki refused some contacts of a batch"
                );
                bump(&self.stats.rejected, bad.len() as u64);
                self.store.reject(&bad).await?;
                return self.store.release(&good, Release::now()).await;
            }
            return self
                .store
                .release(&good, Release::now().because("batch refused").one_by_one())
                .await;
        }
        tracing::warn!(
            contacts = rows.len(),
            "Spoki refused a batch without naming rows; sending them one by one"
        );
        let reason = body.to_string();
        self.store
            .release(rows, Release::now().because(&reason).one_by_one())
            .await
    }
}

#[derive(Clone, Copy, Debug)]
enum Request {
    Bulk,
    Single,
    List(ListId),
}

impl Request {
    fn list(self) -> ListId {
        match self {
            Request::Bulk | Request::Single => ListId::NONE,
            Request::List(list) => list,
        }
    }

    fn action(self) -> Action {
        match self {
            Request::Bulk => BULK,
            Request::Single => SINGLE,
            Request::List(_) => LIST,
        }
    }
}
