//! Spoki's JSON shapes: contacts and custom fields as written and as read, pages of list
//! answers, and the per-item errors of a bulk refusal. Answers are read tolerantly, item by
//! item: unknown keys are ignored, `null` or a wrong type reads as absent, a record that
//! cannot be used at all is skipped (and named) while the rest of its page goes on, and a
//! list may come as a DRF envelope or a bare array.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One contact in a write: `contacts/sync/`, the `sync_all/` array, list `sync_contacts/`.
/// Absent fields are left untouched by Spoki, so only known values are sent.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ContactPayload {
    pub phone: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub custom_fields: BTreeMap<String, String>,
}

/// A contact as Spoki returns it, read field by field ([`Record::read`]): unknown keys are
/// ignored, and a field that is `null`, absent or of another type reads as absent (`None`, or
/// an empty list), which the merge takes as "nothing to say" rather than "cleared". Only a
/// record without a usable phone, the key the daemon matches on, cannot be read.
#[derive(Clone, Debug, PartialEq)]
pub struct ContactRecord {
    /// `None` when Spoki's id is missing or not an integer (the phone still identifies it).
    pub id: Option<i64>,
    pub phone: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<String>,
    pub language: Option<String>,
    pub contactfield_set: Vec<ContactFieldValue>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ContactFieldValue {
    pub visual_code: Option<String>,
    pub value: Option<String>,
}

/// A custom field as Spoki returns it; only a record without a usable `code` cannot be read.
#[derive(Clone, Debug, PartialEq)]
pub struct CustomFieldRecord {
    pub id: Option<i64>,
    pub code: String,
    pub label: Option<String>,
}

/// An item of a list answer that could not be read, and why. It is skipped; the rest of
/// its page goes on.
#[derive(Clone, Debug, PartialEq)]
pub struct Unreadable {
    /// Spoki's id of the record, when it has one we can show.
    pub id: Option<String>,
    pub reason: String,
}

impl Unreadable {
    fn new(item: &Value, reason: impl Into<String>) -> Unreadable {
        let id = match item.get("id") {
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(Value::String(s)) if !s.trim().is_empty() => {
                Some(s.trim().chars().take(64).collect())
            }
            _ => None,
        };
        Unreadable {
            id,
            reason: reason.into(),
        }
    }
}

/// A record of a list endpoint, read tolerantly from one JSON item.
pub trait Record: Sized {
    /// # Errors
    /// Why the item cannot be used at all (it is then skipped and counted).
    fn read(item: &Value) -> Result<Self, Unreadable>;
}

/// A text field: a string as it is, a number as its digits; `null`, absent or another type is
/// absent.
fn text(item: &Value, key: &str) -> Option<String> {
    match item.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// An integer id, also when sent as a string of digits.
fn int(item: &Value, key: &str) -> Option<i64> {
    match item.get(key)? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

impl Record for ContactRecord {
    fn read(item: &Value) -> Result<ContactRecord, Unreadable> {
        if !item.is_object() {
            return Err(Unreadable::new(item, "not a JSON object"));
        }
        let phone = match item.get("phone") {
            Some(Value::String(p)) if !p.trim().is_empty() => p.trim().to_owned(),
            Some(Value::String(_)) | Some(Value::Null) | None => {
                return Err(Unreadable::new(item, "no phone"));
            }
            Some(_) => return Err(Unreadable::new(item, "the phone is not a string")),
        };
        let contactfield_set = item
            .get("contactfield_set")
            .and_then(Value::as_array)
            .map(|set| {
                set.iter()
                    .filter(|f| f.is_object())
                    .map(|f| ContactFieldValue {
                        visual_code: text(f, "visual_code"),
                        value: text(f, "value"),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(ContactRecord {
            id: int(item, "id"),
            phone,
            first_name: text(item, "first_name"),
            last_name: text(item, "last_name"),
            email: text(item, "email"),
            language: text(item, "language"),
            contactfield_set,
        })
    }
}

impl Record for CustomFieldRecord {
    fn read(item: &Value) -> Result<CustomFieldRecord, Unreadable> {
        if !item.is_object() {
            return Err(Unreadable::new(item, "not a JSON object"));
        }
        let code = match item.get("code") {
            Some(Value::String(c)) if !c.trim().is_empty() => c.trim().to_owned(),
            _ => return Err(Unreadable::new(item, "no code")),
        };
        Ok(CustomFieldRecord {
            id: int(item, "id"),
            code,
            label: text(item, "label"),
        })
    }
}

/// Reading a single contact (`contacts/sync/`, `contacts/{id}/`) goes through the same
/// tolerant reader as a list item.
impl<'de> Deserialize<'de> for ContactRecord {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let item = Value::deserialize(d)?;
        ContactRecord::read(&item).map_err(|u| serde::de::Error::custom(u.reason))
    }
}

/// One page of a list endpoint, whichever shape Spoki used.
#[derive(Clone, Debug)]
pub struct Page<T> {
    /// The items that could be read, in Spoki's order.
    pub results: Vec<T>,
    /// The items that could not, skipped.
    pub skipped: Vec<Unreadable>,
    /// How many items the page held, read or not (an empty page ends a pass).
    pub items: usize,
    /// The `next` link as Spoki gave it (absolute or relative); `None` when absent, `null`
    /// or blank.
    pub next: Option<String>,
    pub count: Option<u64>,
    /// A hash of the page's items as sent: the same page twice means a server that ignores
    /// how we page.
    pub fingerprint: u64,
}

impl<T: Record> Page<T> {
    /// Reads a list answer: a DRF envelope `{"results": [...], "next": ...}` (`results`
    /// `null` or absent is an empty page), or a bare array (one page, no `next`). Each item
    /// is read on its own.
    ///
    /// # Errors
    /// The answer is neither shape (an empty body, a lone object without `results`, text).
    pub fn from_json(value: Value) -> Result<Page<T>, String> {
        let (items, next, count) = match value {
            Value::Array(items) => (items, None, None),
            Value::Object(mut map) if map.contains_key("results") || map.contains_key("next") => {
                let items = match map.remove("results") {
                    Some(Value::Array(items)) => items,
                    Some(Value::Null) | None => Vec::new(),
                    Some(other) => {
                        return Err(format!(
                            "a list answer whose results are not a list: {}",
                            short(&other)
                        ));
                    }
                };
                let next = match map.get("next") {
                    Some(Value::String(n)) if !n.trim().is_empty() => Some(n.trim().to_owned()),
                    _ => None,
                };
                let count = map.get("count").and_then(Value::as_u64);
                (items, next, count)
            }
            other => {
                return Err(format!(
                    "a list answer that is neither a page nor an array: {}",
                    short(&other)
                ));
            }
        };
        let mut results = Vec::with_capacity(items.len());
        let mut skipped = Vec::new();
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        for item in &items {
            std::hash::Hash::hash(&item.to_string(), &mut hasher);
            match T::read(item) {
                Ok(r) => results.push(r),
                Err(u) => skipped.push(u),
            }
        }
        Ok(Page {
            results,
            skipped,
            items: items.len(),
            next,
            count,
            fingerprint: std::hash::Hasher::finish(&hasher),
        })
    }
}

fn short(v: &Value) -> String {
    v.to_string().chars().take(200).collect()
}

/// Whether a 400 on a create says the thing exists already: DRF's unique-field message
/// ("... with this code already exists."), or a wording naming uniqueness, in English or
/// Italian. A hint only; the custom-field step lists the fields to be sure.
pub fn already_exists(body: &Value) -> bool {
    let text = body.to_string().to_lowercase();
    ["exist", "unique", "già", "esiste", "duplicat"]
        .iter()
        .any(|w| text.contains(w))
}

/// Which items of a bulk contact write a 400 refused, read from its body: DRF answers one
/// entry per item, empty (`{}` or `null`) for an item that was fine. `wrapped`: the request
/// was `{"contacts": [...]}` (Sync Contacts to List), whose errors come under `contacts`; else
/// a bare array (Bulk Sync Contacts). `None` when the body does not name items one by one
/// (another shape, or another count than `items`).
pub fn refused_items(body: &Value, items: usize, wrapped: bool) -> Option<Vec<Option<String>>> {
    let list = if wrapped {
        body.get("contacts")?.as_array()?
    } else {
        body.as_array()?
    };
    if list.len() != items {
        return None;
    }
    Some(
        list.iter()
            .map(|item| match item {
                Value::Object(o) if o.is_empty() => None,
                Value::Null => None,
                other => Some(other.to_string()),
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn payload_leaves_out_unknown_fields() {
        let p = ContactPayload {
            phone: "+393331234567".into(),
            first_name: Some("Anna".into()),
            last_name: None,
            email: None,
            language: None,
            custom_fields: BTreeMap::new(),
        };
        assert_eq!(
            serde_json::to_value(&p).expect("serialises"),
            json!({"phone": "+393331234567", "first_name": "Anna"})
        );
    }

    #[test]
    fn bulk_errors_name_items_one_by_one() {
        let body = json!([{}, {"phone": ["Enter a valid phone number."]}, null]);
        let items = refused_items(&body, 3, false).expect("named");
        assert_eq!(items[0], None);
        assert!(
            items[1]
                .as_deref()
                .is_some_and(|r| r.contains("valid phone"))
        );
        assert_eq!(items[2], None);
        assert_eq!(refused_items(&body, 2, false), None, "another count");
        let list = json!({"contacts": [{}, {"email": ["bad"]}]});
        assert!(refused_items(&list, 2, true).is_some());
        assert_eq!(refused_items(&json!({"detail": "x"}), 2, false), None);
    }

    #[test]
    fn pages_come_in_either_shape() {
        let env: Page<CustomFieldRecord> =
            Page::from_json(json!({"count": 1, "next": null, "previous": null,
                "results": [{"id": 1, "code": "CITTA", "label": "Città"}]}))
            .expect("envelope");
        assert_eq!(env.results.len(), 1);
        let bare: Page<CustomFieldRecord> =
            Page::from_json(json!([{"id": 1, "code": "CITTA"}])).expect("bare array");
        assert_eq!(bare.results[0].code, "CITTA");
    }

    #[test]
    fn odd_contact_records_are_skipped_one_by_one_and_the_rest_is_read() {
        let page: Page<ContactRecord> = Page::from_json(json!({
            "count": 6, "next": "https://api.spoki.com/api/1/contacts/?cursor=abc",
            "results": [
                {"id": 1, "phone": "+393331111111", "first_name": "Anna",
                 "contactfield_set": [{"visual_code": "%%CITTA%%", "value": "Roma"}],
                 "brand_new_key": {"x": 1}},
                {"id": null, "phone": null},
                {"id": 3, "phone": "+393333333333", "contactfield_set": null,
                 "first_name": 42, "last_name": ["x"], "email": null, "language": true},
                {"id": 4, "phone": 393334444444_i64},
                "not an object",
                {"id": "5", "phone": " +393335555555 ", "contactfield_set": [null, 7, {"value": 12}]}
            ]
        }))
        .expect("a page");
        assert_eq!(page.items, 6);
        let phones: Vec<_> = page.results.iter().map(|c| c.phone.as_str()).collect();
        assert_eq!(phones, ["+393331111111", "+393333333333", "+393335555555"]);
        assert_eq!(page.results[0].contactfield_set.len(), 1);
        let odd = &page.results[1];
        assert_eq!(
            odd.first_name.as_deref(),
            Some("42"),
            "a number reads as its digits"
        );
        assert_eq!(odd.last_name, None, "another type reads as absent");
        assert_eq!(odd.language, None);
        assert!(odd.contactfield_set.is_empty(), "null reads as empty");
        assert_eq!(page.results[2].id, Some(5), "an id in a string");
        assert_eq!(
            page.results[2].contactfield_set[0].value.as_deref(),
            Some("12")
        );
        let skipped: Vec<_> = page
            .skipped
            .iter()
            .map(|u| (u.id.as_deref(), u.reason.as_str()))
            .collect();
        assert_eq!(
            skipped,
            [
                (None, "no phone"),
                (Some("4"), "the phone is not a string"),
                (None, "not a JSON object")
            ]
        );
        assert_eq!(
            page.next.as_deref(),
            Some("https://api.spoki.com/api/1/contacts/?cursor=abc")
        );
    }

    #[test]
    fn envelope_variants_and_answers_that_are_not_pages() {
        let empty: Page<ContactRecord> =
            Page::from_json(json!({"results": null, "next": null})).expect("null results");
        assert_eq!((empty.items, empty.next), (0, None));
        let blank_next: Page<ContactRecord> =
            Page::from_json(json!({"results": [], "next": "  "})).expect("blank next");
        assert_eq!(blank_next.next, None);
        let no_results: Page<ContactRecord> =
            Page::from_json(json!({"next": null, "count": 0})).expect("no results key");
        assert_eq!(no_results.items, 0);
        assert!(Page::<ContactRecord>::from_json(json!({"detail": "x"})).is_err());
        assert!(Page::<ContactRecord>::from_json(json!("text")).is_err());
        assert!(Page::<ContactRecord>::from_json(Value::Null).is_err());
        assert!(Page::<ContactRecord>::from_json(json!({"results": {"a": 1}})).is_err());
    }

    #[test]
    fn odd_custom_field_records_are_skipped() {
        let page: Page<CustomFieldRecord> = Page::from_json(json!([
            {"id": 1, "code": "CITTA", "label": null},
            {"id": 2, "code": null, "label": "Broken"},
            {"id": null, "code": "ORDINE", "field_type": "weird", "extra": [1]}
        ]))
        .expect("a bare array");
        let codes: Vec<_> = page.results.iter().map(|f| f.code.as_str()).collect();
        assert_eq!(codes, ["CITTA", "ORDINE"]);
        assert_eq!(page.skipped.len(), 1);
        assert_eq!(page.skipped[0].id.as_deref(), Some("2"));
    }

    #[test]
    fn a_single_contact_is_read_as_tolerantly() {
        let c: ContactRecord = serde_json::from_value(json!({
            "id": 7, "phone": "+393331234567", "contactfield_set": null, "unknown": 1
        }))
        .expect("reads");
        assert_eq!(c.id, Some(7));
        assert!(serde_json::from_value::<ContactRecord>(json!({"id": 7})).is_err());
    }
}
