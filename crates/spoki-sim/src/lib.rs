//! In-memory simulator of Spoki's REST API, written from what is known of Spoki's API alone
//! (never from the client's types): contacts, lists, custom fields, tags, templates, media,
//! tickets, automations and their `/wh/ap/` start URLs, campaigns, accounts, agencies,
//! partners, reports, roles and invitations.
//!
//! It is its own crate and depends on neither the daemon nor its Spoki client (a test reads
//! `cargo metadata` to keep it so), so a wire-format mistake in the client cannot
//! be mirrored here. It behaves like Spoki rather than like a stub: `X-Spoki-Api-Key` auth,
//! DRF pagination and error shapes, E.164 validation, upsert by phone, the 500-contact cap,
//! per-endpoint rolling-window rate limits with 429 and `Retry-After`, and no idempotency.
//! On top of that it injects faults (503s, latency, answers arriving after the client gave up)
//! and records every API call for tests, in process through [`SimHandle`] or over HTTP under
//! `/_sim/`.
//!
//! Like Spoki's account-level event webhooks, it can post signed
//! `contact.created` / `contact.updated` / `contact.deleted` events to a URL on every contact
//! change, whatever caused it, including edits made "in Spoki's UI" through
//! [`SimHandle::ui_upsert_contact`] and [`SimHandle::ui_delete_contact`]; tests can spoil the
//! signatures on purpose with [`SimHandle::set_webhook_tamper`].
//!
//! A simulator starts with a small fixed world (the key owner's account, an Administrator role,
//! a tag, an approved template, a media file, an active "Welcome" automation with one API
//! trigger, a Draft campaign, a pending invitation) whose ids [`SimHandle::fixtures`] gives.
//!
//! This file owns the public surface: configuration, [`start`], [`run_cli`] and [`SimHandle`].

mod admin;
mod automations;
mod catalog;
mod content;
mod events;
mod limits;
mod query;
mod routes;
mod state;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_webhooks;
#[cfg(test)]
mod tests_world;
#[cfg(test)]
mod tests_writes;
mod ui;
mod validate;
mod variants;
pub mod writes;

pub use variants::{Pagination, ReadVariants};

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context as _;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use catalog::Catalog;
use events::{Outbox, WebhookSettings};
use limits::RateLimiter;
use query::PageSizes;
use state::Store;
use validate::CustomFieldInput;

/// How many recorded requests are kept; older ones are dropped first.
const RECORD_CAP: usize = 100_000;

/// What the simulator does with a `custom_fields` code that no custom field has.
/// Spoki's behaviour is undocumented.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum UnknownCustomField {
    /// Drop the value silently.
    #[default]
    Ignore,
    /// Create a text custom field with that code (label = code), then store the value.
    Create,
    /// Reject the write with a 400 field error under `custom_fields`.
    Reject,
}

/// What `POST /wh/ap/{uuid}/` (and `…/bulk/`) answers with its 200. Spoki's documentation as
/// quoted by one client says an empty body; another client expects `{"accepted": …}`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum AutomationStartBody {
    /// No body at all.
    #[default]
    Empty,
    /// `{}`
    EmptyObject,
    /// `{"accepted": true}`
    Accepted,
    /// `{"accepted": false, "detail": …}`: the 200 of a start Spoki did not take.
    NotAccepted,
}

/// Statuses of the automation-start refusals, undocumented upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutomationStartErrors {
    /// Missing or wrong `secret`; default 403.
    pub wrong_secret: u16,
    /// No trigger with that uuid; default 404.
    pub unknown_uuid: u16,
    /// The automation or its trigger is not active; default 400.
    pub inactive: u16,
}

impl Default for AutomationStartErrors {
    fn default() -> Self {
        Self {
            wrong_secret: 403,
            unknown_uuid: 404,
            inactive: 400,
        }
    }
}

/// The ids of the fixed world every simulator starts with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fixtures {
    /// The account owning the API key (`SimConfig::account_id`).
    pub account_id: i64,
    /// The key owner's role, the only Administrator at start.
    pub admin_role_id: i64,
    pub tag_id: i64,
    /// An APPROVED `UTILITY` template named `welcome_message`.
    pub template_id: i64,
    pub media_id: i64,
    /// The active automation "Welcome", with one active API trigger.
    pub automation_id: i64,
    /// That trigger's uuid: start it with `POST /wh/ap/<uuid>/`.
    pub automation_uuid: String,
    /// That trigger's secret.
    pub automation_secret: String,
    /// A Draft campaign.
    pub campaign_id: i64,
    /// A pending invitation.
    pub invitation_id: i64,
}

