//! Spoki's JSON shapes (contacts, custom fields, pages). Answers are read tolerantly: unknown
//! fields are ignored and lists may come as a DRF envelope or a bare array.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

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

/// A contact as Spoki returns it.
#[derive(Clone, Debug, Deserialize)]
pub struct ContactRecord {
    pub id: i64,
    pub phone: String,
    #[serde(default)]
    pub first_name: Option<String>,
    #[serde(default)]
    pub last_name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub language: Option<String>,
    #[serde(default)]
    pub contactfield_set: Vec<ContactFieldValue>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct ContactFieldValue {
    #[serde(default)]
    pub visual_code: Option<String>,
    #[serde(default)]
    pub value: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct CustomFieldRecord {
    pub id: i64,
    pub code: String,
    #[serde(default)]
    pub label: Option<String>,
}

/// One page of a list endpoint, whichever shape Spoki used.
#[derive(Clone, Debug)]
pub struct Page<T> {
    pub results: Vec<T>,
    pub next: Option<String>,
    pub count: Option<u64>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum PageShape<T> {
    Envelope {
        results: Vec<T>,
        #[serde(default)]
        next: Option<String>,
        #[serde(default)]
        count: Option<u64>,
    },
    Bare(Vec<T>),
}

impl<T: serde::de::DeserializeOwned> Page<T> {
    pub fn from_json(value: serde_json::Value) -> Result<Page<T>, serde_json::Error> {
        Ok(match serde_json::from_value(value)? {
            PageShape::Envelope {
                results,
                next,
                count,
            } => Page {
                results,
                next,
                count,
            },
            PageShape::Bare(results) => Page {
                results,
                next: None,
                count: None,
            },
        })
    }
}

/// Which items of a bulk contact write a 400 refused, read from its body: DRF answers one
/// entry per item, empty (`{}` or `null`) for an item that was fine. `wrapped`: the request
/// was `{"contacts": [...]}` (Sync Contacts to List), whose errors come under `contacts`; else
/// a bare array (Bulk Sync Contacts). `None` when the body does not name items one by one
/// (another shape, or another count than `items`).
pub fn refused_items(
    body: &serde_json::Value,
    items: usize,
    wrapped: bool,
) -> Option<Vec<Option<String>>> {
    use serde_json::Value;
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
}
