//! Request-body validation for the simulator, following Django REST Framework's rules and
//! default messages: E.164 phones, Django-style e-mail syntax, string/boolean/choice coercion,
//! and the `{"field": ["message"]}` error shape.
//!
//! Everything here is pure; checks that need the stored data (unknown custom-field codes,
//! phone uniqueness, code uniqueness) live in `state.rs`.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde_json::{Map, Value, json};

/// DRF field errors: field name → list of messages (or a nested object for dict fields).
pub(super) type FieldErrors = Map<String, Value>;

pub(super) const MSG_REQUIRED: &str = "This field is required.";
pub(super) const MSG_NULL: &str = "This field may not be null.";
pub(super) const MSG_BLANK: &str = "This field may not be blank.";
pub(super) const MSG_NOT_STRING: &str = "Not a valid string.";
pub(super) const MSG_PHONE: &str = "Enter a valid phone number.";
pub(super) const MSG_EMAIL: &str = "Enter a valid email address.";
pub(super) const MSG_BOOLEAN: &str = "Must be a valid boolean.";
pub(super) const MSG_INTEGER: &str = "A valid integer is required.";
pub(super) const MSG_EMPTY_LIST: &str = "This list may not be empty.";

/// Marketing-consent values a contact's `status` may take.
pub(super) const CONTACT_STATUSES: [&str; 3] = ["Not Declared", "Subscribed", "Unsubscribed"];
/// Codes of the built-in contact fields, which no custom field may take.
pub(super) const RESERVED_CODES: [&str; 6] = [
    "FIRST_NAME",
    "LAST_NAME",
    "EMAIL",
    "PHONE",
    "ACCOUNT_NAME",
    "LANGUAGE",
];
/// Custom-field types: 1 text, 2 date, 3 datetime.
pub(super) const FIELD_TYPES: [i64; 3] = [1, 2, 3];

/// A contact write (`contacts/sync`, bulk items, `PATCH`): `None` means "absent, leave as is".
#[derive(Clone, Debug, Default)]
pub(super) struct ContactInput {
    pub phone: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    /// `Some(None)` clears the e-mail (the field is nullable).
    pub email: Option<Option<String>>,
    pub language: Option<String>,
    pub status: Option<String>,
    pub is_blocked: Option<bool>,
    pub notes: Option<String>,
    /// Custom-field code → value, in the order the codes sort.
    pub custom_fields: Vec<(String, String)>,
}

/// Whether a contact write must carry a phone (upserts) or may omit it (`PATCH`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum PhoneRule {
    Required,
    Optional,
}

/// A custom field as submitted to `POST /custom-fields/`, before the uniqueness check.
#[derive(Clone, Debug)]
pub(super) struct CustomFieldInput {
    pub label: String,
    pub code: String,
    pub field_type: i64,
    pub example: String,
}

/// Matches `^\+[1-9][0-9]{7,14}$`.
pub(super) fn is_e164(phone: &str) -> bool {
    let Some(digits) = phone.strip_prefix('+') else {
        return false;
    };
    let bytes = digits.as_bytes();
    (8..=15).contains(&bytes.len()) && bytes[0] != b'0' && bytes.iter().all(u8::is_ascii_digit)
}

/// Django's `EmailValidator`, ASCII part: a dot-atom local part, `@`, and a domain of at least
/// two labels whose last one is a top-level domain (letters, or an `xn--` punycode label).
pub(super) fn is_email(email: &str) -> bool {
    let Some((local, domain)) = email.rsplit_once('@') else {
        return false;
    };
    is_dot_atom(local) && is_domain(domain)
}

fn is_dot_atom(local: &str) -> bool {
    const SPECIALS: &str = "!#$%&'*+/=?^_`{|}~-";
    !local.is_empty()
        && local.split('.').all(|atom| {
            !atom.is_empty()
                && atom
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || SPECIALS.contains(c))
        })
}

fn is_domain(domain: &str) -> bool {
    let labels: Vec<&str> = domain.split('.').collect();
    let Some((tld, _)) = labels.split_last() else {
        return false;
    };
    let label_ok = |label: &&str| {
        (1..=63).contains(&label.len())
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    labels.len() >= 2
        && labels.iter().all(label_ok)
        && (tld.starts_with("xn--")
            || (tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic())))
}

