//! The simulator's HTTP surface: the axum router, the pipeline every API call goes through
//! (503 fault → routing → `X-Spoki-Api-Key` → rate limit → handler → record → late answer),
//! the routing table of every endpoint, the handlers of contacts,
//! lists and custom fields, and the `/_sim/` introspection routes (the UI hooks and webhook ones
//! live in `ui.rs`). The other handlers live in
//! `content.rs`, `automations.rs` and `admin.rs`.
//!
//! Automation starts (`/wh/ap/…`) go through the same pipeline but need no API key and are
//! rate limited only when a limit is set for them explicitly.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use chrono::Utc;
use rand::Rng as _;
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::query::{Page, Query};
use super::state::ContactFilter;
use super::validate::{self, ContactInput, FieldErrors, PhoneRule};
use super::variants::{self, Pagination};
use super::{Faults, ReadVariants, Shared, SimState};
use super::{admin, automations, content, ui};

/// Most contacts one bulk request may carry.
const BULK_MAX: usize = 500;
const API_PREFIX: &str = "/api/1/";
const START_PREFIX: &str = "/wh/ap/";
const API_KEY_HEADER: &str = "x-spoki-api-key";

/// Bodies above `body_limit` are refused with 413 before they reach the pipeline.
pub(super) fn router(shared: Arc<Shared>, body_limit: usize) -> Router {
    Router::new()
        .route("/_sim/requests", get(sim_requests))
        .route("/_sim/contacts", get(sim_contacts))
        .route("/_sim/faults", get(sim_faults).post(sim_set_faults))
        .route("/_sim/reads", get(sim_reads).post(sim_set_reads))
        .route("/_sim/stats", get(sim_stats))
        .route("/_sim/fixtures", get(sim_fixtures))
        .route("/_sim/automation-runs", get(sim_automation_runs))
        .route("/_sim/ui/contacts", post(ui::http_upsert_contact))
        .route("/_sim/ui/contacts/{phone}", delete(ui::http_delete_contact))
        .route("/_sim/webhook-deliveries", get(ui::http_webhook_deliveries))
        .route("/_sim/event-webhook", post(ui::http_set_event_webhook))
        .route("/_sim/webhook-tamper", post(ui::http_set_webhook_tamper))
        .fallback(api)
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(shared)
}

// ---- introspection ---------------------------------------------------------------------------

async fn sim_requests(State(shared): State<Arc<Shared>>) -> Json<Value> {
    Json(json!(shared.lock().requests.iter().collect::<Vec<_>>()))
}

async fn sim_contacts(State(shared): State<Arc<Shared>>) -> Json<Value> {
    Json(Value::Array(shared.lock().store.all_contacts_json()))
}

async fn sim_faults(State(shared): State<Arc<Shared>>) -> Json<Faults> {
    Json(shared.lock().faults.clone())
}

async fn sim_set_faults(
    State(shared): State<Arc<Shared>>,
    Json(faults): Json<Faults>,
) -> Json<Faults> {
    shared.lock().faults = faults.clone();
    Json(faults)
}

async fn sim_reads(State(shared): State<Arc<Shared>>) -> Json<ReadVariants> {
    Json(shared.lock().reads.clone())
}

async fn sim_set_reads(
    State(shared): State<Arc<Shared>>,
    Json(reads): Json<ReadVariants>,
) -> Json<ReadVariants> {
    shared.lock().reads = reads.clone();
    Json(reads)
}

async fn sim_stats(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let st = shared.lock();
    Json(json!({
        "throttled": st.throttled,
        "requests": st.requests_seen,
        "contacts": st.store.contact_count(),
    }))
}

async fn sim_fixtures(State(shared): State<Arc<Shared>>) -> Json<super::Fixtures> {
    Json(shared.lock().catalog.fixtures())
}

/// `[[uuid, body], …]`, the JSON form of `SimHandle::automation_runs`.
async fn sim_automation_runs(State(shared): State<Arc<Shared>>) -> Json<Value> {
    Json(json!(shared.lock().catalog.runs))
}

// ---- the pipeline ----------------------------------------------------------------------------

/// What a handler answers; turned into an HTTP response once the lock is released.
#[derive(Debug)]
pub(super) struct Reply {
    status: StatusCode,
    body: Option<Value>,
    headers: Vec<(HeaderName, String)>,
}

impl Reply {
    pub(super) fn json(status: StatusCode, body: Value) -> Self {
        Self {
            status,
            body: Some(body),
            headers: Vec::new(),
        }
    }

    pub(super) fn ok(body: Value) -> Self {
        Self::json(StatusCode::OK, body)
    }

    pub(super) fn created(body: Value) -> Self {
        Self::json(StatusCode::CREATED, body)
    }

    pub(super) fn no_content() -> Self {
        Self {
            status: StatusCode::NO_CONTENT,
            body: None,
            headers: Vec::new(),
        }
    }

    pub(super) fn detail(status: StatusCode, detail: impl Into<String>) -> Self {
        Self::json(status, json!({ "detail": detail.into() }))
    }

    pub(super) fn bad_request(body: Value) -> Self {
        Self::json(StatusCode::BAD_REQUEST, body)
    }

    pub(super) fn not_found() -> Self {
        Self::detail(StatusCode::NOT_FOUND, "Not found.")
    }

    fn with_header(mut self, name: HeaderName, value: String) -> Self {
        self.headers.push((name, value));
        self
    }

    /// A status with no body at all.
    pub(super) fn empty(status: StatusCode) -> Self {
        Self {
            status,
            body: None,
            headers: Vec::new(),
        }
    }

    /// A status given as a number; a number that is no status reads as 400.
    pub(super) fn status_of(code: u16) -> StatusCode {
        StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST)
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let mut response = match self.body {
            Some(body) => (self.status, Json(body)).into_response(),
            None => self.status.into_response(),
        };
        for (name, value) in self.headers {
            if let Ok(value) = HeaderValue::from_str(&value) {
                response.headers_mut().insert(name, value);
            }
        }
        response
    }
}

pub(super) type Outcome = Result<Reply, Reply>;

