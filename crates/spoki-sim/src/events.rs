//! Spoki's account-level event webhooks for contacts:
//! `contact.created`, `contact.updated` and `contact.deleted`, signed like Spoki's V2 webhooks.
//!
//! Whatever changes a contact (an API call, an automation start, a ticket, a UI hook) logs it
//! in the store; once that operation is done, and still under the state lock, [`flush`] turns
//! the log into envelopes `{version: 2, event, event_uuid, timestamp, data}` and queues them.
//! One sender task, fed by a channel, posts them in that order, never under the lock. Each
//! delivery gets up to [`MAX_ATTEMPTS`] attempts, a pause apart, until one is answered 2xx;
//! every attempt is recorded in the [`Outbox`].
//!
//! Headers of every attempt: `Content-Type: application/json`, `X-SPOKI-ACCOUNT: <account id>`
//! and `X-Spoki-Signature: t=<unix seconds>,v2=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`,
//! with `t` taken when the attempt is made. A [`Tamper`] setting spoils the next deliveries on
//! purpose: a signature made with another key, a `t` 1000 s old (correctly signed), or a
//! byte-for-byte replay of the last delivered request.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use super::state::ContactChange;
use super::{SimState, Tamper, WebhookDelivery};

/// Attempts per delivery, the first included.
pub(super) const MAX_ATTEMPTS: u32 = 3;
/// How long one attempt may take before it counts as a connection error.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// How old the `t` of a [`Tamper::StaleTimestamp`] delivery is (Spoki's receivers accept 300 s).
pub(super) const STALE_BY_SECS: i64 = 1000;
/// How many delivery attempts are kept; older ones are dropped first.
const DELIVERY_CAP: usize = 100_000;
const SIGNATURE_HEADER: &str = "x-spoki-signature";
const ACCOUNT_HEADER: &str = "x-spoki-account";

/// Where events go and how, under the state lock.
#[derive(Debug)]
pub(super) struct WebhookSettings {
    /// (url, secret); `None` sends nothing.
    pub target: Option<(String, String)>,
    pub retry_pause: Duration,
    pub account_id: i64,
    tamper: Tamper,
    /// Deliveries `tamper` still applies to; `None` means until it is reset.
    tamper_left: Option<u32>,
    queue: UnboundedSender<Job>,
}

impl WebhookSettings {
    pub(super) fn new(
        target: Option<(String, String)>,
        retry_pause: Duration,
        account_id: i64,
        queue: UnboundedSender<Job>,
    ) -> Self {
        Self {
            target,
            retry_pause,
            account_id,
            tamper: Tamper::None,
            tamper_left: None,
            queue,
        }
    }

    pub(super) fn set_tamper(&mut self, tamper: Tamper, count: Option<u32>) {
        if tamper == Tamper::None || count == Some(0) {
            self.tamper = Tamper::None;
            self.tamper_left = None;
        } else {
            self.tamper = tamper;
            self.tamper_left = count;
        }
    }

    /// The tamper mode of the next delivery, counting it down.
    fn next_tamper(&mut self) -> Tamper {
        let tamper = self.tamper.clone();
        if let Some(left) = self.tamper_left {
            let left = left.saturating_sub(1);
            if left == 0 {
                self.set_tamper(Tamper::None, None);
            } else {
                self.tamper_left = Some(left);
            }
        }
        tamper
    }
}

/// What the sender task shares with the handles: the record of attempts and the count of
/// deliveries not finished yet.
#[derive(Debug, Default)]
pub(super) struct Outbox {
    deliveries: Mutex<VecDeque<WebhookDelivery>>,
    in_flight: AtomicUsize,
}

impl Outbox {
    pub(super) fn deliveries(&self) -> Vec<WebhookDelivery> {
        self.log().iter().cloned().collect()
    }

    pub(super) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    fn log(&self) -> std::sync::MutexGuard<'_, VecDeque<WebhookDelivery>> {
        // A poisoned log only means a panic elsewhere; the entries are still whole.
        self.deliveries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn record(&self, delivery: WebhookDelivery) {
        let mut log = self.log();
        if log.len() == DELIVERY_CAP {
            log.pop_front();
        }
        log.push_back(delivery);
    }
}

/// One event to deliver.
#[derive(Debug)]
pub(super) struct Job {
    event: String,
    event_uuid: String,
    /// The exact bytes signed and sent.
    body: Vec<u8>,
    json: Value,
    url: String,
    secret: String,
    account_id: i64,
    retry_pause: Duration,
    tamper: Tamper,
}