/// How the next contact-event deliveries are spoiled on purpose, for tests of a receiver.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Tamper {
    /// Sent as Spoki sends them.
    None,
    /// `v2` is an HMAC made with another key: it does not verify.
    BadSignature,
    /// `t` is 1000 s before now, correctly signed for that `t`.
    StaleTimestamp,
    /// Before the event itself, the last delivered (2xx-answered) request is sent again byte
    /// for byte, to the current URL: same body, so the same `event_uuid`, and the same headers,
    /// `t` included. When nothing was delivered yet, the event is sent again right after
    /// itself instead. Either way the event itself is delivered too.
    Replay,
}

/// One attempt to deliver a contact event.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WebhookDelivery {
    /// `contact.created`, `contact.updated` or `contact.deleted`.
    pub event: String,
    pub event_uuid: String,
    /// 1-based, per delivery (retries count up).
    pub attempt: u32,
    /// The receiver's status; `None` for a connection error or a timeout.
    pub status: Option<u16>,
    /// The envelope sent.
    pub body: serde_json::Value,
    /// How this attempt was spoiled.
    pub tamper: Tamper,
}

/// Start-up settings of a simulator.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// The only `X-Spoki-Api-Key` accepted.
    pub api_key: String,
    /// Length of the rolling rate-limit window (Spoki's limits are per minute).
    pub window: Duration,
    /// Requests per window for endpoints for which Spoki documents no limit.
    pub default_limit: u32,
    /// Per-endpoint limits, keyed like `"POST /contacts/sync_all/"`; the key `"default"`
    /// replaces `default_limit`. Automation starts are not limited unless keyed here (or with
    /// [`SimHandle::set_limit`]) as `"POST /wh/ap/{uuid}/"` / `"POST /wh/ap/{uuid}/bulk/"`.
    pub limit_overrides: HashMap<String, u32>,
    /// `page_size` of list endpoints when the client gives none.
    pub page_size_default: usize,
    /// Largest `page_size` honoured; larger ones are silently capped.
    pub page_size_max: usize,
    /// E-mails that `add_operator` / `remove_operator` accept.
    pub operators: Vec<String>,
    /// What to do with `custom_fields` codes that no custom field has.
    pub unknown_custom_field: UnknownCustomField,
    /// Faults in force from the start.
    pub faults: Faults,
    /// Id of the account owning the API key (`GET /accounts/`).
    pub account_id: i64,
    /// Whether the account has the tickets feature; without it every `/tickets/` call is
    /// refused with `tickets_disabled_status`.
    pub tickets_enabled: bool,
    /// Status of ticket calls while tickets are disabled: 403 (default) or e.g. 404.
    pub tickets_disabled_status: u16,
    /// What a successful automation start answers.
    pub automation_start_body: AutomationStartBody,
    /// Statuses of refused automation starts.
    pub automation_start_errors: AutomationStartErrors,
    /// Most contacts one `POST /wh/ap/{uuid}/bulk/` may carry (undocumented upstream).
    pub automation_bulk_max: usize,
    /// How long `current_report` and `GET /reports/` answers are cached (Spoki: 30 minutes).
    pub report_cache: Duration,
    /// When set, a submitted (PENDING) template turns APPROVED after this long; when `None`
    /// it stays PENDING.
    pub template_auto_approve_after: Option<Duration>,
    /// (url, secret) where contact events are posted, signed with the secret's UTF-8 bytes;
    /// `None` (default) sends none.
    pub event_webhook: Option<(String, String)>,
    /// Pause between two attempts of one event delivery (default 500 ms).
    pub event_webhook_retry_pause: Duration,
    /// Request bodies larger than this are refused with 413 before anything happens, as the
    /// web server in front of an API does (Spoki's own limit is not documented).
    pub body_limit: usize,
    /// Alternative answer shapes (pagination style, odd records, …); all off by default.
    pub reads: ReadVariants,
    /// The write side's switches (error wordings, failing creates, trigger links, …).
    pub writes: writes::WriteSwitches,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            api_key: "sim-api-key".to_owned(),
            window: Duration::from_secs(60),
            default_limit: 60,
            limit_overrides: HashMap::new(),
            page_size_default: 15,
            page_size_max: 200,
            operators: vec!["operator@example.com".to_owned()],
            unknown_custom_field: UnknownCustomField::Ignore,
            faults: Faults::default(),
            account_id: 1001,
            tickets_enabled: true,
            tickets_disabled_status: 403,
            automation_start_body: AutomationStartBody::Empty,
            automation_start_errors: AutomationStartErrors::default(),
            automation_bulk_max: 500,
            report_cache: Duration::from_secs(30 * 60),
            template_auto_approve_after: None,
            event_webhook: None,
            event_webhook_retry_pause: Duration::from_millis(500),
            body_limit: 16 * 1024 * 1024,
            reads: ReadVariants::default(),
            writes: writes::WriteSwitches::default(),
        }
    }
}

