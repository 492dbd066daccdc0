//! Spoki's JSON shapes (spoki-api.md §3.1, §3.3, §3.15). Answers are read tolerantly: unknown
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