/// Turns the contact changes logged in the store into queued deliveries, in order. Called at
/// the end of every operation that may change contacts, under the state lock; the log is
/// emptied even when no webhook is configured.
pub(super) fn flush(st: &mut SimState, outbox: &Outbox) {
    let changes = st.store.take_changes();
    if changes.is_empty() {
        return;
    }
    let Some((url, secret)) = st.webhooks.target.clone() else {
        return;
    };
    let timestamp = Utc::now().timestamp();
    for change in changes {
        let (event, data) = match change {
            ContactChange::Created(id) => ("contact.created", st.store.contact(id)),
            ContactChange::Updated(id) => ("contact.updated", st.store.contact(id)),
            ContactChange::Deleted(data) => {
                enqueue(
                    st,
                    outbox,
                    &url,
                    &secret,
                    "contact.deleted",
                    data,
                    timestamp,
                );
                continue;
            }
        };
        // A contact gone by the end of the operation is reported by its `contact.deleted`.
        if let Some(contact) = data {
            let data = st.store.contact_json(contact);
            enqueue(st, outbox, &url, &secret, event, data, timestamp);
        }
    }
}

fn enqueue(
    st: &mut SimState,
    outbox: &Outbox,
    url: &str,
    secret: &str,
    event: &str,
    data: Value,
    timestamp: i64,
) {
    let event_uuid = uuid::Uuid::new_v4().to_string();
    let json = json!({
        "version": 2,
        "event": event,
        "event_uuid": event_uuid,
        "timestamp": timestamp,
        "data": data,
    });
    let body = json.to_string().into_bytes();
    let job = Job {
        event: event.to_owned(),
        event_uuid,
        body,
        json,
        url: url.to_owned(),
        secret: secret.to_owned(),
        account_id: st.webhooks.account_id,
        retry_pause: st.webhooks.retry_pause,
        tamper: st.webhooks.next_tamper(),
    };
    outbox.in_flight.fetch_add(1, Ordering::SeqCst);
    if st.webhooks.queue.send(job).is_err() {
        // The sender task is gone (its runtime is shutting down): nothing will be sent.
        outbox.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// `v2` of `X-Spoki-Signature`: lowercase hex of HMAC-SHA256(secret, "<t>.<body>").
pub(super) fn sign(secret: &str, t: i64, body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        // HMAC takes keys of any length; this cannot happen.
        return String::new();
    };
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .fold(String::with_capacity(64), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        })
}

/// One HTTP request as sent, kept so that it can be replayed byte for byte.
#[derive(Clone, Debug)]
struct Prepared {
    url: String,
    event: String,
    event_uuid: String,
    body: Vec<u8>,
    json: Value,
    signature: String,
    account_id: i64,
}

impl Prepared {
    /// The job signed now, spoiled as `tamper` says (`Replay` is handled by the caller).
    fn sign(job: &Job, tamper: &Tamper) -> Self {
        let now = Utc::now().timestamp();
        let (t, key) = match tamper {
            Tamper::StaleTimestamp => (now - STALE_BY_SECS, job.secret.clone()),
            Tamper::BadSignature => (now, format!("{}-not-the-secret", job.secret)),
            Tamper::None | Tamper::Replay => (now, job.secret.clone()),
        };
        Self {
            url: job.url.clone(),
            event: job.event.clone(),
            event_uuid: job.event_uuid.clone(),
            body: job.body.clone(),
            json: job.json.clone(),
            signature: format!("t={t},v2={}", sign(&key, t, &job.body)),
            account_id: job.account_id,
        }
    }
}

/// Starts the sender task; it ends when every queue sender (every `SimState`) is gone.
pub(super) fn spawn_sender(outbox: Arc<Outbox>, jobs: UnboundedReceiver<Job>) {
    tokio::spawn(run_sender(outbox, jobs));
}