/// Matches `^[A-Z0-9_]+$`.
pub(super) fn is_valid_code(code: &str) -> bool {
    !code.is_empty()
        && code
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

pub(super) fn is_reserved_code(code: &str) -> bool {
    RESERVED_CODES.contains(&code)
}

/// Python's name for a JSON value's type, as DRF puts it in its messages.
pub(super) fn py_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

/// DRF's error for a serializer fed something other than an object.
pub(super) fn not_a_dict(value: &Value) -> Value {
    json!({
        "non_field_errors": [format!(
            "Invalid data. Expected a dictionary, but got {}.",
            py_type(value)
        )]
    })
}

/// DRF's `ListField`/`ListSerializer` message for a non-list.
pub(super) fn not_a_list_message(value: &Value) -> String {
    format!(
        "Expected a list of items but got type \"{}\".",
        py_type(value)
    )
}

pub(super) fn too_many_message(max: usize) -> String {
    format!("Ensure this field has no more than {max} elements.")
}

pub(super) fn add_error(errors: &mut FieldErrors, field: &str, message: impl Into<String>) {
    let message = Value::String(message.into());
    match errors.get_mut(field) {
        Some(Value::Array(messages)) => messages.push(message),
        _ => {
            errors.insert(field.to_owned(), Value::Array(vec![message]));
        }
    }
}

/// A field read the way DRF's `CharField` reads it.
enum Text {
    Absent,
    Null,
    Invalid,
    Value(String),
}

fn read_text(obj: &Map<String, Value>, key: &str) -> Text {
    match obj.get(key) {
        None => Text::Absent,
        Some(Value::Null) => Text::Null,
        Some(Value::String(s)) => Text::Value(s.clone()),
        // CharField coerces numbers; booleans and containers are rejected.
        Some(Value::Number(n)) => Text::Value(n.to_string()),
        Some(_) => Text::Invalid,
    }
}

/// A non-nullable string field that may be blank.
fn plain_text(obj: &Map<String, Value>, key: &str, errors: &mut FieldErrors) -> Option<String> {
    match read_text(obj, key) {
        Text::Absent => None,
        Text::Null => {
            add_error(errors, key, MSG_NULL);
            None
        }
        Text::Invalid => {
            add_error(errors, key, MSG_NOT_STRING);
            None
        }
        Text::Value(s) => Some(s),
    }
}

/// A non-nullable, non-blank string field.
pub(super) fn required_text(
    obj: &Map<String, Value>,
    key: &str,
    required: bool,
    errors: &mut FieldErrors,
) -> Option<String> {
    if required && !obj.contains_key(key) {
        add_error(errors, key, MSG_REQUIRED);
        return None;
    }
    let value = plain_text(obj, key, errors)?;
    if value.is_empty() {
        add_error(errors, key, MSG_BLANK);
        return None;
    }
    Some(value)
}

fn read_bool(obj: &Map<String, Value>, key: &str, errors: &mut FieldErrors) -> Option<bool> {
    const TRUE: [&str; 6] = ["t", "y", "yes", "true", "on", "1"];
    const FALSE: [&str; 6] = ["f", "n", "no", "false", "off", "0"];
    let parsed = match obj.get(key)? {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_i64() {
            Some(1) => Some(true),
            Some(0) => Some(false),
            _ => None,
        },
        Value::String(s) => {
            let s = s.to_ascii_lowercase();
            if TRUE.contains(&s.as_str()) {
                Some(true)
            } else if FALSE.contains(&s.as_str()) {
                Some(false)
            } else {
                None
            }
        }
        Value::Null => {
            add_error(errors, key, MSG_NULL);
            return None;
        }
        _ => None,
    };
    if parsed.is_none() {
        add_error(errors, key, MSG_BOOLEAN);
    }
    parsed
}

fn read_custom_fields(obj: &Map<String, Value>, errors: &mut FieldErrors) -> Vec<(String, String)> {
    const KEY: &str = "custom_fields";
    let Some(value) = obj.get(KEY) else {
        return Vec::new();
    };
    let map = match value {
        Value::Object(map) => map,
        Value::Null => {
            add_error(errors, KEY, MSG_NULL);
            return Vec::new();
        }
        other => {
            add_error(
                errors,
                KEY,
                format!(
                    "Expected a dictionary of items but got type \"{}\".",
                    py_type(other)
                ),
            );
            return Vec::new();
        }
    };
    let mut nested = FieldErrors::new();
    let mut fields = Vec::with_capacity(map.len());
    for (code, value) in map {
        match value {
            Value::String(s) => fields.push((code.clone(), s.clone())),
            Value::Null => add_error(&mut nested, code, MSG_NULL),
            _ => add_error(&mut nested, code, MSG_NOT_STRING),
        }
    }
    if !nested.is_empty() {
        errors.insert(KEY.to_owned(), Value::Object(nested));
    }
    fields
}

/// Reads a contact write. `Err` only when the body is not an object at all; field errors come
/// back beside the (partial) input so the caller can add the checks that need stored data.
pub(super) fn contact_input(
    body: &Value,
    rule: PhoneRule,
) -> Result<(ContactInput, FieldErrors), Value> {
    let Value::Object(obj) = body else {
        return Err(not_a_dict(body));
    };
    let mut errors = FieldErrors::new();
    let mut input = ContactInput::default();

    match read_text(obj, "phone") {
        Text::Absent if rule == PhoneRule::Required => {
            add_error(&mut errors, "phone", MSG_REQUIRED);
        }
        Text::Absent => {}
        Text::Null => add_error(&mut errors, "phone", MSG_NULL),
        Text::Invalid => add_error(&mut errors, "phone", MSG_NOT_STRING),
        Text::Value(phone) if is_e164(&phone) => input.phone = Some(phone),
        Text::Value(_) => add_error(&mut errors, "phone", MSG_PHONE),
    }

    input.email = match read_text(obj, "email") {
        Text::Absent => None,
        Text::Null => Some(None),
        Text::Invalid => {
            add_error(&mut errors, "email", MSG_NOT_STRING);
            None
        }
        Text::Value(email) if is_email(&email) => Some(Some(email)),
        Text::Value(_) => {
            add_error(&mut errors, "email", MSG_EMAIL);
            None
        }
    };

    input.first_name = plain_text(obj, "first_name", &mut errors);
    input.last_name = plain_text(obj, "last_name", &mut errors);
    input.language = plain_text(obj, "language", &mut errors);
    input.notes = plain_text(obj, "notes", &mut errors);
    input.status = plain_text(obj, "status", &mut errors).and_then(|status| {
        if CONTACT_STATUSES.contains(&status.as_str()) {
            Some(status)
        } else {
            add_error(
                &mut errors,
                "status",
                format!("\"{status}\" is not a valid choice."),
            );
            None
        }
    });
    input.is_blocked = read_bool(obj, "is_blocked", &mut errors);
    input.custom_fields = read_custom_fields(obj, &mut errors);
    Ok((input, errors))
}

/// Reads `POST /custom-fields/`. Uniqueness of `code` is checked by the store.
pub(super) fn custom_field_input(body: &Value) -> Result<CustomFieldInput, Value> {
    let Value::Object(obj) = body else {
        return Err(not_a_dict(body));
    };
    let mut errors = FieldErrors::new();
    let label = required_text(obj, "label", true, &mut errors);
    let code = required_text(obj, "code", true, &mut errors).and_then(|code| {
        if !is_valid_code(&code) {
            add_error(
                &mut errors,
                "code",
                "Enter a valid code: only uppercase letters, digits and underscores.",
            );
            None
        } else if is_reserved_code(&code) {
            add_error(
                &mut errors,
                "code",
                format!("\"{code}\" is reserved for a built-in contact field."),
            );
            None
        } else {
            Some(code)
        }
    });
    let field_type = match obj.get("field_type") {
        None => {
            add_error(&mut errors, "field_type", MSG_REQUIRED);
            None
        }
        Some(Value::Null) => {
            add_error(&mut errors, "field_type", MSG_NULL);
            None
        }
        Some(value) => {
            let parsed = match value {
                Value::Number(n) => n.as_i64(),
                Value::String(s) => s.trim().parse::<i64>().ok(),
                _ => None,
            };
            match parsed {
                Some(t) if FIELD_TYPES.contains(&t) => Some(t),
                _ => {
                    let shown = match value {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    add_error(
                        &mut errors,
                        "field_type",
                        format!("\"{shown}\" is not a valid choice."),
                    );
                    None
                }
            }
        }
    };
    let example = match obj.get("example") {
        None | Some(Value::Null) => String::new(),
        Some(_) => plain_text(obj, "example", &mut errors).unwrap_or_default(),
    };
    match (label, code, field_type) {
        (Some(label), Some(code), Some(field_type)) if errors.is_empty() => Ok(CustomFieldInput {
            label,
            code,
            field_type,
            example,
        }),
        _ => Err(Value::Object(errors)),
    }
}

/// DRF `ChoiceField`: a string among `choices`. `None` when absent or wrong (error added).
pub(super) fn choice(
    obj: &Map<String, Value>,
    key: &str,
    choices: &[&str],
    required: bool,
    errors: &mut FieldErrors,
) -> Option<String> {
    if required && !obj.contains_key(key) {
        add_error(errors, key, MSG_REQUIRED);
        return None;
    }
    let value = match obj.get(key)? {
        Value::Null => {
            add_error(errors, key, MSG_NULL);
            return None;
        }
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if choices.contains(&value.as_str()) {
        Some(value)
    } else {
        add_error(errors, key, invalid_choice_message(&value));
        None
    }
}

/// DRF's `ChoiceField` message.
pub(super) fn invalid_choice_message(value: &str) -> String {
    format!("\"{value}\" is not a valid choice.")
}

/// django-filter's message for a query parameter outside its choices.
pub(super) fn invalid_filter_choice_message(value: &str) -> String {
    format!("Select a valid choice. {value} is not one of the available choices.")
}

/// A nullable string field: `None` absent, `Some(None)` null, `Some(Some(_))` a value.
pub(super) fn nullable_text(
    obj: &Map<String, Value>,
    key: &str,
    errors: &mut FieldErrors,
) -> Option<Option<String>> {
    match read_text(obj, key) {
        Text::Absent => None,
        Text::Null => Some(None),
        Text::Invalid => {
            add_error(errors, key, MSG_NOT_STRING);
            None
        }
        Text::Value(s) => Some(Some(s)),
    }
}

/// A boolean field read the way DRF's `BooleanField` reads it.
pub(super) fn boolean(
    obj: &Map<String, Value>,
    key: &str,
    errors: &mut FieldErrors,
) -> Option<bool> {
    read_bool(obj, key, errors)
}

/// DRF `IntegerField` coercion of one JSON value.
pub(super) fn as_int(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A nullable integer field (a primary key): `None` absent, `Some(None)` null.
pub(super) fn nullable_int(
    obj: &Map<String, Value>,
    key: &str,
    required: bool,
    errors: &mut FieldErrors,
) -> Option<Option<i64>> {
    match obj.get(key) {
        None => {
            if required {
                add_error(errors, key, MSG_REQUIRED);
            }
            None
        }
        Some(Value::Null) => Some(None),
        Some(value) => match as_int(value) {
            Some(n) => Some(Some(n)),
            None => {
                add_error(errors, key, MSG_INTEGER);
                None
            }
        },
    }
}

/// A JSON object field (`metadata`, `example_custom_fields`); null reads as absent.
pub(super) fn object(
    obj: &Map<String, Value>,
    key: &str,
    errors: &mut FieldErrors,
) -> Option<Map<String, Value>> {
    match obj.get(key)? {
        Value::Object(map) => Some(map.clone()),
        Value::Null => None,
        other => {
            add_error(
                errors,
                key,
                format!(
                    "Expected a dictionary of items but got type \"{}\".",
                    py_type(other)
                ),
            );
            None
        }
    }
}

/// Django's `URLValidator`, loosely: an `http(s)://` scheme, a host and no whitespace.
pub(super) fn is_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    rest.is_some_and(|rest| {
        let host = rest.split(['/', '?', '#']).next().unwrap_or("");
        !host.is_empty() && !url.chars().any(char::is_whitespace)
    })
}

/// DRF `DateField` with its default `YYYY-MM-DD` input format.
pub(super) fn parse_date(raw: &str) -> Option<NaiveDate> {
    if raw.len() != 10 {
        return None;
    }
    NaiveDate::parse_from_str(raw, "%Y-%m-%d").ok()
}

/// DRF `DateTimeField` input (ISO 8601); a naive time is taken as UTC, a bare date as midnight.
pub(super) fn parse_datetime(raw: &str) -> Option<DateTime<Utc>> {
    let raw = raw.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(raw) {
        return Some(at.with_timezone(&Utc));
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(at) = NaiveDateTime::parse_from_str(raw, format) {
            return Some(at.and_utc());
        }
    }
    parse_date(raw)
        .and_then(|day| day.and_hms_opt(0, 0, 0))
        .map(|at| at.and_utc())
}

pub(super) const MSG_DATE: &str =
    "Date has wrong format. Use one of these formats instead: YYYY-MM-DD.";
pub(super) const MSG_DATETIME: &str = "Datetime has wrong format. Use one of these formats instead: YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z].";
pub(super) const MSG_URL: &str = "Enter a valid URL.";

/// DRF's message for a primary key that names nothing.
pub(super) fn no_such_pk_message(pk: i64) -> String {
    format!("Invalid pk \"{pk}\" - object does not exist.")
}

/// Reads an optional list of integers (`ids` of `remove_contacts`).
pub(super) fn int_list(obj: &Map<String, Value>, key: &str, errors: &mut FieldErrors) -> Vec<i64> {
    list_of(obj, key, errors, as_int, MSG_INTEGER)
}

/// Reads an optional list of strings (`phones`, `emails` of `remove_contacts`).
pub(super) fn string_list(
    obj: &Map<String, Value>,
    key: &str,
    errors: &mut FieldErrors,
) -> Vec<String> {
    list_of(
        obj,
        key,
        errors,
        |value| value.as_str().map(str::to_owned),
        MSG_NOT_STRING,
    )
}

fn list_of<T>(
    obj: &Map<String, Value>,
    key: &str,
    errors: &mut FieldErrors,
    item: impl Fn(&Value) -> Option<T>,
    item_message: &str,
) -> Vec<T> {
    let items = match obj.get(key) {
        None => return Vec::new(),
        Some(Value::Array(items)) => items,
        Some(Value::Null) => {
            add_error(errors, key, MSG_NULL);
            return Vec::new();
        }
        Some(other) => {
            add_error(errors, key, not_a_list_message(other));
            return Vec::new();
        }
    };
    let mut nested = FieldErrors::new();
    let mut out = Vec::with_capacity(items.len());
    for (index, value) in items.iter().enumerate() {
        match item(value) {
            Some(v) => out.push(v),
            None => add_error(&mut nested, &index.to_string(), item_message),
        }
    }
    if !nested.is_empty() {
        errors.insert(key.to_owned(), Value::Object(nested));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e164_follows_the_pattern() {
        for ok in [
            "+393331234567",
            "+12025550123",
            "+12345678",
            "+123456789012345",
        ] {
            assert!(is_e164(ok), "{ok}");
        }
        for bad in [
            "393331234567",
            "+0393331234567",
            "+1234567",
            "+1234567890123456",
            "+39 333 1234567",
            " +393331234567",
            "+39333123456a",
            "",
            "+",
        ] {
            assert!(!is_e164(bad), "{bad}");
        }
    }

    #[test]
    fn email_follows_django() {
        for ok in [
            "a@b.it",
            "mario.rossi+x@example.co.uk",
            "x_y@sub-d.example.com",
            "a@xn--80ak6aa92e.com",
        ] {
            assert!(is_email(ok), "{ok}");
        }
        for bad in [
            "",
            "a@b",
            "a@b.c",
            "a b@c.it",
            "@c.it",
            "a@.it",
            "a@-b.it",
            "a..b@c.it",
            "a@b.1t",
            "a@b.it ",
        ] {
            assert!(!is_email(bad), "{bad}");
        }
    }

    #[test]
    fn codes() {
        assert!(is_valid_code("ORDER_ID_2"));
        assert!(!is_valid_code("order_id"));
        assert!(!is_valid_code("ORDER-ID"));
        assert!(!is_valid_code(""));
        assert!(is_reserved_code("EMAIL"));
    }

    #[test]
    fn contact_input_collects_every_field_error() {
        let body = json!({
            "phone": "3331234567",
            "email": "nope",
            "first_name": null,
            "status": "Maybe",
            "is_blocked": "perhaps",
            "custom_fields": {"A": 1, "B": "ok"}
        });
        let (input, errors) = contact_input(&body, PhoneRule::Required).expect("an object");
        assert_eq!(
            Value::Object(errors),
            json!({
                "phone": [MSG_PHONE],
                "email": [MSG_EMAIL],
                "first_name": [MSG_NULL],
                "status": ["\"Maybe\" is not a valid choice."],
                "is_blocked": [MSG_BOOLEAN],
                "custom_fields": {"A": [MSG_NOT_STRING]}
            })
        );
        assert_eq!(input.custom_fields, vec![("B".to_owned(), "ok".to_owned())]);
        assert!(contact_input(&json!([]), PhoneRule::Required).is_err());
    }
}
