//! The webhook receiver on `webhooks.listen` (docs/admin-api.md):
//! - `POST /webhooks/contacts`: contacts from other systems, signed per Standard Webhooks;
//!   202 only once they are durably queued, each `webhook-id` applied once.
//! - `POST /webhooks/spoki`: Spoki's own events, signed with `X-Spoki-Signature`, each
//!   `event_uuid` applied once; contact events update the mirror.
//!
//! Signatures are checked on the raw body, in constant time, with a 300 s tolerance. Nothing
//! is stored for a request that fails a check.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tokio::sync::Notify;

use crate::config::{Secret, Settings};
use crate::domain::{ContactFields, ListId, Phone};
use crate::listener::{self, WarnLimiter};
use crate::live::Live;
use crate::normalise::{self, DefaultRegion};
use crate::reverse::{report_conflicts, spoki_contact};
use crate::spoki::ContactRecord;
use crate::store::{Incoming, Store, StoreError};

/// How far a signed timestamp may be from now.
pub const TOLERANCE_SECS: i64 = 300;

/// The largest webhook body.
pub const BODY_LIMIT: usize = 2 * 1024 * 1024;

/// Refused requests: one WARN per route and reason every 10 s, so a flood of unsigned
/// requests cannot fill the log; `spoki_sync_webhook_refused_total{reason}` counts them all.
static REFUSALS: LazyLock<WarnLimiter> =
    LazyLock::new(|| WarnLimiter::new(Duration::from_secs(10)));

type HmacSha256 = Hmac<Sha256>;

#[derive(Clone)]
pub struct WebhookState {
    pub store: Store,
    /// Reloadable keys; a missing one makes its route answer 404.
    pub keys: Live<WebhookKeys>,
    /// The running configuration (region, conflict winner).
    pub settings: Live<Settings>,
    pub batcher_wake: Arc<Notify>,
}

/// The keys of the two webhook routes.
#[derive(Clone, Debug, Default)]
pub struct WebhookKeys {
    /// The decoded key of `webhooks.secret`.
    pub contacts: Option<Arc<Vec<u8>>>,
    pub spoki: Option<Secret>,
}

impl WebhookKeys {
    pub fn from_settings(s: &Settings) -> Result<WebhookKeys, String> {
        let contacts = match &s.webhooks.secret {
            Some(secret) => Some(Arc::new(decode_whsec(secret)?)),
            None => None,
        };
        Ok(WebhookKeys {
            contacts,
            spoki: s.webhooks.spoki_secret.clone(),
        })
    }
}

/// The key of a Standard Webhooks secret: the base64 after `whsec_`.
///
/// # Errors
/// A secret that is not `whsec_<base64>`; the text never includes the secret.
pub fn decode_whsec(secret: &Secret) -> Result<Vec<u8>, String> {
    let text = secret.expose().trim();
    // Trimmed after the prefix too, as the configuration check does (`whsec_ <base64>`).
    let b64 = text.strip_prefix("whsec_").unwrap_or(text).trim();
    B64.decode(b64)
        .map_err(|_| "webhooks.secret: must be whsec_ followed by base64".to_owned())
}

/// The webhook routes, hardened (`listener::harden`: body cap and deadline, JSON errors).
pub fn router(state: WebhookState, limits: listener::Limits) -> Router {
    let routes = Router::new()
        .route("/webhooks/contacts", post(contacts))
        .route("/webhooks/spoki", post(spoki))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such route") })
        .method_not_allowed_fallback(|| async {
            error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this route",
            )
        });
    listener::harden(routes, limits).with_state(state)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// A refused request: its answer, counted by `reason`, logged at most once per 10 s per
/// route and reason with the number held back since.
fn refuse(
    route: &'static str,
    reason: &'static str,
    status: StatusCode,
    message: String,
) -> Response {
    metrics::counter!("spoki_sync_webhook_refused_total", "reason" => reason).increment(1);
    if let Some(more) = REFUSALS.check((route, reason), Instant::now()) {
        tracing::warn!(
            route,
            reason,
            detail = %message,
            more_since_last = more,
            "webhook refused; more refusals like it are counted in \
             spoki_sync_webhook_refused_total and logged at most once per 10 s"
        );
    }
    error(status, message)
}