/// Faults injected into `/api/1/` and `/wh/ap/` answers; changeable while serving.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// Share (0.0..=1.0) of calls answered 503 before anything else happens.
    pub error_503_rate: f64,
    /// Added to every answer.
    pub latency_ms: u64,
    /// Share of non-GET calls let through whose effect is applied but whose answer is held
    /// back a further `late_answer_delay_ms`, so the client times out.
    pub drop_after_write_rate: f64,
    /// How much later than usual those answers come.
    pub late_answer_delay_ms: u64,
    /// Share (0.0..=1.0) of answers whose connection is cut while the answer is being
    /// written: the call's effect is applied, the client gets a broken connection.
    pub drop_connection_rate: f64,
}

/// One call that reached the API, whatever its answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RecordedRequest {
    /// 1-based, in arrival order.
    pub seq: u64,
    /// `GET`, `POST`, …
    pub method: String,
    /// Full path, e.g. `/api/1/contacts/sync/`.
    pub path: String,
    /// Raw query string, `""` when none.
    pub query: String,
    /// The JSON body; `Null` when empty or not JSON.
    pub body: serde_json::Value,
    /// The status answered (401, 429 and 503 included).
    pub status: u16,
    /// Milliseconds since the simulator started (monotonic clock).
    pub at_ms: u64,
}

/// Settings read by the handlers.
#[derive(Debug)]
struct Settings {
    page_sizes: PageSizes,
    operators: Vec<String>,
    unknown_custom_field: UnknownCustomField,
    tickets_enabled: bool,
    tickets_disabled_status: u16,
    automation_start_body: AutomationStartBody,
    automation_start_errors: AutomationStartErrors,
    automation_bulk_max: usize,
    report_cache: Duration,
    template_auto_approve_after: Option<Duration>,
}

/// Everything mutable, behind the one lock.
#[derive(Debug)]
struct SimState {
    store: Store,
    catalog: Catalog,
    limiter: RateLimiter,
    faults: Faults,
    reads: ReadVariants,
    settings: Settings,
    webhooks: WebhookSettings,
    requests: VecDeque<RecordedRequest>,
    requests_seen: u64,
    throttled: u64,
    writes: writes::WriteSwitches,
}

impl SimState {
    fn record(
        &mut self,
        method: &str,
        path: &str,
        query: &str,
        body: &[u8],
        status: u16,
        at: Duration,
    ) {
        self.requests_seen += 1;
        if self.requests.len() == RECORD_CAP {
            self.requests.pop_front();
        }
        self.requests.push_back(RecordedRequest {
            seq: self.requests_seen,
            method: method.to_owned(),
            path: path.to_owned(),
            query: query.to_owned(),
            body: serde_json::from_slice(body).unwrap_or(serde_json::Value::Null),
            status,
            at_ms: u64::try_from(at.as_millis()).unwrap_or(u64::MAX),
        });
    }
}

/// Shared by the server task and every handle.
#[derive(Debug)]
struct Shared {
    state: Mutex<SimState>,
    api_key: String,
    addr: SocketAddr,
    started: Instant,
    shutdown: watch::Sender<bool>,
    /// Contact-event deliveries, written by the sender task.
    outbox: Arc<Outbox>,
}

impl Shared {
    /// The state lock; never held across an `.await`.
    fn lock(&self) -> MutexGuard<'_, SimState> {
        self.state.lock().expect("sim state poisoned")
    }

    /// Queues the contact events of the operation just done; call with the lock held.
    fn flush_events(&self, st: &mut SimState) {
        events::flush(st, &self.outbox);
    }
}