/// One API call as the handlers see it.
pub(super) struct ApiRequest<'a> {
    method: &'a Method,
    path: &'a str,
    pub query: &'a str,
    headers: &'a HeaderMap,
    body: &'a [u8],
    /// `Host` header, for the absolute `next`/`previous` links.
    host: String,
}

impl ApiRequest<'_> {
    fn absolute_url(&self) -> String {
        format!("http://{}{}", self.host, self.path)
    }

    /// `http://host:port` as the client reached the simulator, for absolute links.
    pub(super) fn origin(&self) -> String {
        format!("http://{}", self.host)
    }

    /// The body as DRF's `JSONParser` reads it: empty means `{}`.
    pub(super) fn json_body(&self) -> Result<Value, Reply> {
        if self.body.is_empty() {
            return Ok(Value::Object(Map::new()));
        }
        let content_type = self
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let media_type = content_type.split(';').next().unwrap_or("").trim();
        if !media_type.eq_ignore_ascii_case("application/json") {
            return Err(Reply::detail(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("Unsupported media type \"{content_type}\" in request."),
            ));
        }
        serde_json::from_slice(self.body)
            .map_err(|e| Reply::detail(StatusCode::BAD_REQUEST, format!("JSON parse error - {e}")))
    }

    /// The body, which must be a JSON object.
    pub(super) fn json_object(&self) -> Result<Map<String, Value>, Reply> {
        match self.json_body()? {
            Value::Object(obj) => Ok(obj),
            other => Err(Reply::bad_request(validate::not_a_dict(&other))),
        }
    }
}

async fn api(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map_or_else(|| shared.addr.to_string(), str::to_owned);
    let request = ApiRequest {
        method: &method,
        path: uri.path(),
        query: uri.query().unwrap_or(""),
        headers: &headers,
        body: &body,
        host,
    };
    let (reply, delay) = process(&shared, &request);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    reply.into_response()
}

/// Runs one call through the pipeline under the state lock; returns the answer and how long
/// to hold it back.
fn process(shared: &Shared, req: &ApiRequest<'_>) -> (Reply, Duration) {
    let now = Instant::now();
    let mut guard = shared.lock();
    let st = &mut *guard;
    let mut answer_late = false;
    let reply = answer(shared, st, req, now, &mut answer_late);
    shared.flush_events(st);
    st.record(
        req.method.as_str(),
        req.path,
        req.query,
        req.body,
        reply.status.as_u16(),
        now.saturating_duration_since(shared.started),
    );
    let mut delay = Duration::from_millis(st.faults.latency_ms);
    if answer_late {
        delay += Duration::from_millis(st.faults.late_answer_delay_ms);
    }
    (reply, delay)
}

/// The checks in order, each answering before any side effect: injected 503, routing (404),
/// API key (401), rate limit (429). Only a call that passes them all uses a rate-limit slot.
fn answer(
    shared: &Shared,
    st: &mut SimState,
    req: &ApiRequest<'_>,
    now: Instant,
    answer_late: &mut bool,
) -> Reply {
    let mut rng = rand::rng();
    if rng.random::<f64>() < st.faults.error_503_rate {
        return Reply::detail(StatusCode::SERVICE_UNAVAILABLE, "Service unavailable");
    }
    let Some(route) = Route::resolve(req.path) else {
        return Reply::not_found();
    };
    let key = req
        .headers
        .get(API_KEY_HEADER)
        .and_then(|v| v.to_str().ok());
    if route.needs_api_key() && key != Some(shared.api_key.as_str()) {
        return Reply::detail(
            StatusCode::UNAUTHORIZED,
            "Invalid or inactive X-Spoki-Api-Key.",
        );
    }
    let endpoint = format!("{} {}", req.method, route.template());
    if route.needs_api_key() || st.limiter.has_own_limit(&endpoint) {
        if let Err(wait) = st.limiter.try_acquire(&endpoint, now) {
            st.throttled += 1;
            return throttled(wait, st.reads.retry_after_http_date);
        }
    }
    *answer_late =
        *req.method != Method::GET && rng.random::<f64>() < st.faults.drop_after_write_rate;
    st.catalog.advance(now);
    let mut reply = dispatch(st, req, route);
    if st.reads.empty_write_bodies && *req.method != Method::GET && reply.status.is_success() {
        reply.body = None;
    }
    reply
}

/// DRF's throttled answer, plus the exact wait in milliseconds for tests. `http_date`:
/// `Retry-After` as the date when a slot frees rather than in seconds.
fn throttled(wait: Duration, http_date: bool) -> Reply {
    let millis = wait.as_nanos().div_ceil(1_000_000);
    let seconds = millis.div_ceil(1000).max(1);
    let retry_after = if http_date {
        variants::http_date_after(wait, Utc::now())
    } else {
        seconds.to_string()
    };
    Reply::detail(
        StatusCode::TOO_MANY_REQUESTS,
        format!("Request was throttled. Expected available in {seconds} seconds."),
    )
    .with_header(header::RETRY_AFTER, retry_after)
    .with_header(
        HeaderName::from_static("x-sim-retry-after-ms"),
        millis.to_string(),
    )
}

// ---- routing ---------------------------------------------------------------------------------