async fn run_sender(outbox: Arc<Outbox>, mut jobs: UnboundedReceiver<Job>) {
    super::install_tls_provider();
    let client = match reqwest::Client::builder().timeout(ATTEMPT_TIMEOUT).build() {
        Ok(client) => Some(client),
        Err(error) => {
            tracing::error!(%error, "The simulator cannot build its webhook client.");
            None
        }
    };
    let sender = Sender {
        client,
        outbox: &outbox,
    };
    let mut last_delivered: Option<Prepared> = None;
    while let Some(job) = jobs.recv().await {
        let pause = job.retry_pause;
        if job.tamper == Tamper::Replay {
            // The replay goes first (the receiver sees an event_uuid it has seen), then the
            // event itself, so no change is lost. With nothing delivered yet, the event is
            // replayed right after itself.
            // It goes to the current target, which may have changed since.
            let replayed = last_delivered.clone().map(|previous| Prepared {
                url: job.url.clone(),
                ..previous
            });
            if let Some(previous) = &replayed {
                sender
                    .deliver(pause, &Tamper::Replay, || previous.clone())
                    .await;
            }
            let sent = sender
                .deliver(pause, &Tamper::None, || Prepared::sign(&job, &Tamper::None))
                .await;
            if let (None, Some(sent)) = (&replayed, &sent) {
                sender
                    .deliver(pause, &Tamper::Replay, || sent.clone())
                    .await;
            }
            if sent.is_some() {
                last_delivered = sent;
            }
        } else {
            let sent = sender
                .deliver(pause, &job.tamper, || Prepared::sign(&job, &job.tamper))
                .await;
            if sent.is_some() {
                last_delivered = sent;
            }
        }
        outbox.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

struct Sender<'a> {
    client: Option<reqwest::Client>,
    outbox: &'a Outbox,
}

impl Sender<'_> {
    /// Up to [`MAX_ATTEMPTS`] attempts, `pause` apart, each prepared afresh; returns the
    /// request that was answered 2xx, if any.
    async fn deliver(
        &self,
        pause: Duration,
        tamper: &Tamper,
        prepare: impl Fn() -> Prepared,
    ) -> Option<Prepared> {
        for attempt in 1..=MAX_ATTEMPTS {
            if attempt > 1 {
                tokio::time::sleep(pause).await;
            }
            let request = prepare();
            let status = self.post(&request).await;
            self.outbox.record(WebhookDelivery {
                event: request.event.clone(),
                event_uuid: request.event_uuid.clone(),
                attempt,
                status,
                body: request.json.clone(),
                tamper: tamper.clone(),
            });
            if status.is_some_and(|status| (200..300).contains(&status)) {
                return Some(request);
            }
        }
        None
    }

    /// The status answered; `None` for a connection error or a timeout.
    async fn post(&self, request: &Prepared) -> Option<u16> {
        let client = self.client.as_ref()?;
        let answer = client
            .post(&request.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, &request.signature)
            .header(ACCOUNT_HEADER, request.account_id.to_string())
            .body(request.body.clone())
            .send()
            .await;
        match answer {
            Ok(response) => {
                let status = response.status().as_u16();
                // Read the answer so the connection can be reused; its content is ignored.
                let _ = response.bytes().await;
                Some(status)
            }
            Err(error) => {
                tracing::debug!(%error, url = %request.url, "A simulator webhook was not delivered.");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_of_t_dot_body_in_lowercase_hex() {
        // Computed independently (Python's hmac module).
        let mac = sign("Jefe", 1_700_000_000, b"{\"a\":1}");
        assert_eq!(
            mac,
            "fa5f6481efc59da48b19c9dc10196c9953e5651f8304b3a318b6b87d70272e0a"
        );
        assert_eq!(mac.len(), 64);
        assert!(mac.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')));
        assert_ne!(
            sign("Jefe-not-the-secret", 1_700_000_000, b"{\"a\":1}"),
            mac
        );
    }

    #[test]
    fn tamper_counts_down_and_resets() {
        let (queue, _jobs) = tokio::sync::mpsc::unbounded_channel();
        let mut settings = WebhookSettings::new(None, Duration::ZERO, 1, queue);
        assert_eq!(settings.next_tamper(), Tamper::None);
        settings.set_tamper(Tamper::BadSignature, Some(2));
        assert_eq!(settings.next_tamper(), Tamper::BadSignature);
        assert_eq!(settings.next_tamper(), Tamper::BadSignature);
        assert_eq!(settings.next_tamper(), Tamper::None);
        settings.set_tamper(Tamper::Replay, None);
        for _ in 0..5 {
            assert_eq!(settings.next_tamper(), Tamper::Replay);
        }
        settings.set_tamper(Tamper::None, Some(3));
        assert_eq!(settings.next_tamper(), Tamper::None);
        settings.set_tamper(Tamper::StaleTimestamp, Some(0));
        assert_eq!(settings.next_tamper(), Tamper::None);
    }
}
