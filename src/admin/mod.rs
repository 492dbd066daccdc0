//! The admin HTTP API (docs/admin-api.md): JSON over HTTP on `admin.listen`, every route but
//! `/healthz` behind `Authorization: Bearer <admin.token>`, compared in constant time.
//! Errors are `{"error": "..."}`; no answer or log line carries a secret.

pub mod metrics;

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Notify;

use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use subtle::ConstantTimeEq;

use crate::commands::{Commands, SubmitError, Submitted};
use crate::listener;
use crate::reverse::Mirror;
use crate::runtime::reload::Reloader;
use crate::store::{RejectFilter, STATUSES, Store, StoreError};

/// Most rows a list route returns when no `limit` is given, and at most.
const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1000;

/// What the admin API may start elsewhere: a pull now, a look at the deletions just
/// confirmed. Narrow handles, so the admin API never holds the Spoki client.
#[derive(Clone, Debug)]
pub struct Triggers {
    pub pull_now: Arc<Notify>,
    pub deletes_wake: Arc<Notify>,
}

impl Triggers {
    pub fn of(mirror: &Mirror) -> Triggers {
        Triggers {
            pull_now: Arc::clone(&mirror.pull_now),
            deletes_wake: Arc::clone(&mirror.deletes_wake),
        }
    }
}

#[derive(Clone)]
pub struct AdminState {
    store: Store,
    commands: Commands,
    triggers: Triggers,
    reloader: Arc<Reloader>,
    started: Instant,
}

impl AdminState {
    /// The token is kept as its SHA-256 digest (`Reloader::admin_token`): comparing digests
    /// takes the same time whatever the length of the token offered.
    pub fn new(
        store: Store,
        commands: Commands,
        triggers: Triggers,
        reloader: Arc<Reloader>,
    ) -> AdminState {
        AdminState {
            store,
            commands,
            triggers,
            reloader,
            started: Instant::now(),
        }
    }
}

/// The largest admin request body (a 500-contact `bulk_sync_contacts` is about 0.2 MiB).
pub const BODY_LIMIT: usize = 2 * 1024 * 1024;

/// The largest `params` of a command, as JSON text.
pub const PARAMS_LIMIT: usize = 1024 * 1024;

/// The admin routes, hardened (`listener::harden`); the token is checked before a body is
/// read.
pub fn router(state: AdminState, limits: listener::Limits) -> Router {
    let routes = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(prometheus))
        .route("/v1/status", get(status))
        .route("/v1/commands", post(submit).get(list_commands))
        .route("/v1/commands/{id}", get(get_command))
        .route("/v1/rejects", get(rejects))
        .route("/v1/sync/pull", post(pull))
        .route("/v1/reload", post(reload))
        .route("/v1/sync/deletes/confirm", post(confirm_deletes))
        .route("/v1/sync/deletes/cancel", post(cancel_deletes))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);
    listener::harden(routes, limits)
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .with_state(state)
}

/// An error answer: `{"error": message}` with a status.
pub struct ApiError {
    status: StatusCode,
    body: Value,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            body: json!({ "error": message.into() }),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        if let StoreError::Halted(reason) = &e {
            return ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not accepting input: {reason}"),
            );
        }
        tracing::error!(error = %e, "admin API: database error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "database error; see the daemon's log",
        )
    }
}

async fn require_token(
    State(state): State<AdminState>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Response {
    if request.uri().path() == "/healthz" {
        return next.run(request).await;
    }
    let offered = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let expected = state.reloader.admin_token.get();
    let ok =
        offered.is_some_and(|t| bool::from(crate::runtime::reload::digest(t).ct_eq(&expected)));
    if ok {
        return next.run(request).await;
    }
    let message = if offered.is_some() {
        "invalid bearer token"
    } else {
        "missing Authorization: Bearer <admin.token>"
    };
    let mut response = ApiError::new(StatusCode::UNAUTHORIZED, message).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    response
}

/// 200 `{"status":"ok"}`; 503 with the reason once the daemon stopped accepting input
/// (its database was deleted, replaced or damaged).
async fn healthz(State(state): State<AdminState>) -> Response {
    match state.store.halted() {
        None => Json(json!({"status": "ok"})).into_response(),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "halted", "error": reason})),
        )
            .into_response(),
    }
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this route",
    )
}

