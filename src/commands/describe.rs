//! The params each action takes, described from the same types that check them
//! (`params.rs`, `types.rs`): name, type and whether it is required. `spoki-sync actions` and
//! `docs/actions.md` show these descriptions, so they cannot drift from what is accepted.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::types::{
    Contacts, Date, DateTime, E164, Email, FieldCode, FieldType, Id, MAX_CONTACTS, Text,
};
use crate::spoki::actions::Action;

/// One param of an action.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ParamDoc {
    pub name: &'static str,
    /// What the value must be, in words (`phone (E.164)`, `one of "Open", "Closed"`).
    #[serde(rename = "type")]
    pub kind: String,
    pub required: bool,
    /// A value of that type (the tests send it to prove the description is what is accepted).
    #[serde(skip)]
    pub sample: Value,
}

/// The shape of one value: what it must be, whether it may be left out, and a value it takes
/// (the tests send that sample to prove the description matches the check).
pub trait Shape {
    fn kind() -> String;
    fn sample() -> Value;
    const REQUIRED: bool = true;
}

/// The params of one typed request.
pub trait Described {
    fn params() -> Vec<ParamDoc>;
}

/// One field of a params struct, for the `params!` macro.
pub fn field<T: Shape>(name: &'static str) -> ParamDoc {
    ParamDoc {
        name,
        kind: T::kind(),
        required: T::REQUIRED,
        sample: T::sample(),
    }
}

/// Every param `action` takes: `id` first when the path holds one.
pub fn describe(action: Action) -> Vec<ParamDoc> {
    let mut docs = Vec::new();
    if action.path().contains("{id}") {
        docs.push(field::<Id>("id"));
    }
    docs.extend(super::params::described(action));
    docs
}

impl<T: Shape> Shape for Option<T> {
    fn kind() -> String {
        T::kind()
    }
    fn sample() -> Value {
        T::sample()
    }
    const REQUIRED: bool = false;
}

impl<T: Shape> Shape for Vec<T> {
    fn kind() -> String {
        format!("list of {}", T::kind())
    }
    fn sample() -> Value {
        json!([T::sample()])
    }
}

impl Shape for String {
    fn kind() -> String {
        "text".into()
    }
    fn sample() -> Value {
        json!("x")
    }
}

impl Shape for bool {
    fn kind() -> String {
        "true or false".into()
    }
    fn sample() -> Value {
        json!(true)
    }
}

impl Shape for u32 {
    fn kind() -> String {
        "whole number".into()
    }
    fn sample() -> Value {
        json!(1)
    }
}

impl Shape for Value {
    fn kind() -> String {
        "any JSON value".into()
    }
    fn sample() -> Value {
        json!({})
    }
}

impl Shape for Map<String, Value> {
    fn kind() -> String {
        "JSON object".into()
    }
    fn sample() -> Value {
        json!({})
    }
}

impl Shape for BTreeMap<String, String> {
    fn kind() -> String {
        "object of custom-field code to text".into()
    }
    fn sample() -> Value {
        json!({"ORDER_ID": "A-17"})
    }
}

impl Shape for BTreeMap<String, Option<String>> {
    fn kind() -> String {
        "object of custom-field code to text (null clears it)".into()
    }
    fn sample() -> Value {
        json!({"ORDER_ID": "A-17"})
    }
}

impl Shape for E164 {
    fn kind() -> String {
        "phone in E.164 (+393331234567)".into()
    }
    fn sample() -> Value {
        json!("+393331234567")
    }
}

impl Shape for Email {
    fn kind() -> String {
        "e-mail address".into()
    }
    fn sample() -> Value {
        json!("anna@example.com")
    }
}

impl Shape for Id {
    fn kind() -> String {
        "id (positive integer)".into()
    }
    fn sample() -> Value {
        json!(1)
    }
}

impl Shape for Text {
    fn kind() -> String {
        "text, not empty".into()
    }
    fn sample() -> Value {
        json!("x")
    }
}

impl Shape for Date {
    fn kind() -> String {
        "date YYYY-MM-DD".into()
    }
    fn sample() -> Value {
        json!("2026-01-01")
    }
}

impl Shape for DateTime {
    fn kind() -> String {
        "date and time, RFC 3339 (2026-12-01T09:00:00Z)".into()
    }
    fn sample() -> Value {
        json!("2026-12-01T09:00:00Z")
    }
}

impl Shape for FieldCode {
    fn kind() -> String {
        "custom-field code (ORDER_ID: upper-case letters, digits, _)".into()
    }
    fn sample() -> Value {
        json!("ORDER_ID")
    }
}

impl Shape for FieldType {
    fn kind() -> String {
        "1 (text), 2 (date) or 3 (date and time)".into()
    }
    fn sample() -> Value {
        json!(1)
    }
}

impl Shape for Contacts {
    fn kind() -> String {
        let fields = crate::introspect::fields::<super::types::ContactIn>().join(", ");
        format!("list of 1 to {MAX_CONTACTS} contacts {{{fields}}}, phone required")
    }
    fn sample() -> Value {
        json!([{"phone": "+393331234567", "first_name": "Anna"}])
    }
}

impl Described for super::types::ContactIn {
    fn params() -> Vec<ParamDoc> {
        vec![
            field::<E164>("phone"),
            field::<Option<String>>("first_name"),
            field::<Option<String>>("last_name"),
            field::<Option<Email>>("email"),
            field::<Option<String>>("language"),
            field::<Option<super::types::ContactStatus>>("status"),
            field::<Option<BTreeMap<String, String>>>("custom_fields"),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::prepare;

    /// Params built from the description: every documented one with its sample, or only the
    /// required ones.
    fn from_docs(docs: &[ParamDoc], all: bool) -> Value {
        let mut map = Map::new();
        for d in docs.iter().filter(|d| all || d.required) {
            map.insert(d.name.to_owned(), d.sample.clone());
        }
        Value::Object(map)
    }

    #[test]
    fn every_described_param_is_accepted_and_nothing_else() {
        for &action in Action::ALL {
            let docs = describe(action);
            // Every documented param, with a value of its documented type, is accepted.
            let full = from_docs(&docs, true);
            if let Err(e) = prepare(action.name(), full.clone()) {
                panic!("{action}: the documented params {full} are refused: {e}");
            }
            // The required ones alone are enough, unless the action wants something to change.
            match prepare(action.name(), from_docs(&docs, false)) {
                Ok(_) => {}
                Err(e) => assert!(
                    e.message.contains("nothing to change") || e.message.contains("at least one"),
                    "{action}: the required params alone are refused: {e}"
                ),
            }
            // Leaving out a required param is refused, naming it.
            for d in docs.iter().filter(|d| d.required) {
                let mut without = full.clone();
                if let Value::Object(m) = &mut without {
                    m.remove(d.name);
                }
                let e = prepare(action.name(), without).expect_err("a required param left out");
                assert!(
                    e.field.contains(d.name) || e.message.contains(d.name),
                    "{action}: {} left out, but the error is {e}",
                    d.name
                );
            }
            // A param that is not documented is refused.
            let mut extra = full.clone();
            if let Value::Object(m) = &mut extra {
                m.insert("not_a_param".into(), json!(1));
            }
            assert!(
                prepare(action.name(), extra).is_err(),
                "{action}: an undocumented param is accepted"
            );
        }
    }

    #[test]
    fn the_contact_description_names_every_field_the_type_reads() {
        let documented: Vec<&str> = super::super::types::ContactIn::params()
            .iter()
            .map(|d| d.name)
            .collect();
        assert_eq!(
            documented,
            crate::introspect::fields::<super::super::types::ContactIn>()
        );
    }
}
