//! Read variants: switches for the answers what is known of Spoki's API only guesses at or
//! has from a single source (pagination and envelopes, empty 2xx bodies, `Retry-After`, record
//! shapes), so a client can be tried against each alternative. All are off by default, and
//! can be changed while serving ([`crate::SimHandle::set_read_variants`], `POST /_sim/reads`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// How list endpoints page (DRF offers all three; Spoki is documented with the first).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Pagination {
    /// `page` and `page_size`, as documented.
    #[default]
    PageNumber,
    /// An opaque `cursor` in `next`, a fixed page size, no `count`.
    Cursor,
    /// `limit` and `offset`.
    LimitOffset,
}

/// The switches; see the module documentation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReadVariants {
    pub pagination: Pagination,
    /// `next`/`previous` links as a path and query, without scheme and host.
    pub relative_next: bool,
    /// `next` links point to this origin (e.g. `http://other:8080`) instead of the
    /// simulator's own: a client must not follow them with its API key.
    pub next_origin: Option<String>,
    /// Contact and custom-field lists carry odd records on their first page (null id, null or
    /// numeric phone, no code, a string for an object), and real contacts come with unknown
    /// keys, `contactfield_set: null` when they have none, and wrongly typed side fields.
    pub odd_records: bool,
    /// The n-th page (1-based) and every later one answer 404 "Invalid page.", as when
    /// contacts are deleted while a client pages through them.
    pub invalid_page_from: Option<usize>,
    /// List endpoints answer a bare JSON array of everything, with no envelope and no paging.
    pub bare_arrays: bool,
    /// An empty envelope says `results: null` rather than `[]`.
    pub null_empty_results: bool,
    /// 429 answers give `Retry-After` as an HTTP-date (IMF-fixdate) rather than in seconds.
    pub retry_after_http_date: bool,
    /// Successful writes (every 2xx that is not a GET) answer with an empty body.
    pub empty_write_bodies: bool,
}

/// Odd contact records that no client can use: none has a usable phone.
pub(super) fn odd_contacts() -> Vec<Value> {
    vec![
        json!({"id": null, "phone": null, "first_name": "Ghost", "contactfield_set": null}),
        json!({"id": 990_000_001, "phone": 393_330_000_000_i64, "first_name": "Numeric"}),
        json!({"id": 990_000_002, "first_name": "No phone at all"}),
        json!({"id": "990000003", "phone": "not a phone", "contactfield_set": "nope"}),
        json!("a string where a contact belongs"),
    ]
}

/// Odd custom-field records: none has a usable code.
pub(super) fn odd_custom_fields() -> Vec<Value> {
    vec![
        json!({"id": null, "code": null, "label": "Broken", "field_type": 1}),
        json!({"id": 990_000_004, "code": 17, "label": null, "field_type": "text"}),
        json!([1, 2, 3]),
    ]
}

/// A real contact as a sloppier Spoki might render it: unknown keys, `null` for an empty
/// `contactfield_set`, side fields of the wrong type. Its phone and fields stay readable.
pub(super) fn quirky_contact(mut contact: Value) -> Value {
    if let Some(map) = contact.as_object_mut() {
        let empty = map
            .get("contactfield_set")
            .and_then(Value::as_array)
            .is_some_and(Vec::is_empty);
        if empty {
            map.insert("contactfield_set".to_owned(), Value::Null);
        }
        map.insert("tag_set".to_owned(), Value::Null);
        map.insert("list_set".to_owned(), json!("not a list"));
        map.insert("has_invalid_phone".to_owned(), json!("no"));
        map.insert(
            "brand_new_field".to_owned(),
            json!({"nested": [1, {"deeper": null}]}),
        );
    }
    contact
}

/// The IMF-fixdate (RFC 9110, section 5.6.7) at least `wait` from now, rounded up to the second the
/// format can say, so a client that waits until then waits at least `wait`.
pub(super) fn http_date_after(wait: Duration, now: DateTime<Utc>) -> String {
    let target = now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX);
    let whole = target.timestamp() + i64::from(target.timestamp_subsec_nanos() > 0);
    DateTime::<Utc>::from_timestamp(whole, 0)
        .unwrap_or(target)
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_round_up_to_the_second() {
        let now = DateTime::<Utc>::from_timestamp(1_445_412_479, 400_000_000).expect("time");
        assert_eq!(
            http_date_after(Duration::from_millis(100), now),
            "Wed, 21 Oct 2015 07:28:00 GMT"
        );
        assert_eq!(
            http_date_after(Duration::from_millis(700), now),
            "Wed, 21 Oct 2015 07:28:01 GMT"
        );
    }

    #[test]
    fn quirky_contacts_keep_their_phone() {
        let c = quirky_contact(json!({"id": 1, "phone": "+393331234567", "contactfield_set": []}));
        assert_eq!(c["phone"], "+393331234567");
        assert!(c["contactfield_set"].is_null());
        assert!(c.get("brand_new_field").is_some());
    }
}