async fn prometheus(State(state): State<AdminState>) -> Result<Response, ApiError> {
    let text = metrics::render(&state.store).await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

async fn status(State(state): State<AdminState>) -> Result<Json<Value>, ApiError> {
    let halted = state.store.halted();
    let counts = state.store.status_counts().await?;
    let by_status = state.store.command_counts().await?;
    let count = |s: &str| {
        by_status
            .iter()
            .find(|(status, _)| status == s)
            .map_or(0, |(_, n)| *n)
    };
    let commands: serde_json::Map<String, Value> = STATUSES
        .iter()
        .map(|s| ((*s).to_owned(), Value::from(count(s))))
        .collect();
    let failed = state
        .store
        .command_summaries(Some("failed"), None, 5)
        .await?
        .unwrap_or_default();
    let held: serde_json::Map<String, Value> = state
        .store
        .held_deletes()
        .await?
        .into_iter()
        .map(|(direction, n)| (direction, Value::from(n)))
        .collect();
    let mirror_backlog = state.store.mirror_backlog().await?;
    let recent_files = state.store.recent_files(5).await?;
    // Codes Spoki will not take (or lacks, with creation off): their values are not sent.
    let refused_fields: Vec<Value> = state
        .store
        .failed_custom_fields()
        .await?
        .into_iter()
        .map(|(code, reason)| json!({"code": code, "reason": reason}))
        .collect();
    let settings = state.reloader.current.get();
    let eta = eta_seconds(
        counts.outbox_pending + counts.outbox_inflight,
        settings.batch.single_max_pending,
        settings
            .limit(crate::spoki::actions::Action::BulkSyncContacts)
            .interval(),
        settings
            .limit(crate::spoki::actions::Action::CreateOrUpdateContact)
            .interval(),
    );
    Ok(Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": state.started.elapsed().as_secs(),
        "outbox_pending": counts.outbox_pending,
        "outbox_inflight": counts.outbox_inflight,
        "commands_pending": count("queued") + count("running"),
        "commands": commands,
        "recent_failed_commands": failed.iter().map(|c| json!({
            "id": c.id, "action": c.action, "error": c.error, "finished_at": c.finished_at,
        })).collect::<Vec<_>>(),
        "rejected": counts.rejected,
        "custom_fields_refused": refused_fields,
        "files_processed": counts.files_processed,
        "files_failed": counts.files_failed,
        "last_push_at": counts.last_push_at,
        "last_pull_at": counts.last_pull_at,
        "eta_seconds": eta,
        "recent_files": recent_files,
        "mirror_backlog": mirror_backlog,
        "deletes_held": held,
        "accepting": halted.is_none(),
        "halted_reason": halted,
    })))
}

/// How long the outbox takes to drain under the current limits: one by one through the
/// single-contact budget while few wait, else `ceil(pending / 500)` bulk slots.
pub fn eta_seconds(
    pending: i64,
    single_max: usize,
    bulk_interval: std::time::Duration,
    single_interval: std::time::Duration,
) -> f64 {
    let pending = u64::try_from(pending).unwrap_or(0);
    if pending == 0 {
        0.0
    } else if pending <= single_max as u64 {
        pending as f64 * single_interval.as_secs_f64()
    } else {
        pending.div_ceil(500) as f64 * bulk_interval.as_secs_f64()
    }
}

#[derive(Deserialize)]
struct CommandBody {
    action: String,
    #[serde(default)]
    params: Value,
}

/// The longest `Idempotency-Key` accepted.
const KEY_LIMIT: usize = 255;

/// The `Idempotency-Key` header: absent, or 1 to 255 visible ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let bad = || {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("Idempotency-Key must be 1 to {KEY_LIMIT} visible ASCII characters"),
        )
    };
    let text = value.to_str().map_err(|_| bad())?.trim();
    if text.is_empty() || text.len() > KEY_LIMIT || !text.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad());
    }
    Ok(Some(text.to_owned()))
}

async fn submit(
    State(state): State<AdminState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let body: CommandBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("the body must be {{\"action\": NAME, \"params\": {{...}}}}: {e}"),
        )
    })?;
    let params_bytes = body.params.to_string().len();
    if params_bytes > PARAMS_LIMIT {
        return Err(ApiError {
            status: StatusCode::BAD_REQUEST,
            body: json!({
                "error": format!(
                    "invalid command: params are {params_bytes} bytes of JSON; at most \
                     {PARAMS_LIMIT} (1 MiB) are accepted"
                ),
                "field": "params",
            }),
        });
    }
    match state
        .commands
        .submit_once(&body.action, body.params, key.as_deref())
        .await
    {
        Ok(Submitted::Queued(id)) => Ok((
            StatusCode::ACCEPTED,
            Json(json!({"id": id, "status": "queued"})),
        )
            .into_response()),
        // The first answer again (202), with the command's status now; nothing queued.
        Ok(Submitted::Repeated { id, status }) => Ok((
            StatusCode::ACCEPTED,
            [("idempotent-replayed", "true")],
            Json(json!({"id": id, "status": status})),
        )
            .into_response()),
        Ok(Submitted::KeyReused { id }) => Err(ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            body: json!({
                "error": "this Idempotency-Key was used for a different command; nothing was queued",
                "id": id,
            }),
        }),
        Err(SubmitError::Invalid(e)) => Err(ApiError {
            status: StatusCode::BAD_REQUEST,
            body: json!({"error": format!("invalid command: {e}"), "field": e.field}),
        }),
        Err(SubmitError::Store(e)) => Err(e.into()),
    }
}