/// The paths served, with their raw `{id}` (or trigger `{uuid}`) segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route<'a> {
    Contacts,
    ContactSync,
    ContactSyncAll,
    Contact(&'a str),
    AddOperator(&'a str),
    RemoveOperator(&'a str),
    Lists,
    List(&'a str),
    ListSyncContacts(&'a str),
    ListRemoveContacts(&'a str),
    ListRemoveAllContacts(&'a str),
    CustomFields,
    CustomField(&'a str),
    Tags,
    Tag(&'a str),
    Templates,
    Template(&'a str),
    TemplateClone(&'a str),
    TemplateBackToDraft(&'a str),
    TemplateSubmit(&'a str),
    MediaFiles,
    Media(&'a str),
    Tickets,
    Ticket(&'a str),
    Automations,
    Automation(&'a str),
    Campaigns,
    Campaign(&'a str),
    Accounts,
    Account(&'a str),
    AccountCurrentReport(&'a str),
    Agencies,
    Partners,
    PartnerOnboarding,
    Reports,
    /// `GET /reports/detailed/`, the replacement of the deprecated `/reports/`.
    ReportsDetailed,
    /// `GET|POST /channel/`: `POST {"platform": 1}` is the documented replacement of the
    /// removed account onboarding link.
    Channels,
    Roles,
    Role(&'a str),
    RoleAddServiceUser,
    RoleGeneratePrivateKey(&'a str),
    RoleHasPrivateKey(&'a str),
    RoleUpdateRole(&'a str),
    Invitations,
    Invitation(&'a str),
    InvitationSend(&'a str),
    InvitationUpdateRole(&'a str),
    AutomationStart(&'a str),
    AutomationStartBulk(&'a str),
}

impl<'a> Route<'a> {
    /// Matches like DRF's router: trailing slash required, action routes before `{id}` routes,
    /// and an `{id}` is any segment without `/` or `.` (a non-numeric one is a 404 later).
    /// `POST /accounts/{id}/onboarding/` was removed upstream, so it is no route (404).
    fn resolve(path: &'a str) -> Option<Self> {
        if let Some(rest) = path.strip_prefix(START_PREFIX) {
            return Self::resolve_start(rest);
        }
        let rest = path.strip_prefix(API_PREFIX)?.strip_suffix('/')?;
        let segments: Vec<&str> = rest.split('/').collect();
        let id = |s: &str| !s.is_empty() && !s.contains('.');
        Some(match segments.as_slice() {
            ["contacts"] => Self::Contacts,
            ["contacts", "sync"] => Self::ContactSync,
            ["contacts", "sync_all"] => Self::ContactSyncAll,
            ["contacts", i] if id(i) => Self::Contact(i),
            ["contacts", i, "add_operator"] if id(i) => Self::AddOperator(i),
            ["contacts", i, "remove_operator"] if id(i) => Self::RemoveOperator(i),
            ["lists"] => Self::Lists,
            ["lists", i] if id(i) => Self::List(i),
            ["lists", i, "sync_contacts"] if id(i) => Self::ListSyncContacts(i),
            ["lists", i, "remove_contacts"] if id(i) => Self::ListRemoveContacts(i),
            ["lists", i, "remove_all_contacts"] if id(i) => Self::ListRemoveAllContacts(i),
            ["custom-fields"] => Self::CustomFields,
            ["custom-fields", i] if id(i) => Self::CustomField(i),
            ["tags"] => Self::Tags,
            ["tags", i] if id(i) => Self::Tag(i),
            ["templates"] => Self::Templates,
            ["templates", i] if id(i) => Self::Template(i),
            ["templates", i, "clone"] if id(i) => Self::TemplateClone(i),
            ["templates", i, "back_to_draft"] if id(i) => Self::TemplateBackToDraft(i),
            ["templates", i, "submit"] if id(i) => Self::TemplateSubmit(i),
            ["media"] => Self::MediaFiles,
            ["media", i] if id(i) => Self::Media(i),
            ["tickets"] => Self::Tickets,
            ["tickets", i] if id(i) => Self::Ticket(i),
            ["automations"] => Self::Automations,
            ["automations", i] if id(i) => Self::Automation(i),
            ["campaigns"] => Self::Campaigns,
            ["campaigns", i] if id(i) => Self::Campaign(i),
            ["accounts"] => Self::Accounts,
            ["accounts", i] if id(i) => Self::Account(i),
            ["accounts", i, "current_report"] if id(i) => Self::AccountCurrentReport(i),
            ["agencies"] => Self::Agencies,
            ["partners"] => Self::Partners,
            ["partners", "onboarding"] => Self::PartnerOnboarding,
            ["reports"] => Self::Reports,
            ["reports", "detailed"] => Self::ReportsDetailed,
            ["channel"] => Self::Channels,
            ["roles"] => Self::Roles,
            ["roles", "add_service_user"] => Self::RoleAddServiceUser,
            ["roles", i] if id(i) => Self::Role(i),
            ["roles", i, "generate_private_key"] if id(i) => Self::RoleGeneratePrivateKey(i),
            ["roles", i, "has_private_key"] if id(i) => Self::RoleHasPrivateKey(i),
            ["roles", i, "update_role"] if id(i) => Self::RoleUpdateRole(i),
            ["invitations"] => Self::Invitations,
            ["invitations", i] if id(i) => Self::Invitation(i),
            ["invitations", i, "send"] if id(i) => Self::InvitationSend(i),
            ["invitations", i, "update_role"] if id(i) => Self::InvitationUpdateRole(i),
            _ => return None,
        })
    }

    /// `{uuid}/` or `{uuid}/bulk/` after `/wh/ap/`.
    fn resolve_start(rest: &'a str) -> Option<Self> {
        let segments: Vec<&str> = rest.strip_suffix('/')?.split('/').collect();
        let uuid = |s: &str| !s.is_empty() && !s.contains('.');
        match segments.as_slice() {
            [u] if uuid(u) => Some(Self::AutomationStart(u)),
            [u, "bulk"] if uuid(u) => Some(Self::AutomationStartBulk(u)),
            _ => None,
        }
    }

    /// Automation starts authenticate with the trigger's `secret` instead of the API key.
    fn needs_api_key(self) -> bool {
        !matches!(
            self,
            Self::AutomationStart(_) | Self::AutomationStartBulk(_)
        )
    }

    /// The path template naming the endpoint for rate limiting: relative to `/api/1` for API
    /// routes, absolute (`/wh/ap/{uuid}/`) for automation starts.
    fn template(self) -> &'static str {
        match self {
            Self::Contacts => "/contacts/",
            Self::ContactSync => "/contacts/sync/",
            Self::ContactSyncAll => "/contacts/sync_all/",
            Self::Contact(_) => "/contacts/{id}/",
            Self::AddOperator(_) => "/contacts/{id}/add_operator/",
            Self::RemoveOperator(_) => "/contacts/{id}/remove_operator/",
            Self::Lists => "/lists/",
            Self::List(_) => "/lists/{id}/",
            Self::ListSyncContacts(_) => "/lists/{id}/sync_contacts/",
            Self::ListRemoveContacts(_) => "/lists/{id}/remove_contacts/",
            Self::ListRemoveAllContacts(_) => "/lists/{id}/remove_all_contacts/",
            Self::CustomFields => "/custom-fields/",
            Self::CustomField(_) => "/custom-fields/{id}/",
            Self::Tags => "/tags/",
            Self::Tag(_) => "/tags/{id}/",
            Self::Templates => "/templates/",
            Self::Template(_) => "/templates/{id}/",
            Self::TemplateClone(_) => "/templates/{id}/clone/",
            Self::TemplateBackToDraft(_) => "/templates/{id}/back_to_draft/",
            Self::TemplateSubmit(_) => "/templates/{id}/submit/",
            Self::MediaFiles => "/media/",
            Self::Media(_) => "/media/{id}/",
            Self::Tickets => "/tickets/",
            Self::Ticket(_) => "/tickets/{id}/",
            Self::Automations => "/automations/",
            Self::Automation(_) => "/automations/{id}/",
            Self::Campaigns => "/campaigns/",
            Self::Campaign(_) => "/campaigns/{id}/",
            Self::Accounts => "/accounts/",
            Self::Account(_) => "/accounts/{id}/",
            Self::AccountCurrentReport(_) => "/accounts/{id}/current_report/",
            Self::Agencies => "/agencies/",
            Self::Partners => "/partners/",
            Self::PartnerOnboarding => "/partners/onboarding/",
            Self::Reports => "/reports/",
            Self::ReportsDetailed => "/reports/detailed/",
            Self::Channels => "/channel/",
            Self::Roles => "/roles/",
            Self::Role(_) => "/roles/{id}/",
            Self::RoleAddServiceUser => "/roles/add_service_user/",
            Self::RoleGeneratePrivateKey(_) => "/roles/{id}/generate_private_key/",
            Self::RoleHasPrivateKey(_) => "/roles/{id}/has_private_key/",
            Self::RoleUpdateRole(_) => "/roles/{id}/update_role/",
            Self::Invitations => "/invitations/",
            Self::Invitation(_) => "/invitations/{id}/",
            Self::InvitationSend(_) => "/invitations/{id}/send/",
            Self::InvitationUpdateRole(_) => "/invitations/{id}/update_role/",
            Self::AutomationStart(_) => "/wh/ap/{uuid}/",
            Self::AutomationStartBulk(_) => "/wh/ap/{uuid}/bulk/",
        }
    }

    fn methods(self) -> &'static str {
        match self {
            Self::Contacts
            | Self::Tags
            | Self::Tag(_)
            | Self::TemplateClone(_)
            | Self::Automations
            | Self::Automation(_)
            | Self::Campaigns
            | Self::Accounts
            | Self::Account(_)
            | Self::AccountCurrentReport(_)
            | Self::Agencies
            | Self::Partners
            | Self::Reports
            | Self::ReportsDetailed
            | Self::Roles
            | Self::RoleHasPrivateKey(_)
            | Self::Invitations
            | Self::Invitation(_) => "GET",
            Self::Contact(_)
            | Self::CustomField(_)
            | Self::Template(_)
            | Self::Media(_)
            | Self::Ticket(_) => "GET, PATCH, DELETE",
            Self::Lists
            | Self::CustomFields
            | Self::Templates
            | Self::MediaFiles
            | Self::Tickets
            | Self::Channels => "GET, POST",
            Self::List(_) | Self::Role(_) => "GET, DELETE",
            Self::Campaign(_) => "GET, PATCH",
            Self::ContactSync
            | Self::ContactSyncAll
            | Self::AddOperator(_)
            | Self::RemoveOperator(_)
            | Self::ListSyncContacts(_)
            | Self::ListRemoveContacts(_)
            | Self::ListRemoveAllContacts(_)
            | Self::TemplateBackToDraft(_)
            | Self::TemplateSubmit(_)
            | Self::PartnerOnboarding
            | Self::RoleAddServiceUser
            | Self::RoleGeneratePrivateKey(_)
            | Self::RoleUpdateRole(_)
            | Self::InvitationSend(_)
            | Self::InvitationUpdateRole(_)
            | Self::AutomationStart(_)
            | Self::AutomationStartBulk(_) => "POST",
        }
    }

    fn is_ticket(self) -> bool {
        matches!(self, Self::Tickets | Self::Ticket(_))
    }
}

fn dispatch(st: &mut SimState, req: &ApiRequest<'_>, route: Route<'_>) -> Reply {
    let method = req.method.as_str();
    let allowed = route.methods().split(", ").any(|m| m == method);
    let outcome = if !allowed {
        Err(Reply::detail(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("Method \"{method}\" not allowed."),
        )
        .with_header(header::ALLOW, route.methods().to_owned()))
    } else if route.is_ticket() && !st.settings.tickets_enabled {
        Err(content::tickets_disabled(st))
    } else {
        handle(st, req, route)
    };
    let reply = outcome.unwrap_or_else(|reply| reply);
    if st.writes.empty_write_bodies && method != "GET" && reply.status.is_success() {
        return Reply::empty(reply.status);
    }
    reply
}

/// Runs the handler of an allowed method on `route`.
fn handle(st: &mut SimState, req: &ApiRequest<'_>, route: Route<'_>) -> Outcome {
    match (req.method.as_str(), route) {
        ("GET", Route::Contacts) => list_contacts(st, req),
        ("GET", Route::Contact(id)) => get_contact(st, id),
        ("PATCH", Route::Contact(id)) => patch_contact(st, req, id),
        ("DELETE", Route::Contact(id)) => delete_contact(st, id),
        (_, Route::ContactSync) => sync_contact(st, req),
        (_, Route::ContactSyncAll) => sync_all(st, req),
        (_, Route::AddOperator(id) | Route::RemoveOperator(id)) => operator(st, req, id),
        ("GET", Route::Lists) => list_lists(st, req),
        ("POST", Route::Lists) => create_list(st, req),
        ("GET", Route::List(id)) => get_list(st, id),
        ("DELETE", Route::List(id)) => delete_list(st, id),
        (_, Route::ListSyncContacts(id)) => list_sync_contacts(st, req, id),
        (_, Route::ListRemoveContacts(id)) => list_remove_contacts(st, req, id),
        (_, Route::ListRemoveAllContacts(id)) => list_remove_all_contacts(st, id),
        ("GET", Route::CustomFields) => list_custom_fields(st, req),
        ("POST", Route::CustomFields) => create_custom_field(st, req),
        ("GET", Route::CustomField(id)) => get_custom_field(st, id),
        ("PATCH", Route::CustomField(id)) => patch_custom_field(st, req, id),
        ("DELETE", Route::CustomField(id)) => delete_custom_field(st, id),
        (_, Route::Tags) => content::list_tags(st, req),
        (_, Route::Tag(id)) => content::get_tag(st, id),
        ("GET", Route::Templates) => content::list_templates(st, req),
        ("POST", Route::Templates) => content::create_template(st, req),
        ("GET", Route::Template(id)) => content::get_template(st, id),
        ("PATCH", Route::Template(id)) => content::patch_template(st, req, id),
        ("DELETE", Route::Template(id)) => content::delete_template(st, req, id),
        (_, Route::TemplateClone(id)) => content::clone_template(st, id),
        (_, Route::TemplateBackToDraft(id)) => content::template_back_to_draft(st, id),
        (_, Route::TemplateSubmit(id)) => content::submit_template(st, id),
        ("GET", Route::MediaFiles) => content::list_media(st, req),
        ("POST", Route::MediaFiles) => content::create_media(st, req),
        ("GET", Route::Media(id)) => content::get_media(st, id),
        ("PATCH", Route::Media(id)) => content::patch_media(st, req, id),
        ("DELETE", Route::Media(id)) => content::delete_media(st, id),
        ("GET", Route::Tickets) => content::list_tickets(st, req),
        ("POST", Route::Tickets) => content::create_ticket(st, req),
        ("GET", Route::Ticket(id)) => content::get_ticket(st, id),
        ("PATCH", Route::Ticket(id)) => content::patch_ticket(st, req, id),
        ("DELETE", Route::Ticket(id)) => content::delete_ticket(st, id),
        (_, Route::Automations) => automations::list_automations(st, req),
        (_, Route::Automation(id)) => automations::get_automation(st, req, id),
        (_, Route::Campaigns) => automations::list_campaigns(st, req),
        ("GET", Route::Campaign(id)) => automations::get_campaign(st, id),
        ("PATCH", Route::Campaign(id)) => automations::patch_campaign(st, req, id),
        (_, Route::AutomationStart(uuid)) => automations::start(st, req, uuid),
        (_, Route::AutomationStartBulk(uuid)) => automations::start_bulk(st, req, uuid),
        (_, Route::Accounts) => admin::list_accounts(st),
        (_, Route::Account(id)) => admin::get_account(st, id),
        (_, Route::AccountCurrentReport(id)) => admin::current_report(st, id),
        (_, Route::Agencies) => admin::list_agencies(st),
        (_, Route::Partners) => admin::list_partners(st, req),
        (_, Route::PartnerOnboarding) => admin::partner_onboarding(st, req),
        (_, Route::Reports) => match st.writes.reports_gone {
            Some(status) => Err(Reply::detail(
                StatusCode::from_u16(status).unwrap_or(StatusCode::GONE),
                "This endpoint was removed; use /reports/detailed/.",
            )),
            None => admin::reports(st, req),
        },
        (_, Route::ReportsDetailed) => admin::reports(st, req),
        (method, Route::Channels) => admin::channels(st, req, method),
        (_, Route::Roles) => admin::list_roles(st, req),
        ("GET", Route::Role(id)) => admin::get_role(st, id),
        ("DELETE", Route::Role(id)) => admin::delete_role(st, id),
        (_, Route::RoleAddServiceUser) => admin::add_service_user(st, req),
        (_, Route::RoleGeneratePrivateKey(id)) => admin::generate_private_key(st, id),
        (_, Route::RoleHasPrivateKey(id)) => admin::has_private_key(st, id),
        (_, Route::RoleUpdateRole(id)) => admin::update_role(st, req, id),
        (_, Route::Invitations) => admin::list_invitations(st, req),
        (_, Route::Invitation(id)) => admin::get_invitation(st, id),
        (_, Route::InvitationSend(id)) => admin::send_invitation(st, id),
        (_, Route::InvitationUpdateRole(id)) => admin::update_invitation_role(st, req, id),
        // Every (method, route) pair `methods` allows is matched above.
        (method, _) => Err(Reply::detail(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("Method \"{method}\" not allowed."),
        )),
    }
}

/// A path `{id}`: DRF answers 404 for one that is not a number.
pub(super) fn lookup(raw: &str) -> Result<i64, Reply> {
    raw.parse().map_err(|_| Reply::not_found())
}

pub(super) fn invalid_page() -> Reply {
    Reply::detail(StatusCode::NOT_FOUND, "Invalid page.")
}

pub(super) fn field_errors(errors: FieldErrors) -> Result<(), Reply> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Reply::bad_request(Value::Object(errors)))
    }
}

/// Case-insensitive: does every search term occur in one of `fields`?
pub(super) fn search_matches(terms: &[String], fields: &[&str]) -> bool {
    terms.iter().all(|term| {
        fields
            .iter()
            .any(|field| field.to_lowercase().contains(term.as_str()))
    })
}

/// Paginates `items` as asked in the request, rendering only the page returned.
pub(super) fn paginated<T>(
    st: &SimState,
    req: &ApiRequest<'_>,
    query: &Query,
    items: &[T],
    render: impl Fn(&T) -> Value,
) -> Outcome {
    paginated_with(st, req, query, items, render, Vec::new())
}

/// [`paginated`] in the style the read variants ask for (page numbers, cursor, limit/offset,
/// a bare array), with `odd` items put first on the first page.
fn paginated_with<T>(
    st: &SimState,
    req: &ApiRequest<'_>,
    query: &Query,
    items: &[T],
    render: impl Fn(&T) -> Value,
    mut odd: Vec<Value>,
) -> Outcome {
    let reads = &st.reads;
    if reads.bare_arrays {
        odd.extend(items.iter().map(render));
        return Ok(Reply::ok(Value::Array(odd)));
    }
    let url = req.absolute_url();
    let sizes = st.settings.page_sizes;
    let page = match reads.pagination {
        Pagination::PageNumber => Page::select(items.len(), query, sizes, &url),
        Pagination::Cursor => Page::select_cursor(items.len(), query, sizes.default, &url),
        Pagination::LimitOffset => Page::select_offset(items.len(), query, sizes, &url),
    }
    .ok_or_else(invalid_page)?;
    if reads
        .invalid_page_from
        .is_some_and(|n| page.number >= n.max(2))
    {
        return Err(invalid_page());
    }
    if page.number > 1 {
        odd.clear();
    }
    odd.extend(items[page.range.clone()].iter().map(render));
    let mut body = page.envelope(items.len(), odd);
    shape_envelope(reads, req, &mut body);
    Ok(Reply::ok(body))
}

/// The envelope variants: relative or foreign `next` links, `results: null`, no `count` with
/// a cursor.
fn shape_envelope(reads: &ReadVariants, req: &ApiRequest<'_>, body: &mut Value) {
    let Some(map) = body.as_object_mut() else {
        return;
    };
    let own = req.origin();
    for key in ["next", "previous"] {
        if let Some(Value::String(link)) = map.get_mut(key) {
            if let Some(other) = &reads.next_origin {
                *link = link.replacen(&own, other.trim_end_matches('/'), 1);
            } else if reads.relative_next {
                *link = link.replacen(&own, "", 1);
            }
        }
    }
    if reads.pagination == Pagination::Cursor {
        map.remove("count");
    }
    let empty = map
        .get("results")
        .and_then(Value::as_array)
        .is_some_and(Vec::is_empty);
    if reads.null_empty_results && empty {
        map.insert("results".to_owned(), Value::Null);
    }
}

/// [`paginated`] with the page size read from `size_key`.
pub(super) fn paginated_sized_by<T>(
    st: &SimState,
    req: &ApiRequest<'_>,
    query: &Query,
    items: &[T],
    size_key: &str,
    render: impl Fn(&T) -> Value,
) -> Outcome {
    let page = Page::select_sized_by(
        items.len(),
        query,
        st.settings.page_sizes,
        &req.absolute_url(),
        size_key,
    )
    .ok_or_else(invalid_page)?;
    let results = items[page.range.clone()].iter().map(render).collect();
    Ok(Reply::ok(page.envelope(items.len(), results)))
}

// ---- contacts --------------------------------------------------------------------------------

fn contact_filter(st: &SimState, query: &Query) -> Result<ContactFilter, Reply> {
    let owned = |key: &str| query.filter(key).map(str::to_owned);
    let mut errors = FieldErrors::new();
    let status = owned("status");
    if let Some(status) = status.as_deref() {
        if !validate::CONTACT_STATUSES.contains(&status) {
            validate::add_error(
                &mut errors,
                "status",
                format!("Select a valid choice. {status} is not one of the available choices."),
            );
        }
    }
    let tag = query.filter("tag").map(str::to_owned);
    if let Some(tag) = &tag {
        let known = tag
            .trim()
            .parse::<i64>()
            .ok()
            .and_then(|id| st.catalog.tags.get(id))
            .is_some();
        if !known {
            validate::add_error(
                &mut errors,
                "tag",
                "Select a valid choice. That choice is not one of the available choices.",
            );
        }
    }
    field_errors(errors)?;
    let is_blocked = match query
        .filter("is_blocked")
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("true" | "1") => Some(true),
        Some("false" | "0") => Some(false),
        _ => None,
    };
    Ok(ContactFilter {
        search: query.search_terms(),
        phone: owned("phone"),
        email: owned("email"),
        first_name: owned("first_name"),
        last_name: owned("last_name"),
        language: owned("language"),
        status,
        is_blocked,
        tagged: tag.is_some(),
    })
}

fn list_contacts(st: &SimState, req: &ApiRequest<'_>) -> Outcome {
    let query = Query::parse(req.query);
    let filter = contact_filter(st, &query)?;
    let found = st.store.find_contacts(&filter);
    if st.reads.odd_records {
        return paginated_with(
            st,
            req,
            &query,
            &found,
            |c| variants::quirky_contact(st.store.contact_json(c)),
            variants::odd_contacts(),
        );
    }
    paginated(st, req, &query, &found, |c| st.store.contact_json(c))
}

pub(super) fn contact_json(st: &SimState, id: i64) -> Result<Value, Reply> {
    st.store
        .contact(id)
        .map(|c| st.store.contact_json(c))
        .ok_or_else(Reply::not_found)
}

fn get_contact(st: &SimState, id: &str) -> Outcome {
    contact_json(st, lookup(id)?).map(Reply::ok)
}

fn sync_contact(st: &mut SimState, req: &ApiRequest<'_>) -> Outcome {
    let body = req.json_body()?;
    let unknown = st.settings.unknown_custom_field;
    let input = st
        .store
        .validate_contact(&body, PhoneRule::Required, unknown, None)
        .map_err(Reply::bad_request)?;
    let id = st.store.upsert(&input, unknown, Utc::now()).id();
    contact_json(st, id).map(Reply::ok)
}

fn patch_contact(st: &mut SimState, req: &ApiRequest<'_>, id: &str) -> Outcome {
    let id = lookup(id)?;
    st.store.contact(id).ok_or_else(Reply::not_found)?;
    let body = req.json_body()?;
    let unknown = st.settings.unknown_custom_field;
    let input = st
        .store
        .validate_contact(&body, PhoneRule::Optional, unknown, Some(id))
        .map_err(Reply::bad_request)?;
    st.store.apply(id, &input, unknown, Utc::now());
    contact_json(st, id).map(Reply::ok)
}

fn delete_contact(st: &mut SimState, id: &str) -> Outcome {
    if st.store.delete_contact(lookup(id)?) {
        Ok(Reply::no_content())
    } else {
        Err(Reply::not_found())
    }
}

/// The items of a bulk write, or the message saying why there are none to take.
fn batch_items(value: &Value) -> Result<&[Value], String> {
    batch_items_max(value, BULK_MAX)
}

/// [`batch_items`] with another cap.
pub(super) fn batch_items_max(value: &Value, max: usize) -> Result<&[Value], String> {
    match value {
        Value::Array(items) if items.is_empty() => Err(validate::MSG_EMPTY_LIST.to_owned()),
        Value::Array(items) if items.len() > max => Err(validate::too_many_message(max)),
        Value::Array(items) => Ok(items),
        Value::Null => Err(validate::MSG_NULL.to_owned()),
        other => Err(validate::not_a_list_message(other)),
    }
}

/// Validates every item of a bulk write; all or nothing. The error holds one entry per item,
/// `{}` for the good ones.
pub(super) fn validate_batch(st: &SimState, items: &[Value]) -> Result<Vec<ContactInput>, Value> {
    let unknown = st.settings.unknown_custom_field;
    let results: Vec<Result<ContactInput, Value>> = items
        .iter()
        .map(|item| {
            st.store
                .validate_contact(item, PhoneRule::Required, unknown, None)
        })
        .collect();
    if results.iter().all(Result::is_ok) {
        Ok(results.into_iter().flatten().collect())
    } else {
        Err(Value::Array(
            results
                .into_iter()
                .map(|r| r.err().unwrap_or_else(|| json!({})))
                .collect(),
        ))
    }
}

pub(super) struct BatchOutcome {
    created: usize,
    updated: usize,
    pub ids: Vec<i64>,
}

pub(super) fn upsert_batch(st: &mut SimState, inputs: &[ContactInput]) -> BatchOutcome {
    let unknown = st.settings.unknown_custom_field;
    let now = Utc::now();
    let mut outcome = BatchOutcome {
        created: 0,
        updated: 0,
        ids: Vec::with_capacity(inputs.len()),
    };
    for input in inputs {
        match st.store.upsert(input, unknown, now) {
            super::state::Upserted::Created(id) => {
                outcome.created += 1;
                outcome.ids.push(id);
            }
            super::state::Upserted::Updated(id) => {
                outcome.updated += 1;
                outcome.ids.push(id);
            }
        }
    }
    outcome
}

fn sync_all(st: &mut SimState, req: &ApiRequest<'_>) -> Outcome {
    let body = req.json_body()?;
    let items =
        batch_items(&body).map_err(|message| Reply::detail(StatusCode::BAD_REQUEST, message))?;
    let inputs = validate_batch(st, items).map_err(Reply::bad_request)?;
    let done = upsert_batch(st, &inputs);
    Ok(Reply::ok(
        json!({"created": done.created, "updated": done.updated}),
    ))
}

fn operator(st: &SimState, req: &ApiRequest<'_>, id: &str) -> Outcome {
    st.store.contact(lookup(id)?).ok_or_else(Reply::not_found)?;
    let body = req.json_object()?;
    let mut errors = FieldErrors::new();
    let email = validate::required_text(&body, "email", true, &mut errors);
    field_errors(errors)?;
    let email = email.unwrap_or_default();
    if st
        .settings
        .operators
        .iter()
        .any(|operator| operator.eq_ignore_ascii_case(&email))
    {
        Ok(Reply::ok(json!({})))
    } else {
        Err(Reply::bad_request(json!({
            "code": "spoki::3004",
            "detail": "No operator found with this email",
        })))
    }
}

// ---- lists -----------------------------------------------------------------------------------

fn existing_list(st: &SimState, id: &str) -> Result<i64, Reply> {
    let id = lookup(id)?;
    st.store
        .list(id)
        .map(|list| list.id)
        .ok_or_else(Reply::not_found)
}

fn list_lists(st: &SimState, req: &ApiRequest<'_>) -> Outcome {
    let query = Query::parse(req.query);
    let terms = query.search_terms();
    let lists: Vec<_> = st
        .store
        .lists()
        .filter(|list| search_matches(&terms, &[&list.name]))
        .collect();
    paginated(st, req, &query, &lists, |list| list.to_json())
}

fn create_list(st: &mut SimState, req: &ApiRequest<'_>) -> Outcome {
    let body = req.json_object()?;
    let mut errors = FieldErrors::new();
    let name = validate::required_text(&body, "name", true, &mut errors);
    let color = match body.get("color") {
        None | Some(Value::Null) => None,
        Some(Value::String(color)) => Some(color.clone()),
        Some(_) => {
            validate::add_error(&mut errors, "color", validate::MSG_NOT_STRING);
            None
        }
    };
    field_errors(errors)?;
    let list = st
        .store
        .create_list(&name.unwrap_or_default(), color, Utc::now());
    Ok(Reply::created(list.to_json()))
}

fn get_list(st: &SimState, id: &str) -> Outcome {
    let id = existing_list(st, id)?;
    st.store
        .list(id)
        .map(|list| Reply::ok(list.to_json()))
        .ok_or_else(Reply::not_found)
}

fn delete_list(st: &mut SimState, id: &str) -> Outcome {
    if st.store.delete_list(lookup(id)?) {
        Ok(Reply::no_content())
    } else {
        Err(Reply::not_found())
    }
}

fn list_sync_contacts(st: &mut SimState, req: &ApiRequest<'_>, id: &str) -> Outcome {
    let list_id = existing_list(st, id)?;
    let body = req.json_object()?;
    let items = match body.get("contacts") {
        None => Err(validate::MSG_REQUIRED.to_owned()),
        Some(value) => batch_items(value),
    }
    .map_err(|message| Reply::bad_request(json!({ "contacts": [message] })))?;
    let inputs = validate_batch(st, items)
        .map_err(|errors| Reply::bad_request(json!({ "contacts": errors })))?;
    let done = upsert_batch(st, &inputs);
    let added = st.store.add_members(list_id, done.ids);
    Ok(Reply::ok(json!({
        "created": done.created,
        "updated": done.updated,
        "added": added,
    })))
}

fn list_remove_contacts(st: &mut SimState, req: &ApiRequest<'_>, id: &str) -> Outcome {
    let list_id = existing_list(st, id)?;
    let body = req.json_object()?;
    let mut errors = FieldErrors::new();
    let ids = validate::int_list(&body, "ids", &mut errors);
    let phones = validate::string_list(&body, "phones", &mut errors);
    let emails = validate::string_list(&body, "emails", &mut errors);
    field_errors(errors)?;
    st.store.remove_members(list_id, &ids, &phones, &emails);
    Ok(Reply::ok(json!({})))
}

fn list_remove_all_contacts(st: &mut SimState, id: &str) -> Outcome {
    let list_id = existing_list(st, id)?;
    st.store.clear_list(list_id);
    Ok(Reply::ok(json!({})))
}

// ---- custom fields ---------------------------------------------------------------------------

fn existing_custom_field(st: &SimState, id: &str) -> Result<i64, Reply> {
    let id = lookup(id)?;
    st.store
        .custom_field(id)
        .map(|field| field.id)
        .ok_or_else(Reply::not_found)
}

fn custom_field_reply(st: &SimState, id: i64) -> Outcome {
    st.store
        .custom_field(id)
        .map(|field| Reply::ok(field.to_json()))
        .ok_or_else(Reply::not_found)
}

fn list_custom_fields(st: &SimState, req: &ApiRequest<'_>) -> Outcome {
    let query = Query::parse(req.query);
    let terms = query.search_terms();
    let fields: Vec<_> = st
        .store
        .custom_fields()
        .filter(|field| search_matches(&terms, &[&field.label, &field.code]))
        .collect();
    let odd = if st.reads.odd_records {
        variants::odd_custom_fields()
    } else {
        Vec::new()
    };
    paginated_with(st, req, &query, &fields, |field| field.to_json(), odd)
}

fn create_custom_field(st: &mut SimState, req: &ApiRequest<'_>) -> Outcome {
    if let Some(status) = st.writes.custom_field_create_failures.pop_front() {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        return Err(Reply::detail(status, "Temporarily refused."));
    }
    let body = req.json_body()?;
    let input = validate::custom_field_input(&body).map_err(Reply::bad_request)?;
    if st.store.field_by_code(&input.code).is_some() {
        return Err(Reply::bad_request(st.writes.duplicate_wording.body()));
    }
    let field = st
        .store
        .try_create_custom_field(input)
        .map_err(Reply::bad_request)?;
    Ok(Reply::created(field.to_json()))
}

fn get_custom_field(st: &SimState, id: &str) -> Outcome {
    custom_field_reply(st, existing_custom_field(st, id)?)
}

fn patch_custom_field(st: &mut SimState, req: &ApiRequest<'_>, id: &str) -> Outcome {
    let id = existing_custom_field(st, id)?;
    let body = req.json_object()?;
    let mut errors = FieldErrors::new();
    // Only the label can change; every other key is read-only and ignored, as DRF does.
    let label = validate::required_text(&body, "label", false, &mut errors);
    field_errors(errors)?;
    if let Some(label) = label {
        st.store.relabel_custom_field(id, label);
    }
    custom_field_reply(st, id)
}

fn delete_custom_field(st: &mut SimState, id: &str) -> Outcome {
    let id = lookup(id)?;
    if st.store.custom_field(id).is_some() && st.catalog.custom_field_in_use(id) {
        return Err(Reply::detail(
            StatusCode::BAD_REQUEST,
            "This custom field is used by an automation and cannot be deleted.",
        ));
    }
    if st.store.delete_custom_field(id, Utc::now()) {
        Ok(Reply::no_content())
    } else {
        Err(Reply::not_found())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_resolve_like_drf() {
        assert_eq!(Route::resolve("/api/1/contacts/"), Some(Route::Contacts));
        assert_eq!(
            Route::resolve("/api/1/contacts/sync/"),
            Some(Route::ContactSync)
        );
        assert_eq!(
            Route::resolve("/api/1/contacts/42/"),
            Some(Route::Contact("42"))
        );
        assert_eq!(
            Route::resolve("/api/1/contacts/abc/"),
            Some(Route::Contact("abc"))
        );
        assert_eq!(
            Route::resolve("/api/1/lists/7/sync_contacts/"),
            Some(Route::ListSyncContacts("7"))
        );
        assert_eq!(Route::resolve("/api/1/contacts"), None);
        assert_eq!(Route::resolve("/api/1/contacts//"), None);
        assert_eq!(Route::resolve("/api/1/contacts/1.json/"), None);
        assert_eq!(Route::resolve("/api/1/tags/"), Some(Route::Tags));
        assert_eq!(
            Route::resolve("/api/1/roles/add_service_user/"),
            Some(Route::RoleAddServiceUser)
        );
        assert_eq!(Route::resolve("/api/1/roles/3/"), Some(Route::Role("3")));
        assert_eq!(Route::resolve("/api/1/accounts/1/onboarding/"), None);
        assert_eq!(
            Route::resolve("/wh/ap/abc-def/"),
            Some(Route::AutomationStart("abc-def"))
        );
        assert_eq!(
            Route::resolve("/wh/ap/abc-def/bulk/"),
            Some(Route::AutomationStartBulk("abc-def"))
        );
        assert_eq!(Route::resolve("/wh/ap/abc-def"), None);
        assert_eq!(Route::resolve("/api/1/wh/ap/x/"), None);
        assert_eq!(Route::resolve("/contacts/"), None);
    }

    #[test]
    fn throttled_rounds_up() {
        let reply = throttled(Duration::from_micros(1_000_500), false);
        let header = |name: &str| {
            reply
                .headers
                .iter()
                .find(|(n, _)| n.as_str() == name)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(header("retry-after").as_deref(), Some("2"));
        assert_eq!(header("x-sim-retry-after-ms").as_deref(), Some("1001"));
        assert_eq!(
            reply.body,
            Some(json!({"detail": "Request was throttled. Expected available in 2 seconds."}))
        );
        let short = throttled(Duration::from_millis(3), false);
        assert_eq!(short.headers[0].1, "1");
    }

    #[test]
    fn throttled_can_say_when_as_an_http_date() {
        let reply = throttled(Duration::from_secs(2), true);
        let date = &reply.headers[0].1;
        let at = chrono::DateTime::parse_from_rfc2822(date).expect("an IMF-fixdate");
        let ahead = at.timestamp() - Utc::now().timestamp();
        assert!((1..=3).contains(&ahead), "{date} is {ahead} s ahead");
        assert!(date.ends_with(" GMT"), "{date}");
    }
}
