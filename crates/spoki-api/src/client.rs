//! The HTTP client: `X-Spoki-Api-Key`, JSON in and out, one attempt per call, answers mapped to
//! `SpokiError`. Error texts carry status codes and Spoki's bodies, never the key.

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use reqwest::{Method, StatusCode, Url};
use serde_json::Value;

use crate::actions::Action;
use crate::error::{SpokiError, parse_retry_after};
use crate::pager::{Pager, under};
use crate::values::Secret;
use crate::wire::{
    ContactPayload, ContactRecord, CustomFieldRecord, Page, Record, Unreadable, already_exists,
    refused_items,
};

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
            .map_err(|e| SpokiError::Fatal {
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
        let url = self.base.join(path).map_err(|e| SpokiError::Fatal {
            reason: format!("bad path {path:?}: {e}"),
        })?;
        let req = self
            .http
            .request(method, url)
            .header("X-Spoki-Api-Key", self.key().expose());
        self.exchange(action, req, query, body).await
    }

    /// Spoki's REST root (`spoki.base_url`).
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// A `POST` without the API key to an absolute URL the caller has checked (an
    /// automation trigger's `link`): the trigger's secret travels in the body.
    pub async fn post_url(
        &self,
        action: Action,
        url: Url,
        body: &Value,
    ) -> Result<Answer, SpokiError> {
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
            Err(e) => e
                .status()
                .map_or_else(|| e.kind().to_owned(), |s| s.to_string()),
        };
        metrics::counter!("spoki_sync_spoki_requests_total", "action" => action.name(), "status" => label)
            .increment(1);
        if let Err(SpokiError::Throttled { .. }) = &outcome {
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
            SystemTime::now(),
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
        let body = || {
            json.clone().unwrap_or_else(|| {
                Value::String(String::from_utf8_lossy(&bytes).chars().take(500).collect())
            })
        };
        Err(match status {
            StatusCode::TOO_MANY_REQUESTS => SpokiError::Throttled { retry_after },
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => SpokiError::Unauthorized {
                status: status.as_u16(),
                body: body(),
            },
            s if s.is_server_error() => SpokiError::server(s.as_u16()),
            s => SpokiError::Rejected {
                status: s.as_u16(),
                body: body(),
                items: None,
            },
        })
    }

    /// `POST contacts/sync_all/`: the JSON array itself is the body (at most 500 items).
    /// A 400 that names the items one by one comes back with them (`Rejected::items`).
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
        .map_err(|e| with_items(e, contacts.len(), false))
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
        .map_err(|e| with_items(e, contacts.len(), true))
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
        read_page(Action::ListContacts, v)
    }

    /// A pass over every contact, `page_size` at a time (if Spoki pages by number).
    pub fn contacts_pager(&self, page_size: u32) -> Result<Pager<ContactRecord>, SpokiError> {
        self.pager(
            Action::ListContacts,
            "contacts/",
            &[
                ("page", "1".to_owned()),
                ("page_size", page_size.to_string()),
            ],
        )
    }

    /// A pass over every custom field.
    pub fn custom_fields_pager(&self) -> Result<Pager<CustomFieldRecord>, SpokiError> {
        self.pager(
            Action::ListCustomFields,
            "custom-fields/",
            &[("page", "1".to_owned()), ("page_size", "200".to_owned())],
        )
    }

    /// A pass over the list endpoint `path` (relative to the base URL), starting with `query`.
    pub fn pager<T: Record>(
        &self,
        action: Action,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Pager<T>, SpokiError> {
        let mut first = self.base.join(path).map_err(|e| SpokiError::Fatal {
            reason: format!("bad path {path:?}: {e}"),
        })?;
        if !query.is_empty() {
            first
                .query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        Ok(Pager::new(action, self.base.clone(), first))
    }

    /// `GET` one page of a pass (`pager.next_url()`), with the API key: only under Spoki's base
    /// URL. Records that cannot be read are skipped, logged and counted
    /// (`spoki_sync_skipped_records_total`); an empty body is not a page.
    pub async fn fetch_page<T: Record>(
        &self,
        action: Action,
        url: &Url,
    ) -> Result<Page<T>, SpokiError> {
        if !under(&self.base, url) {
            return Err(SpokiError::Fatal {
                reason: format!(
                    "refusing to send the API key to {} (outside {})",
                    url.origin().ascii_serialization(),
                    self.base
                ),
            });
        }
        let req = self
            .http
            .request(Method::GET, url.clone())
            .header("X-Spoki-Api-Key", self.key().expose());
        let answer = self.exchange(action, req, &[], None).await?;
        match answer.body {
            None => Err(SpokiError::Decode {
                reason: format!(
                    "HTTP {} with an empty body where a list was expected",
                    answer.status
                ),
            }),
            Some(Value::String(_)) if !answer.json => Err(SpokiError::Decode {
                reason: format!("HTTP {} with a body that is not JSON", answer.status),
            }),
            Some(v) => read_page(action, Some(v)),
        }
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
        read_page(Action::ListContacts, v)
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

    /// `POST custom-fields/`: a text field (`field_type` 1) with the given code, and an
    /// `example` (a documented field) when one is known. A 400 saying the code is taken comes
    /// back as `AlreadyExists` (a hint: list to be sure).
    pub async fn create_custom_field(
        &self,
        label: &str,
        code: &str,
        example: Option<&str>,
    ) -> Result<(), SpokiError> {
        let mut body = serde_json::json!({ "label": label, "code": code, "field_type": 1 });
        if let (Some(example), Some(map)) = (example, body.as_object_mut()) {
            map.insert("example".to_owned(), Value::from(example));
        }
        self.request(
            Action::CreateCustomField,
            Method::POST,
            "custom-fields/",
            &[],
            Some(&body),
        )
        .await
        .map(drop)
        .map_err(|e| match e {
            SpokiError::Rejected {
                status: 400, body, ..
            } if already_exists(&body) => SpokiError::AlreadyExists { body },
            other => other,
        })
    }
}

fn decode(e: serde_json::Error) -> SpokiError {
    SpokiError::Decode {
        reason: e.to_string(),
    }
}

/// A 400 on a bulk write of `n` items, with the items it names (see `refused_items`).
fn with_items(e: SpokiError, n: usize, wrapped: bool) -> SpokiError {
    match e {
        SpokiError::Rejected {
            status: 400,
            body,
            items: None,
        } => SpokiError::Rejected {
            status: 400,
            items: refused_items(&body, n, wrapped),
            body,
        },
        other => other,
    }
}

/// A list answer read item by item; what cannot be read is logged and counted here, once.
fn read_page<T: Record>(action: Action, body: Option<Value>) -> Result<Page<T>, SpokiError> {
    let page = Page::from_json(body.unwrap_or(Value::Array(vec![])))
        .map_err(|reason| SpokiError::Decode { reason })?;
    for u in &page.skipped {
        note_skipped(action, u);
    }
    Ok(page)
}

/// Logs and counts one record of a list answer that was skipped
/// (`spoki_sync_skipped_records_total{action}`).
pub fn note_skipped(action: Action, record: &Unreadable) {
    tracing::warn!(
        action = action.name(),
        id = record.id.as_deref().unwrap_or("none"),
        reason = %record.reason,
        "skipped a record Spoki sent that cannot be read; the rest goes on"
    );
    metrics::counter!("spoki_sync_skipped_records_total", "action" => action.name()).increment(1);
}

fn transport_error(e: reqwest::Error) -> SpokiError {
    // reqwest's text includes the URL (never the key, which travels in a header).
    let reason = e.to_string();
    if e.is_connect() {
        SpokiError::Transient {
            reason: format!("could not reach Spoki: {reason}"),
            status: None,
            may_have_applied: false,
        }
    } else {
        SpokiError::Transient {
            reason: format!("no answer from Spoki ({reason}); the request may have been applied"),
            status: None,
            may_have_applied: true,
        }
    }
}
