//! Changes made "in Spoki's web app" rather than through the API: a person editing or deleting
//! a contact. They need no API key, use no rate-limit slot and are not recorded as API calls,
//! but they fire `contact.*` webhooks like any other change.
//!
//! Also the `/_sim/` routes of these hooks and of the event webhooks:
//! `POST /_sim/ui/contacts` (`{"phone": …, …fields}` → the contact, or 400 with field errors),
//! `DELETE /_sim/ui/contacts/{phone}` (204, or 404 when absent),
//! `GET /_sim/webhook-deliveries` (every attempt, oldest first),
//! `POST /_sim/event-webhook` (`{"url": … | null, "secret": …}`) and
//! `POST /_sim/webhook-tamper` (`{"tamper": "BadSignature", "count": 2 | null}`).

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::validate::{self, PhoneRule};
use super::{Shared, Tamper, UnknownCustomField, WebhookDelivery};

/// Upserts by phone with the `contacts/sync` rules, except that unknown custom-field codes
/// are always created (as text fields). Returns the contact id, or the field errors.
pub(super) fn upsert_contact(shared: &Shared, phone: &str, fields: Value) -> Result<i64, Value> {
    let mut body = match fields {
        Value::Object(fields) => fields,
        Value::Null => Map::new(),
        other => return Err(validate::not_a_dict(&other)),
    };
    body.insert("phone".to_owned(), Value::String(phone.to_owned()));
    let unknown = UnknownCustomField::Create;
    let mut guard = shared.lock();
    let st = &mut *guard;
    let input =
        st.store
            .validate_contact(&Value::Object(body), PhoneRule::Required, unknown, None)?;
    let id = st.store.upsert(&input, unknown, Utc::now()).id();
    shared.flush_events(st);
    Ok(id)
}

/// Deletes the contact with exactly this phone; false when there is none.
pub(super) fn delete_contact(shared: &Shared, phone: &str) -> bool {
    let mut guard = shared.lock();
    let st = &mut *guard;
    let Some(id) = st.store.contact_by_phone(phone).map(|c| c.id) else {
        return false;
    };
    let deleted = st.store.delete_contact(id);
    shared.flush_events(st);
    deleted
}

// ---- HTTP ------------------------------------------------------------------------------------

fn bad_request(body: Value) -> Response {
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

/// The body read as `T`, or the DRF-style error body saying why not.
fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, Value> {
    serde_json::from_slice(body).map_err(|e| json!({ "detail": format!("JSON parse error - {e}") }))
}

pub(super) async fn http_upsert_contact(
    State(shared): State<Arc<Shared>>,
    body: Bytes,
) -> Response {
    let mut fields: Map<String, Value> = match parse(&body) {
        Ok(fields) => fields,
        Err(error) => return bad_request(error),
    };
    let phone = match fields.remove("phone") {
        Some(Value::String(phone)) => phone,
        Some(_) => return bad_request(json!({ "phone": [validate::MSG_NOT_STRING] })),
        None => return bad_request(json!({ "phone": [validate::MSG_REQUIRED] })),
    };
    match upsert_contact(&shared, &phone, Value::Object(fields)) {
        Ok(id) => {
            let st = shared.lock();
            match st.store.contact(id) {
                Some(contact) => Json(st.store.contact_json(contact)).into_response(),
                None => StatusCode::NOT_FOUND.into_response(),
            }
        }
        Err(errors) => bad_request(errors),
    }
}

pub(super) async fn http_delete_contact(
    State(shared): State<Arc<Shared>>,
    Path(phone): Path<String>,
) -> Response {
    if delete_contact(&shared, &phone) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        (StatusCode::NOT_FOUND, Json(json!({"detail": "Not found."}))).into_response()
    }
}

pub(super) async fn http_webhook_deliveries(
    State(shared): State<Arc<Shared>>,
) -> Json<Vec<WebhookDelivery>> {
    Json(shared.outbox.deliveries())
}

#[derive(Deserialize)]
struct EventWebhook {
    url: Option<String>,
    #[serde(default)]
    secret: String,
}

pub(super) async fn http_set_event_webhook(
    State(shared): State<Arc<Shared>>,
    body: Bytes,
) -> Response {
    let config: EventWebhook = match parse(&body) {
        Ok(config) => config,
        Err(error) => return bad_request(error),
    };
    let url = config.url.clone();
    shared.lock().webhooks.target = config.url.map(|url| (url, config.secret));
    Json(json!({ "url": url })).into_response()
}

#[derive(Deserialize)]
struct TamperSetting {
    tamper: Tamper,
    #[serde(default)]
    count: Option<u32>,
}

pub(super) async fn http_set_webhook_tamper(
    State(shared): State<Arc<Shared>>,
    body: Bytes,
) -> Response {
    let setting: TamperSetting = match parse(&body) {
        Ok(setting) => setting,
        Err(error) => return bad_request(error),
    };
    shared
        .lock()
        .webhooks
        .set_tamper(setting.tamper.clone(), setting.count);
    Json(json!({ "tamper": setting.tamper, "count": setting.count })).into_response()
}