async fn get_command(
    State(state): State<AdminState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    match state.store.command(&id).await? {
        Some(record) => Ok(Json(json!(record))),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no command with id {id:?}"),
        )),
    }
}

#[derive(Deserialize)]
struct ListQuery {
    status: Option<String>,
    limit: Option<i64>,
    before: Option<String>,
}

fn limit(given: Option<i64>) -> Result<i64, ApiError> {
    match given {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("limit {n} is outside 1..={MAX_LIMIT}"),
        )),
    }
}

async fn list_commands(
    State(state): State<AdminState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    if let Some(s) = &q.status {
        if !STATUSES.contains(&s.as_str()) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("status {s:?} is not one of {}", STATUSES.join(", ")),
            ));
        }
    }
    let limit = limit(q.limit)?;
    let Some(records) = state
        .store
        .command_summaries(q.status.as_deref(), q.before.as_deref(), limit)
        .await?
    else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "before: no command with id {:?}",
                q.before.unwrap_or_default()
            ),
        ));
    };
    Ok(Json(json!({ "commands": records })))
}

#[derive(Deserialize)]
struct RejectsQuery {
    limit: Option<i64>,
    before: Option<i64>,
    source: Option<String>,
    file: Option<String>,
}

async fn rejects(
    State(state): State<AdminState>,
    Query(q): Query<RejectsQuery>,
) -> Result<Json<Value>, ApiError> {
    let filter = RejectFilter {
        before: q.before,
        source: q.source,
        file: q.file,
    };
    let limit = limit(q.limit)?;
    let rejects = state.store.rejects_page(&filter, limit).await?;
    // A full page may have more behind it: `next` is the query for the following one, and
    // `next_before` its cursor. Filters carry over.
    let last = rejects.last().map(|r| r.id);
    let full = usize::try_from(limit).is_ok_and(|l| rejects.len() >= l);
    let next_before = last.filter(|_| full);
    let next = next_before.map(|before| {
        let mut pairs = vec![("limit", limit.to_string()), ("before", before.to_string())];
        pairs.extend(filter.source.clone().map(|s| ("source", s)));
        pairs.extend(filter.file.clone().map(|f| ("file", f)));
        match reqwest::Url::parse_with_params("http://admin/v1/rejects", &pairs) {
            Ok(url) => format!("/v1/rejects?{}", url.query().unwrap_or_default()),
            Err(_) => "/v1/rejects".to_owned(),
        }
    });
    Ok(Json(
        json!({ "rejects": rejects, "next": next, "next_before": next_before }),
    ))
}

async fn pull(State(state): State<AdminState>) -> Response {
    state.triggers.pull_now.notify_one();
    (
        StatusCode::ACCEPTED,
        Json(json!({"status": "pull started"})),
    )
        .into_response()
}

async fn reload(State(state): State<AdminState>) -> Response {
    crate::runtime::service::notify("RELOADING=1");
    let outcome = state.reloader.reload().await;
    crate::runtime::service::notify("READY=1");
    match outcome {
        Ok(r) => {
            tracing::info!(applied = ?r.applied, need_restart = ?r.need_restart, "configuration reloaded");
            (StatusCode::OK, Json(json!(r))).into_response()
        }
        Err(e) => {
            tracing::error!(problems = %e, "configuration NOT reloaded; the running one stays");
            (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": "configuration not reloaded; the running one stays", "problems": e.problems})),
            )
                .into_response()
        }
    }
}

async fn confirm_deletes(State(state): State<AdminState>) -> Result<Json<Value>, ApiError> {
    let n = state.store.settle_held_deletes(true).await?;
    tracing::warn!(
        deletions = n,
        "held deletions confirmed through the admin API"
    );
    state.triggers.deletes_wake.notify_one();
    Ok(Json(json!({ "confirmed": n })))
}

async fn cancel_deletes(State(state): State<AdminState>) -> Result<Json<Value>, ApiError> {
    let n = state.store.settle_held_deletes(false).await?;
    tracing::warn!(
        deletions = n,
        "held deletions cancelled through the admin API"
    );
    Ok(Json(json!({ "cancelled": n })))
}

#[cfg(test)]
mod tests {
    use super::eta_seconds;
    use std::time::Duration;

    #[test]
    fn eta_follows_the_batching_policy() {
        let (bulk, single) = (Duration::from_secs(60), Duration::from_millis(500));
        assert_eq!(eta_seconds(0, 20, bulk, single), 0.0);
        assert_eq!(eta_seconds(10, 20, bulk, single), 5.0);
        assert_eq!(eta_seconds(21, 20, bulk, single), 60.0);
        assert_eq!(eta_seconds(1234, 20, bulk, single), 180.0);
    }
}