/// The address clients should use: a wildcard bind is reached through loopback.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, addr.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, addr.port()).into(),
        _ => addr,
    }
}

/// Starts serving on `listener` in a spawned task and returns at once.
///
/// # Errors
/// When the listener's local address cannot be read.
pub async fn start(listener: TcpListener, config: SimConfig) -> std::io::Result<SimHandle> {
    spawn(listener, config).map(|(handle, _task)| handle)
}

fn spawn(
    listener: TcpListener,
    config: SimConfig,
) -> std::io::Result<(SimHandle, JoinHandle<std::io::Result<()>>)> {
    let addr = reachable(listener.local_addr()?);
    let (shutdown, mut stop) = watch::channel(false);
    let (queue, jobs) = tokio::sync::mpsc::unbounded_channel();
    let outbox = Arc::new(Outbox::default());
    events::spawn_sender(Arc::clone(&outbox), jobs);
    let state = SimState {
        store: Store::new(format!("http://{addr}")),
        catalog: Catalog::new(config.account_id, Utc::now()),
        limiter: RateLimiter::new(config.window, config.default_limit, config.limit_overrides),
        faults: config.faults,
        reads: config.reads,
        settings: Settings {
            page_sizes: PageSizes {
                default: config.page_size_default,
                max: config.page_size_max,
            },
            operators: config.operators,
            unknown_custom_field: config.unknown_custom_field,
            tickets_enabled: config.tickets_enabled,
            tickets_disabled_status: config.tickets_disabled_status,
            automation_start_body: config.automation_start_body,
            automation_start_errors: config.automation_start_errors,
            automation_bulk_max: config.automation_bulk_max,
            report_cache: config.report_cache,
            template_auto_approve_after: config.template_auto_approve_after,
        },
        webhooks: WebhookSettings::new(
            config.event_webhook,
            config.event_webhook_retry_pause,
            config.account_id,
            queue,
        ),
        requests: VecDeque::new(),
        requests_seen: 0,
        throttled: 0,
        writes: config.writes,
    };
    let shared = Arc::new(Shared {
        state: Mutex::new(state),
        api_key: config.api_key,
        addr,
        started: Instant::now(),
        shutdown,
        outbox,
    });
    let app = routes::router(Arc::clone(&shared), config.body_limit);
    let shared_for_io = Arc::clone(&shared);
    let task = tokio::spawn(async move {
        let listener = FaultyListener {
            inner: listener,
            shared: Arc::clone(&shared_for_io),
        };
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                // An error means every handle is gone: nobody can ask for a stop any more.
                if stop.wait_for(|stopping| *stopping).await.is_err() {
                    std::future::pending::<()>().await;
                }
            })
            .await;
        if let Err(error) = &served {
            tracing::error!(%error, "Spoki simulator stopped serving.");
        }
        served
    });
    Ok((SimHandle { shared }, task))
}

/// Runs the simulator for `spoki-sync sim` until Ctrl-C or SIGTERM.
///
/// # Errors
/// When `listen` cannot be bound or the signal handlers cannot be installed.
/// Makes rustls' `ring` provider the process default, once, before an HTTP client is built
/// (the webhook sender's). Later calls are no-ops.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub async fn run_cli(listen: SocketAddr, api_key: String) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let config = SimConfig {
        api_key: api_key.clone(),
        ..SimConfig::default()
    };
    let (handle, task) = spawn(listener, config)?;
    println!(
        "spoki simulator listening on {} (api key: {api_key})",
        handle.base_url()
    );
    stop_signal().await?;
    handle.shutdown();
    task.await.context("the simulator task panicked")??;
    Ok(())
}

async fn stop_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
        tokio::select! {
            ctrl_c = tokio::signal::ctrl_c() => ctrl_c.context("cannot listen for Ctrl-C")?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c()
        .await
        .context("cannot listen for Ctrl-C")?;
    Ok(())
}

/// Control and inspection of a running simulator; cheap to clone.
#[derive(Clone, Debug)]
pub struct SimHandle {
    shared: Arc<Shared>,
}

impl SimHandle {
    /// The address served, loopback when bound to a wildcard address.
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// `http://127.0.0.1:PORT/api/1/`
    pub fn base_url(&self) -> String {
        format!("http://{}/api/1/", self.shared.addr)
    }

