//! Switches for Spoki's guessed and single-source behaviours on the write side, all off by
//! default so the simulator answers as it always did: how "this custom-field code already
//! exists" is worded, custom-field creates that fail a few times first, the style of an
//! automation trigger's `link`, `reports/` gone, and 2xx answers to writes without a body.
//! Changeable while serving ([`crate::SimHandle::set_writes`]).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// How a create of an existing custom-field code is refused (always a 400).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum DuplicateWording {
    /// DRF's English field error: `{"code": ["custom field with this code already exists."]}`.
    #[default]
    English,
    /// The same, in Italian.
    Italian,
    /// A field error that says nothing readable: `{"code": ["unique"]}`.
    BareCode,
    /// A generic `{"detail": "Bad Request"}` that names no field.
    Detail,
}

impl DuplicateWording {
    pub(crate) fn body(self) -> Value {
        match self {
            DuplicateWording::English => {
                json!({"code": ["custom field with this code already exists."]})
            }
            DuplicateWording::Italian => {
                json!({"code": ["Esiste già un campo personalizzato con questo codice."]})
            }
            DuplicateWording::BareCode => json!({"code": ["unique"]}),
            DuplicateWording::Detail => json!({"detail": "Bad Request"}),
        }
    }
}

/// What a trigger's `link` in `webhook_set` looks like.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum TriggerLink {
    /// The simulator's own absolute start URL.
    #[default]
    Absolute,
    /// A path on the same host: `/wh/ap/<uuid>/`.
    Relative,
    /// No `link` at all (only `uuid`).
    Missing,
    /// An absolute URL on this other origin (e.g. `http://127.0.0.1:9`), as a tampered or
    /// misconfigured account could hold.
    Elsewhere(String),
}

impl TriggerLink {
    /// Rewrites the `link` of every trigger in an automation object.
    pub(crate) fn apply(&self, automation: &mut Value) {
        let Some(set) = automation
            .get_mut("webhook_set")
            .and_then(Value::as_array_mut)
        else {
            return;
        };
        for trigger in set {
            let uuid = trigger
                .get("uuid")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let Some(map) = trigger.as_object_mut() else {
                continue;
            };
            match self {
                TriggerLink::Absolute => {}
                TriggerLink::Relative => {
                    map.insert("link".to_owned(), json!(format!("/wh/ap/{uuid}/")));
                }
                TriggerLink::Missing => {
                    map.remove("link");
                }
                TriggerLink::Elsewhere(origin) => {
                    map.insert("link".to_owned(), json!(format!("{origin}/wh/ap/{uuid}/")));
                }
            }
        }
    }
}

/// The write-side switches.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WriteSwitches {
    /// Wording of the 400 for a custom-field code that exists already.
    pub duplicate_wording: DuplicateWording,
    /// The next `POST /custom-fields/` calls answer these statuses in turn (401, 403, 500,
    /// 503…) and change nothing; once used up, creates work again.
    pub custom_field_create_failures: VecDeque<u16>,
    /// The style of the triggers' `link` in automation objects.
    pub trigger_link: TriggerLink,
    /// `GET /reports/` answers this status (404 or 410: the deprecated route is gone);
    /// `GET /reports/detailed/` keeps answering.
    pub reports_gone: Option<u16>,
    /// 2xx answers to `POST`, `PATCH` and `DELETE` carry no body at all.
    pub empty_write_bodies: bool,
}