/// Why a signature check failed, as a metric label: no signature at all, or a wrong one.
fn signature_reason(headers: &HeaderMap, names: &[&str]) -> &'static str {
    if names.iter().any(|n| !headers.contains_key(*n)) {
        "unsigned"
    } else {
        "bad_signature"
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

fn fresh(ts: i64) -> bool {
    // `abs_diff`: a timestamp near i64::MIN must not overflow the subtraction (a panic with
    // overflow checks, and a wrap to "fresh" without them).
    now_secs().abs_diff(ts) <= TOLERANCE_SECS.unsigned_abs()
}

/// Standard Webhooks: `v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>`, possibly
/// several space-separated signatures, any of which may match.
pub fn verify_standard(key: &[u8], headers: &HeaderMap, body: &[u8]) -> Result<String, String> {
    let id = header(headers, "webhook-id").ok_or("missing webhook-id")?;
    let ts_text = header(headers, "webhook-timestamp").ok_or("missing webhook-timestamp")?;
    let signatures = header(headers, "webhook-signature").ok_or("missing webhook-signature")?;
    let ts: i64 = ts_text.parse().map_err(|_| "bad webhook-timestamp")?;
    if !fresh(ts) {
        return Err("webhook-timestamp is outside the 5-minute tolerance".to_owned());
    }
    let mut mac = HmacSha256::new_from_slice(key).map_err(|_| "unusable key")?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(ts_text.as_bytes());
    mac.update(b".");
    mac.update(body);
    let expected = B64.encode(mac.finalize().into_bytes());
    let matched = signatures.split_whitespace().any(|sig| {
        sig.strip_prefix("v1,")
            .is_some_and(|s| bool::from(s.as_bytes().ct_eq(expected.as_bytes())))
    });
    if matched {
        Ok(id.to_owned())
    } else {
        Err("signature does not match".to_owned())
    }
}

/// Spoki: `X-Spoki-Signature: t=<unix seconds>,v2=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
pub fn verify_spoki(secret: &[u8], headers: &HeaderMap, body: &[u8]) -> Result<(), String> {
    let value = header(headers, "x-spoki-signature").ok_or("missing X-Spoki-Signature")?;
    let mut t = None;
    let mut v2 = Vec::new();
    for part in value.split(',') {
        match part.trim().split_once('=') {
            Some(("t", x)) => t = Some(x),
            Some(("v2", x)) => v2.push(x),
            _ => {}
        }
    }
    let t_text = t.ok_or("X-Spoki-Signature has no t=")?;
    let ts: i64 = t_text.parse().map_err(|_| "bad t= in X-Spoki-Signature")?;
    if !fresh(ts) {
        return Err("X-Spoki-Signature timestamp is outside the 300 s tolerance".to_owned());
    }
    let mut mac = HmacSha256::new_from_slice(secret).map_err(|_| "unusable key")?;
    mac.update(t_text.as_bytes());
    mac.update(b".");
    mac.update(body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if v2.iter().any(|sig| {
        bool::from(
            sig.to_ascii_lowercase()
                .as_bytes()
                .ct_eq(expected.as_bytes()),
        )
    }) {
        Ok(())
    } else {
        Err("signature does not match".to_owned())
    }
}

#[derive(Deserialize)]
struct ContactsBody {
    contacts: Vec<IncomingContact>,
    #[serde(default)]
    list_id: Option<i64>,
}

#[derive(Deserialize)]
struct IncomingContact {
    #[serde(default)]
    phone: Option<String>,
    #[serde(default)]
    first_name: Option<String>,
    #[serde(default)]
    last_name: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    language: Option<String>,
    #[serde(default)]
    custom_fields: BTreeMap<String, Value>,
}

fn clean(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

/// A contacts delivery, checked: the list, the accepted contacts (repeats of a phone merged,
/// the later value winning, each with the index of its first appearance) and the refused ones.
#[derive(Debug)]
pub struct Delivery {
    pub list: ListId,
    pub contacts: Vec<(Phone, ContactFields, usize)>,
    pub refused: Vec<Refused>,
}

/// A contact of a delivery that cannot be sent.
#[derive(Debug)]
pub struct Refused {
    pub index: usize,
    pub phone: String,
    pub reason: String,
}

/// Reads a `/webhooks/contacts` body the way the CSV inbox reads rows: phones normalised
/// with `region`, e-mails checked, custom-field names turned into codes.
///
/// # Errors
/// A body that is not `{"contacts": [...], "list_id": optional}`, or a list id that is not
/// positive; the text says which.
pub fn parse_contacts(body: &[u8], region: DefaultRegion) -> Result<Delivery, String> {
    let parsed: ContactsBody =
        serde_json::from_slice(body).map_err(|e| format!("malformed body: {e}"))?;
    let list = match parsed.list_id {
        None => ListId::NONE,
        Some(n) if n > 0 => ListId(n),
        Some(n) => return Err(format!("list_id {n} is not a list id")),
    };
    let mut out = Delivery {
        list,
        contacts: Vec::new(),
        refused: Vec::new(),
    };
    let mut at: HashMap<Phone, usize> = HashMap::new();
    for (index, c) in parsed.contacts.into_iter().enumerate() {
        let raw = c.phone.unwrap_or_default();
        let phone = match normalise::parse_phone(&raw, region) {
            Ok(p) => p,
            Err(issue) => {
                out.refused.push(Refused {
                    index,
                    phone: raw,
                    reason: issue.to_string(),
                });
                continue;
            }
        };
        let email = match clean(c.email) {
            Some(e) => match normalise::normalise_email(&e) {
                Some(ok) => Some(ok),
                None => {
                    out.refused.push(Refused {
                        index,
                        phone: raw,
                        reason: normalise::RowIssue::InvalidEmail(e).to_string(),
                    });
                    continue;
                }
            },
            None => None,
        };
        let custom_fields = c
            .custom_fields
            .into_iter()
            .filter_map(|(code, v)| {
                let text = match v {
                    Value::String(s) => s,
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => return None,
                };
                let code = normalise::custom_field_code(&code);
                (!code.is_empty() && !text.trim().is_empty())
                    .then(|| (code, text.trim().to_owned()))
            })
            .collect();
        let fields = ContactFields {
            first_name: clean(c.first_name),
            last_name: clean(c.last_name),
            email,
            language: clean(c.language),
            custom_fields,
        };
        if let Err(issue) = normalise::check_sizes(&fields) {
            out.refused.push(Refused {
                index,
                phone: raw,
                reason: issue.to_string(),
            });
            continue;
        }
        match at.get(&phone) {
            Some(&slot) => out.contacts[slot].1.overlay(&fields),
            None => {
                at.insert(phone, out.contacts.len());
                out.contacts.push((phone, fields, index));
            }
        }
    }
    Ok(out)
}

/// A `/webhooks/spoki` body.
///
/// # Errors
/// A body that is not an event envelope.
pub fn parse_spoki_event(body: &[u8]) -> Result<SpokiEvent, String> {
    serde_json::from_slice(body).map_err(|e| format!("malformed event: {e}"))
}

async fn contacts(State(state): State<WebhookState>, headers: HeaderMap, body: Bytes) -> Response {
    const ROUTE: &str = "/webhooks/contacts";
    let Some(key) = state.keys.get().contacts else {
        return refuse(
            ROUTE,
            "not_configured",
            StatusCode::NOT_FOUND,
            "webhooks.secret is not configured".into(),
        );
    };
    let id = match verify_standard(&key, &headers, &body) {
        Ok(id) => id,
        Err(message) => {
            let names = ["webhook-id", "webhook-timestamp", "webhook-signature"];
            let reason = signature_reason(&headers, &names);
            return refuse(ROUTE, reason, StatusCode::UNAUTHORIZED, message);
        }
    };
    let region = state.settings.get().csv.default_region;
    let delivery = match parse_contacts(&body, region) {
        Ok(d) => d,
        Err(message) => return refuse(ROUTE, "malformed", StatusCode::BAD_REQUEST, message),
    };
    match queue_contacts(&state, &id, delivery).await {
        Ok(Queued::Accepted(summary)) => {
            state.batcher_wake.notify_one();
            (StatusCode::ACCEPTED, Json(summary)).into_response()
        }
        Ok(Queued::Duplicate) => (
            StatusCode::OK,
            Json(json!({"status": "duplicate", "webhook_id": id})),
        )
            .into_response(),
        Ok(Queued::Refused(reason)) => {
            tracing::warn!(webhook_id = %id, %reason, "contacts webhook refused");
            error(StatusCode::UNPROCESSABLE_ENTITY, reason)
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot queue webhook contacts");
            let why = if let StoreError::Halted(reason) = &e {
                format!("not accepting input: {reason}; nothing was stored, retry later")
            } else if e.cannot_write() {
                "the database cannot be written (disk full or read-only); nothing was stored, \
                 retry later"
                    .to_owned()
            } else {
                "cannot store the contacts now; nothing was stored, retry".to_owned()
            };
            error(StatusCode::SERVICE_UNAVAILABLE, why)
        }
    }
}

/// What became of a contacts delivery.
enum Queued {
    /// Durably queued; the answer's body.
    Accepted(Value),
    /// This id was applied before.
    Duplicate,
    /// Refused whole, nothing stored; why.
    Refused(String),
}

/// Queues the delivery's contacts in one transaction with its id.
async fn queue_contacts(
    state: &WebhookState,
    id: &str,
    delivery: Delivery,
) -> Result<Queued, StoreError> {
    let Delivery {
        list,
        contacts,
        refused,
    } = delivery;
    let mut tx = state.store.begin().await?;
    if !Store::first_delivery(&mut tx, "contacts", id).await? {
        return Ok(Queued::Duplicate);
    }
    let mut rejected = Vec::new();
    for r in &refused {
        let key = format!("{id}#{}", r.index);
        Store::insert_reject(&mut tx, "webhook", &key, &r.phone, &r.reason).await?;
        rejected.push(json!({"index": r.index, "phone": r.phone, "reason": r.reason}));
    }
    let incoming: Vec<Incoming> = contacts
        .into_iter()
        .map(|(phone, fields, index)| Incoming {
            phone,
            fields,
            key: format!("{id}#{index}"),
        })
        .collect();
    let codes: BTreeSet<String> = incoming
        .iter()
        .flat_map(|c| c.fields.custom_fields.keys().cloned())
        .collect();
    let codes: Vec<String> = codes.into_iter().collect();
    let new = Store::new_custom_field_codes(&mut tx, &codes).await?;
    let max_new = state.settings.get().csv.max_new_custom_fields;
    if new > max_new {
        // Nothing stored, the id included: the sender may fix the delivery and send it again.
        return Ok(Queued::Refused(format!(
            "the delivery brings {new} custom-field codes new to Spoki, more than \
             csv.max_new_custom_fields ({max_new}); nothing was stored"
        )));
    }
    let done = Store::enqueue_changes(&mut tx, "webhook", list, incoming).await?;
    tx.commit().await?;
    let (queued, unchanged) = (done.queued(), done.unchanged);
    tracing::info!(webhook_id = %id, queued, unchanged, rejected = rejected.len(), "contacts webhook accepted");
    Ok(Queued::Accepted(json!({
        "status": "queued",
        "webhook_id": id,
        "queued": queued,
        "unchanged": unchanged,
        "rejected": rejected,
    })))
}

/// Spoki's event envelope (its account event webhooks).
#[derive(Debug, Deserialize)]
pub struct SpokiEvent {
    pub event: String,
    pub event_uuid: String,
    #[serde(default)]
    pub data: Value,
}

async fn spoki(State(state): State<WebhookState>, headers: HeaderMap, body: Bytes) -> Response {
    const ROUTE: &str = "/webhooks/spoki";
    let Some(secret) = state.keys.get().spoki else {
        return refuse(
            ROUTE,
            "not_configured",
            StatusCode::NOT_FOUND,
            "webhooks.spoki_secret is not configured".into(),
        );
    };
    if let Err(message) = verify_spoki(secret.expose().as_bytes(), &headers, &body) {
        let reason = signature_reason(&headers, &["x-spoki-signature"]);
        return refuse(ROUTE, reason, StatusCode::UNAUTHORIZED, message);
    }
    let event = match parse_spoki_event(&body) {
        Ok(e) => e,
        Err(message) => return refuse(ROUTE, "malformed", StatusCode::BAD_REQUEST, message),
    };
    match apply_spoki_event(&state, &event).await {
        Ok(status) => (StatusCode::OK, Json(json!({ "status": status }))).into_response(),
        Err(e) => {
            tracing::error!(error = %e, event = %event.event, "cannot apply a Spoki event");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot apply the event now; retry",
            )
        }
    }
}

/// Applies one event (merging is idempotent, so the id is recorded after applying: a crash in
/// between at worst applies it again, to the same effect).
async fn apply_spoki_event(
    state: &WebhookState,
    event: &SpokiEvent,
) -> Result<&'static str, StoreError> {
    if state
        .store
        .delivery_seen("spoki", &event.event_uuid)
        .await?
    {
        return Ok("duplicate");
    }
    let status = match event.event.as_str() {
        "contact.created" | "contact.updated" => {
            match serde_json::from_value::<ContactRecord>(event.data.clone())
                .ok()
                .as_ref()
                .and_then(spoki_contact)
            {
                Some(contact) => {
                    let outcome = state
                        .store
                        .merge_from_spoki(&[contact], state.settings.get().mirror.conflict_winner)
                        .await?;
                    report_conflicts(&outcome);
                    if outcome.queued > 0 {
                        state.batcher_wake.notify_one();
                    }
                    "applied"
                }
                None => "ignored: no contact with an E.164 phone in data",
            }
        }
        "contact.deleted" => {
            let phone = match event.data.get("phone").and_then(Value::as_str) {
                Some(p) => Some(p.trim().to_owned()),
                None => match event.data.get("id").and_then(Value::as_i64) {
                    Some(id) => state.store.phone_by_spoki_id(id).await?,
                    None => None,
                },
            };
            match phone {
                Some(p) => {
                    state.store.forget_deleted_in_spoki(&p).await?;
                    "applied"
                }
                None => "ignored: unknown contact",
            }
        }
        _ => "ignored",
    };
    let mut conn = state.store.begin().await?;
    Store::first_delivery(&mut conn, "spoki", &event.event_uuid).await?;
    conn.commit().await?;
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign_standard(key: &[u8], id: &str, ts: i64, body: &[u8]) -> HeaderMap {
        let mut mac = HmacSha256::new_from_slice(key).expect("key");
        mac.update(format!("{id}.{ts}.").as_bytes());
        mac.update(body);
        let sig = B64.encode(mac.finalize().into_bytes());
        let mut h = HeaderMap::new();
        h.insert("webhook-id", id.parse().expect("header"));
        h.insert("webhook-timestamp", ts.to_string().parse().expect("header"));
        h.insert(
            "webhook-signature",
            format!("v1,{sig}").parse().expect("header"),
        );
        h
    }

    #[test]
    fn standard_webhooks_signatures() {
        let key = b"a secret key of some length";
        let body = br#"{"contacts":[]}"#;
        let now = now_secs();
        let h = sign_standard(key, "msg_1", now, body);
        assert_eq!(verify_standard(key, &h, body), Ok("msg_1".to_owned()));
        assert!(
            verify_standard(key, &h, br#"{"contacts":[1]}"#).is_err(),
            "tampered body"
        );
        assert!(verify_standard(b"other", &h, body).is_err(), "wrong key");
        let stale = sign_standard(key, "msg_1", now - 301, body);
        assert!(verify_standard(key, &stale, body).is_err(), "stale");
        let mut none = h.clone();
        none.remove("webhook-signature");
        assert!(verify_standard(key, &none, body).is_err(), "missing");
    }

    #[test]
    fn spoki_signatures() {
        let secret = b"spoki-secret";
        let body = br#"{"event":"contact.updated"}"#;
        let t = now_secs();
        let mut mac = HmacSha256::new_from_slice(secret).expect("key");
        mac.update(format!("{t}.").as_bytes());
        mac.update(body);
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let mut h = HeaderMap::new();
        h.insert(
            "x-spoki-signature",
            format!("t={t},v2={hex}").parse().expect("header"),
        );
        assert_eq!(verify_spoki(secret, &h, body), Ok(()));
        assert!(verify_spoki(b"nope", &h, body).is_err());
        assert!(verify_spoki(secret, &h, b"{}").is_err());
    }

    #[test]
    fn timestamps_near_i64_min_are_refused_without_overflow() {
        // Found while writing the webhooks fuzz target (fuzz/seeds/webhooks/ts-i64-min.txt):
        // `now - ts` overflowed.
        let key = b"k";
        for ts in [
            i64::MIN,
            i64::MIN + 1,
            now_secs().wrapping_add(i64::MIN),
            i64::MAX,
        ] {
            let h = sign_standard(key, "msg_1", ts, b"{}");
            assert_eq!(
                verify_standard(key, &h, b"{}"),
                Err("webhook-timestamp is outside the 5-minute tolerance".to_owned()),
                "{ts}"
            );
            let mut s = HeaderMap::new();
            s.insert(
                "x-spoki-signature",
                format!("t={ts},v2=00").parse().expect("header"),
            );
            assert_eq!(
                verify_spoki(key, &s, b"{}"),
                Err("X-Spoki-Signature timestamp is outside the 300 s tolerance".to_owned()),
                "{ts}"
            );
        }
    }

    #[test]
    fn whsec_keys_decode() {
        let s = Secret::new(format!("whsec_{}", B64.encode(b"key bytes")));
        assert_eq!(decode_whsec(&s).expect("decodes"), b"key bytes");
        // The configuration check accepts blanks after the prefix; so must the decoding.
        let s = Secret::new(format!("whsec_ {}", B64.encode(b"key bytes")));
        assert_eq!(decode_whsec(&s).expect("decodes"), b"key bytes");
        let err = decode_whsec(&Secret::new("whsec_!!!")).expect_err("bad");
        assert!(!err.contains("!!!"), "the secret is not echoed");
    }
}