    /// Every recorded call (the latest 100 000), oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.iter().cloned().collect()
    }

    /// Every stored contact in Spoki's JSON shape, oldest first.
    pub fn contacts(&self) -> Vec<serde_json::Value> {
        self.shared.lock().store.all_contacts_json()
    }

    /// The contact with exactly this E.164 phone, in Spoki's JSON shape.
    pub fn contact_by_phone(&self, phone: &str) -> Option<serde_json::Value> {
        let st = self.shared.lock();
        st.store
            .contact_by_phone(phone)
            .map(|c| st.store.contact_json(c))
    }

    /// Phones of the list's members; empty for an unknown list.
    pub fn list_members(&self, list_id: i64) -> Vec<String> {
        self.shared.lock().store.member_phones(list_id)
    }

    /// Creates a list directly (no rate limit, not recorded) and returns its id.
    pub fn create_list(&self, name: &str) -> i64 {
        self.shared
            .lock()
            .store
            .create_list(name, None, Utc::now())
            .id
    }

    /// Creates a text custom field directly (no validation, no rate limit, not recorded) and
    /// returns its id.
    pub fn create_custom_field(&self, code: &str) -> i64 {
        let mut st = self.shared.lock();
        if let Some(field) = st.store.field_by_code(code) {
            return field.id;
        }
        st.store
            .try_create_custom_field(CustomFieldInput {
                label: code.to_owned(),
                code: code.to_owned(),
                field_type: 1,
                example: String::new(),
            })
            .map_or(0, |field| field.id)
    }

    /// Codes of every custom field, oldest first.
    pub fn custom_field_codes(&self) -> Vec<String> {
        self.shared
            .lock()
            .store
            .custom_fields()
            .map(|field| field.code.clone())
            .collect()
    }

    /// The ids of the fixed starting world.
    pub fn fixtures(&self) -> Fixtures {
        self.shared.lock().catalog.fixtures()
    }

    /// Adds an automation with one API trigger; returns (automation id, trigger uuid, trigger
    /// secret). The trigger is active; `active` says whether the automation is.
    pub fn seed_automation(&self, name: &str, active: bool) -> (i64, String, String) {
        self.shared
            .lock()
            .catalog
            .seed_automation(name, active, Utc::now())
    }

    /// Replaces an automation's API triggers with a fresh one, as re-creating it in Spoki's UI
    /// does: the old start URL answers 404 from now on. Returns (uuid, secret) of the new one.
    pub fn replace_trigger(&self, automation_id: i64) -> Option<(String, String)> {
        self.shared.lock().catalog.replace_trigger(automation_id)
    }

    /// Marks that an automation uses this custom field: deleting the field is then refused.
    /// Does nothing for an unknown automation.
    pub fn automation_uses_custom_field(&self, automation_id: i64, field_id: i64) {
        self.shared
            .lock()
            .catalog
            .use_custom_field(automation_id, field_id);
    }

    /// Marks that an automation uses this template: deleting it then needs
    /// `?force_delete=true`. Does nothing for an unknown automation.
    pub fn automation_uses_template(&self, automation_id: i64, template_id: i64) {
        self.shared
            .lock()
            .catalog
            .use_template(automation_id, template_id);
    }

    /// Every automation start so far, oldest first: (trigger uuid, the JSON body received
    /// minus `secret`). A bulk start adds one entry per contact, holding that contact's item.
    pub fn automation_runs(&self) -> Vec<(String, serde_json::Value)> {
        self.shared.lock().catalog.runs.clone()
    }

    /// WhatsApp's review of a submitted template: a PENDING template becomes APPROVED or
    /// REJECTED. False (and nothing changes) for an unknown template or one not PENDING.
    pub fn review_template(&self, template_id: i64, approve: bool) -> bool {
        self.shared
            .lock()
            .catalog
            .review_template(template_id, approve, Utc::now())
    }

    /// Turns the account's tickets feature on or off.
    pub fn set_tickets_enabled(&self, enabled: bool) {
        self.shared.lock().settings.tickets_enabled = enabled;
    }

    /// How many times `POST /invitations/{id}/send/` succeeded for this invitation.
    pub fn invitation_sends(&self, invitation_id: i64) -> u32 {
        self.shared
            .lock()
            .catalog
            .invitations
            .get(invitation_id)
            .map_or(0, |invitation| invitation.sends)
    }

    /// Replaces the write-side switches in force.
    pub fn set_writes(&self, writes: writes::WriteSwitches) {
        self.shared.lock().writes = writes;
    }

    /// Replaces the faults in force.
    pub fn set_faults(&self, faults: Faults) {
        self.shared.lock().faults = faults;
    }

    /// Replaces the read variants in force.
    pub fn set_read_variants(&self, reads: ReadVariants) {
        self.shared.lock().reads = reads;
    }

    /// Sets the limit of one endpoint (`"POST /contacts/sync_all/"` style), or of every
    /// endpoint without its own with `"default"`.
    pub fn set_limit(&self, endpoint: &str, per_window: u32) {
        self.shared.lock().limiter.set_limit(endpoint, per_window);
    }

    /// Changes the rolling window's length; calls already counted stay counted.
    pub fn set_window(&self, window: Duration) {
        self.shared.lock().limiter.set_window(window);
    }

    /// How many 429s have been answered.
    pub fn throttled_count(&self) -> u64 {
        self.shared.lock().throttled
    }

    /// Where contact events go; None turns them off. Secret = the signing key (UTF-8 bytes).
    /// Events already queued keep their URL and secret.
    pub fn set_event_webhook(&self, url: Option<String>, secret: &str) {
        self.shared.lock().webhooks.target = url.map(|url| (url, secret.to_owned()));
    }

    /// Upsert by phone as if edited in Spoki's UI: `fields` like {"first_name": .., "last_name":
    /// .., "email": .., "language": .., "custom_fields": {"CODE": "value"}} (unknown
    /// custom-field codes are created as text fields). Returns the contact id. Fires
    /// contact.created / contact.updated.
    ///
    /// No API key, no rate limit, not recorded. `status`, `notes` and `is_blocked` are taken
    /// too, and a `phone` in `fields` is overridden by `phone`. The values are checked like
    /// `contacts/sync` checks them; when they fail (a phone that is not E.164, a bad e-mail, a code that is not
    /// `[A-Z0-9_]+`…) nothing changes and 0 is returned.
    pub fn ui_upsert_contact(&self, phone: &str, fields: serde_json::Value) -> i64 {
        ui::upsert_contact(&self.shared, phone, fields).unwrap_or_else(|errors| {
            tracing::warn!(%phone, %errors, "The simulator's UI refused a contact edit.");
            0
        })
    }

    /// Deletes by phone as if in the UI; false if absent. Fires contact.deleted.
    pub fn ui_delete_contact(&self, phone: &str) -> bool {
        ui::delete_contact(&self.shared, phone)
    }

    /// Every delivery attempt so far (the latest 100 000), oldest first.
    pub fn webhook_deliveries(&self) -> Vec<WebhookDelivery> {
        self.shared.outbox.deliveries()
    }

    /// Deliveries still queued or being retried (0 when everything was sent).
    pub fn webhooks_in_flight(&self) -> usize {
        self.shared.outbox.in_flight()
    }

    /// Applies `tamper` to the next `count` deliveries (None = until set back to Tamper::None).
    /// A delivery is one event with all its attempts; `Some(0)` or `Tamper::None` resets.
    pub fn set_webhook_tamper(&self, tamper: Tamper, count: Option<u32>) {
        self.shared.lock().webhooks.set_tamper(tamper, count);
    }

    /// Stops accepting connections and ends the server once calls in flight are answered.
    pub fn shutdown(&self) {
        self.shared.shutdown.send_replace(true);
    }
}

/// Accepts connections whose writes can be cut (`Faults::drop_connection_rate`).
struct FaultyListener {
    inner: TcpListener,
    shared: Arc<Shared>,
}

impl axum::serve::Listener for FaultyListener {
    type Io = FaultyIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    return (
                        FaultyIo {
                            inner: stream,
                            shared: Arc::clone(&self.shared),
                        },
                        addr,
                    );
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A connection that, when the fault fires, fails the first write of an answer: the server
/// drops the connection after the call took effect.
struct FaultyIo {
    inner: tokio::net::TcpStream,
    shared: Arc<Shared>,
}

impl tokio::io::AsyncRead for FaultyIo {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for FaultyIo {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let rate = self.shared.lock().faults.drop_connection_rate;
        if rate > 0.0 && rand::Rng::random::<f64>(&mut rand::rng()) < rate {
            return std::task::Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "simulated dropped connection",
            )));
        }
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
