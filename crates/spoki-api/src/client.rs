//! The HTTP client: `X-Spoki-Api-Key`, JSON in and out, one attempt per call, answers mapped to
//! `SpokiError`. Error texts carry status codes and Spoki's bodies, never the key.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use serde_json::Value;

use crate::actions::Action;
use crate::error::{SpokiError, parse_retry_after};
use crate::values::Secret;
use crate::wire::{ContactPayload, ContactRecord, CustomFieldRecord, Page};

/// A 2xx answer.
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: StatusCode,
    /// `None` for an empty body; a body that is not JSON is kept as a JSON string.
    pub body: Option<Value>,
    /// Whether the body was JSON (or empty).
    pub json: bool,
}

#[derive(Clone)]
pub struct SpokiClient {
    http: reqwest::Client,
    base: Url,
    /// Reloadable (`set_key`).
    key: Arc<RwLock<Secret>>,
}

impl std::fmt::Debug for SpokiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpokiClient")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

impl SpokiClient {
    pub fn new(base: Url, key: Secret, timeout: Duration) -> Result<SpokiClient, SpokiError> {
        crate::install_tls_provider();
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("spoki-sync/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| SpokiError::Unreachable {
                reason: format!("cannot build the HTTP client: {e}"),
            })?;
        Ok(SpokiClient {
            http,
            base,
            key: Arc::new(RwLock::new(key)),
        })
    }

    fn key(&self) -> Secret {
        self.key.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Uses `key` from the next request on (configuration reload).
    pub fn set_key(&self, key: Secret) {
        // A poisoned lock only means a writer panicked mid-assignment; the value is whole.
        *self.key.write().unwrap_or_else(|e| e.into_inner()) = key;
    }

    /// One request to `path` (relative to the base URL). Returns the JSON body, or `None` for
    /// an empty 2xx body.
    pub async fn request(
        &self,
        action: Action,
        method: Method,
        path: &str,
        query: &[(String, String)],
        body: Option<&Value>,
    ) -> Result<Option<Value>, SpokiError> {
        let answer = self.send(action, method, path, query, body).await?;
        match answer.body {
            Some(Value::String(_)) if !answer.json => Err(SpokiError::Decode {
                reason: format!("HTTP {} with a body that is not JSON", answer.status),
            }),
            body => Ok(body),
        }
    }

    /// One request to `path` (relative to the base URL) with the API key. A 2xx body that is
    /// not JSON comes back as a JSON string.
    pub async fn send(
        &self,
        action: Action,
        method: Method,
        path: &str,
        query: &[(String, String)],
        body: Option<&Value>,
    ) -> Result<Answer, SpokiError> {
        let url = self.base.join(path).map_err(|e| SpokiError::Decode {
            reason: format!("bad path {path:?}: {e}"),
        })?;
        let req = self
            .http
            .request(method, url)
            .header("X-Spoki-Api-Key", self.key().expose());
        self.exchange(action, req, query, body).await
    }

    /// A `POST` to an automation trigger, `/wh/ap/<uuid>/` on Spoki's host: no API key, the
    /// trigger's secret travels in the body (Spoki's automation API).
    pub async fn post_trigger(
        &self,
        action: Action,
        uuid: &str,
        body: &Value,
    ) -> Result<Answer, SpokiError> {
        let url = self
            .base
            .join(&format!("/wh/ap/{uuid}/"))
            .map_err(|e| SpokiError::Decode {
                reason: format!("bad automation trigger {uuid:?}: {e}"),
            })?;
        let req = self.http.request(Method::POST, url);
        self.exchange(action, req, &[], Some(body)).await
    }

    async fn exchange(
        &self,
        action: Action,
        mut req: reqwest::RequestBuilder,
        query: &[(String, String)],
        body: Option<&Value>,
    ) -> Result<Answer, SpokiError> {
        req = req.header("Accept", "application/json");
        if !query.is_empty() {
            req = req.query(query);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let outcome = Self::answer(req).await;
        let label = match &outcome {
            Ok(a) => a.status.as_str().to_owned(),
            Err(SpokiError::RateLimited { .. }) => "429".to_owned(),
            Err(SpokiError::Server { status } | SpokiError::Rejected { status, .. }) => {
                status.to_string()
            }
            Err(e) => e.kind().to_owned(),
        };
        metrics::counter!("spoki_sync_spoki_requests_total", "action" => action.name(), "status" => label)
            .increment(1);
        if let Err(SpokiError::RateLimited { .. }) = &outcome {
            metrics::counter!("spoki_sync_spoki_throttled_total", "action" => action.name())
                .increment(1);
        }
        outcome
    }

    async fn answer(req: reqwest::RequestBuilder) -> Result<Answer, SpokiError> {
        let resp = req.send().await.map_err(transport_error)?;
        let status = resp.status();
        let retry_after = parse_retry_after(
            resp.headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()),
        );
        let bytes = resp.bytes().await.map_err(transport_error)?;
        let blank = bytes.iter().all(u8::is_ascii_whitespace);
        let json = if blank {
            None
        } else {
            serde_json::from_slice::<Value>(&bytes).ok()
        };
        if status.is_success() {
            let is_json = json.is_some() || blank;
            let body = match json {
                Some(v) => Some(v),
                None if blank => None,
                None => Some(Value::String(
                    String::from_utf8_lossy(&bytes).chars().take(2000).collect(),
                )),
            };
            return Ok(Answer {
                status,
                body,
                json: is_json,
            });
        }
        Err(match status {
            StatusCode::TOO_MANY_REQUESTS => SpokiError::RateLimited { retry_after },
            s if s.is_server_error() => SpokiError::Server { status: s.as_u16() },
            s => SpokiError::Rejected {
                status: s.as_u16(),
                body: json.unwrap_or_else(|| {
                    Value::String(String::from_utf8_lossy(&bytes).chars().take(500).collect())
                }),
            },
        })
    }

    /// `POST contacts/sync_all/`: the JSON array itself is the body (at most 500 items).
    pub async fn bulk_sync_contacts(&self, contacts: &[ContactPayload]) -> Result<(), SpokiError> {
        let body = serde_json::to_value(contacts).map_err(decode)?;
        self.request(
            Action::BulkSyncContacts,
            Method::POST,
            "contacts/sync_all/",
            &[],
            Some(&body),
        )
        .await
        .map(drop)
    }

    /// `POST lists/{id}/sync_contacts/` with `{"contacts": [...]}`.
    pub async fn sync_contacts_to_list(
        &self,
        list_id: i64,
        contacts: &[ContactPayload],
    ) -> Result<(), SpokiError> {
        let body = serde_json::json!({ "contacts": contacts });
        self.request(
            Action::SyncContactsToList,
            Method::POST,
            &format!("lists/{list_id}/sync_contacts/"),
            &[],
            Some(&body),
        )
        .await
        .map(drop)
    }

    /// `POST contacts/sync/`: upsert one contact by phone; Spoki answers with the contact.
    pub async fn create_or_update_contact(
        &self,
        contact: &ContactPayload,
    ) -> Result<Option<ContactRecord>, SpokiError> {
        let body = serde_json::to_value(contact).map_err(decode)?;
        let answer = self
            .request(
                Action::CreateOrUpdateContact,
                Method::POST,
                "contacts/sync/",
                &[],
                Some(&body),
            )
            .await?;
        Ok(answer.and_then(|v| serde_json::from_value(v).ok()))
    }

    /// `GET contacts/` one page.
    pub async fn list_contacts(
        &self,
        page: u32,
        page_size: u32,
    ) -> Result<Page<ContactRecord>, SpokiError> {
        let q = [
            ("page".to_string(), page.to_string()),
            ("page_size".to_string(), page_size.to_string()),
        ];
        let v = self
            .request(Action::ListContacts, Method::GET, "contacts/", &q, None)
            .await?;
        Page::from_json(v.unwrap_or(Value::Array(vec![]))).map_err(decode)
    }

    /// `GET contacts/?phone=<E.164>`: the contacts Spoki holds under exactly this phone (the
    /// `+` is percent-encoded, as Spoki's exact filter needs).
    pub async fn find_contacts_by_phone(
        &self,
        phone: &str,
    ) -> Result<Page<ContactRecord>, SpokiError> {
        let q = [("phone".to_owned(), phone.to_owned())];
        let v = self
            .request(Action::ListContacts, Method::GET, "contacts/", &q, None)
            .await?;
        Page::from_json(v.unwrap_or(Value::Array(vec![]))).map_err(decode)
    }

    /// `GET contacts/{id}/`.
    pub async fn retrieve_contact(&self, id: i64) -> Result<ContactRecord, SpokiError> {
        let v = self
            .request(
                Action::RetrieveContact,
                Method::GET,
                &format!("contacts/{id}/"),
                &[],
                None,
            )
            .await?;
        serde_json::from_value(v.unwrap_or(Value::Null)).map_err(decode)
    }

    /// `PATCH contacts/{id}/` with only the given fields.
    pub async fn update_contact(
        &self,
        id: i64,
        fields: &Value,
    ) -> Result<Option<Value>, SpokiError> {
        self.request(
            Action::UpdateContact,
            Method::PATCH,
            &format!("contacts/{id}/"),
            &[],
            Some(fields),
        )
        .await
    }

    /// `DELETE contacts/{id}/`.
    pub async fn delete_contact(&self, id: i64) -> Result<(), SpokiError> {
        self.request(
            Action::DeleteContact,
            Method::DELETE,
            &format!("contacts/{id}/"),
            &[],
            None,
        )
        .await
        .map(drop)
    }

    /// `GET custom-fields/` one page.
    pub async fn list_custom_fields(
        &self,
        page: u32,
    ) -> Result<Page<CustomFieldRecord>, SpokiError> {
        let q = [
            ("page".to_string(), page.to_string()),
            ("page_size".to_string(), "200".to_string()),
        ];
        let v = self
            .request(
                Action::ListCustomFields,
                Method::GET,
                "custom-fields/",
                &q,
                None,
            )
            .await?;
        Page::from_json(v.unwrap_or(Value::Array(vec![]))).map_err(decode)
    }

    /// `POST custom-fields/`: a text field (`field_type` 1) with the given code.
    pub async fn create_custom_field(&self, label: &str, code: &str) -> Result<(), SpokiError> {
        let body = serde_json::json!({ "label": label, "code": code, "field_type": 1 });
        self.request(
            Action::CreateCustomField,
            Method::POST,
            "custom-fields/",
            &[],
            Some(&body),
        )
        .await
        .map(drop)
    }
}

fn decode(e: serde_json::Error) -> SpokiError {
    SpokiError::Decode {
        reason: e.to_string(),
    }
}

fn transport_error(e: reqwest::Error) -> SpokiError {
    // reqwest's text includes the URL (never the key, which travels in a header).
    let reason = e.to_string();
    if e.is_connect() {
        SpokiError::Unreachable { reason }
    } else {
        SpokiError::Unanswered { reason }
    }
}
