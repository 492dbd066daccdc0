//! Value types that check themselves while being deserialised, so a typed params struct that
//! parsed is a valid request: E.164 phones, e-mails, ids, dates, custom-field codes and the
//! enumerations Spoki documents. Each error text names what was expected.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

use crate::normalise;

/// Most contacts one bulk request may carry (Spoki's bulk sync endpoints).
pub const MAX_CONTACTS: usize = 500;

/// A phone in E.164 (`+`, the country code, the number, nothing else), valid by
/// libphonenumber's metadata: the same rule as the CSV path (`normalise::parse_phone`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct E164(String);

impl TryFrom<String> for E164 {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let parsed = text
            .starts_with('+')
            .then(|| {
                normalise::DefaultRegion::parse("IT")
                    .and_then(|region| normalise::parse_phone(&text, region).ok())
            })
            .flatten();
        match parsed {
            Some(phone) if phone.to_string() == text => Ok(E164(text)),
            Some(phone) => Err(format!(
                "{text:?} is not written in E.164 (did you mean {phone}?)"
            )),
            None => Err(format!(
                "{text:?} is not a valid phone number in E.164 (a + and the country code, \
                 then the number's digits)"
            )),
        }
    }
}

impl From<E164> for String {
    fn from(p: E164) -> String {
        p.0
    }
}

/// An address that passes the HTML standard's `type=email` rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl TryFrom<String> for Email {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        normalise::normalise_email(&text)
            .map(Email)
            .ok_or_else(|| format!("{text:?} is not a valid e-mail address"))
    }
}

impl From<Email> for String {
    fn from(e: Email) -> String {
        e.0
    }
}

/// A Spoki id: a positive integer. A string of digits is read as the number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Id(pub u64);

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct IdVisitor;
        impl Visitor<'_> for IdVisitor {
            type Value = Id;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a positive integer id")
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Id, E> {
                if v == 0 {
                    Err(E::custom("an id is a positive integer, not 0"))
                } else {
                    Ok(Id(v))
                }
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Id, E> {
                u64::try_from(v)
                    .map_err(|_| E::custom(format!("an id is a positive integer, not {v}")))
                    .and_then(|v| self.visit_u64(v))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Id, E> {
                match v.parse::<u64>() {
                    Ok(n) => self.visit_u64(n),
                    Err(_) => Err(E::custom(format!("an id is a positive integer, not {v:?}"))),
                }
            }
        }
        d.deserialize_any(IdVisitor)
    }
}

/// A non-empty text (after trimming).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Text(String);

impl TryFrom<String> for Text {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        if text.trim().is_empty() {
            Err("must not be empty".to_owned())
        } else {
            Ok(Text(text))
        }
    }
}

impl From<Text> for String {
    fn from(t: Text) -> String {
        t.0
    }
}

/// A calendar date written `YYYY-MM-DD`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Date(String);

impl TryFrom<String> for Date {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        chrono::NaiveDate::parse_from_str(&text, "%Y-%m-%d")
            .map(|_| Date(text.clone()))
            .map_err(|_| format!("{text:?} is not a date written YYYY-MM-DD"))
    }
}

impl From<Date> for String {
    fn from(d: Date) -> String {
        d.0
    }
}

/// An ISO-8601 date and time, e.g. `2026-12-01T09:00:00+01:00`. Spoki's timestamps are
/// ISO-8601; whether it needs an offset is not known, so one without (or a bare date) is
/// passed on and Spoki's own answer decides.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DateTime(String);

impl TryFrom<String> for DateTime {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let iso = chrono::DateTime::parse_from_rfc3339(&text).is_ok()
            || [
                "%Y-%m-%dT%H:%M:%S%.f",
                "%Y-%m-%dT%H:%M",
                "%Y-%m-%d %H:%M:%S%.f",
            ]
            .iter()
            .any(|f| chrono::NaiveDateTime::parse_from_str(&text, f).is_ok())
            || chrono::NaiveDate::parse_from_str(&text, "%Y-%m-%d").is_ok();
        if iso {
            Ok(DateTime(text))
        } else {
            Err(format!(
                "{text:?} is not an ISO-8601 date and time (e.g. 2026-12-01T09:00:00Z)"
            ))
        }
    }
}

impl From<DateTime> for String {
    fn from(d: DateTime) -> String {
        d.0
    }
}

/// A custom-field code: upper-case letters, digits and `_` (Spoki's codes are written
/// UPPERCASE_UNDERSCORE). Whether one may start with a digit (`2ND_PHONE`, which the CSV rule
/// makes from a header) or be one of the built-in names is not known for sure: those are passed
/// on, and Spoki's own 400 comes back in the command's `error`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FieldCode(String);

impl TryFrom<String> for FieldCode {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let shaped = !text.is_empty()
            && text
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
        if shaped {
            Ok(FieldCode(text))
        } else {
            Err(format!(
                "{text:?} is not a custom-field code (upper-case letters, digits and _)"
            ))
        }
    }
}

impl From<FieldCode> for String {
    fn from(c: FieldCode) -> String {
        c.0
    }
}

/// The type of a custom field: 1 text, 2 date, 3 date and time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u64")]
pub struct FieldType(u64);

impl TryFrom<u64> for FieldType {
    type Error = String;

    fn try_from(n: u64) -> Result<Self, String> {
        if (1..=3).contains(&n) {
            Ok(FieldType(n))
        } else {
            Err(format!(
                "field_type {n} is not one of 1 (text), 2 (date), 3 (date and time)"
            ))
        }
    }
}

impl From<FieldType> for u64 {
    fn from(t: FieldType) -> u64 {
        t.0
    }
}

/// Declares a string enumeration with its wire spellings.
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $wire:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
        pub enum $name {
            $(#[serde(rename = $wire)] $variant,)+
        }

        impl crate::commands::describe::Shape for $name {
            fn kind() -> String {
                let quoted: Vec<String> = [$($wire),+].iter().map(|w| format!("{w:?}")).collect();
                format!("one of {}", quoted.join(", "))
            }
            fn sample() -> serde_json::Value {
                serde_json::Value::from([$($wire),+][0])
            }
        }
    };
}

string_enum!(
    /// `status` of a ticket.
    TicketStatus { Open = "Open", InProgress = "In Progress", Pending = "Pending", Closed = "Closed" }
);
string_enum!(
    /// `priority` of a ticket.
    TicketPriority { Highest = "Highest", High = "High", Medium = "Medium", Low = "Low" }
);
string_enum!(
    /// `category` of a WhatsApp template.
    TemplateCategory { Utility = "UTILITY", Marketing = "MARKETING", Authentication = "AUTHENTICATION" }
);
string_enum!(
    /// `granularity` of a report.
    Granularity { Day = "Day", Month = "Month", Year = "Year" }
);
/// A role name. Spoki's examples show `Administrator`, `Chat Operator` and `Chat Operator
/// Manager`, but no source says the list is closed: any other name is passed on, and Spoki's
/// own answer decides.
pub type RoleName = Text;
string_enum!(
    /// Marketing consent of a contact.
    ContactStatus { NotDeclared = "Not Declared", Subscribed = "Subscribed", Unsubscribed = "Unsubscribed" }
);
string_enum!(
    /// `status` of a campaign.
    CampaignStatus { Draft = "Draft", Scheduled = "Scheduled", Processing = "Processing", Completed = "Completed" }
);
string_enum!(
    /// Sort direction of the ticket list.
    SortOrder { Asc = "asc", Desc = "desc" }
);
string_enum!(
    /// `webhook_platform` filter of the automation list.
    WebhookPlatform {
        Api = "Api",
        ActiveCampaign = "Active Campaign",
        Woocommerce = "Woocommerce",
        Magento = "Magento",
        Prestashop = "Prestashop",
        Shopify = "Shopify",
        Zapier = "Zapier",
        Qapla = "Qapla'",
        BrainLead = "BrainLead",
        HubSpot = "HubSpot",
        Klaviyo = "Klaviyo",
        Zoho = "Zoho",
        Sendinblue = "Sendinblue",
        WpNotif = "WPNotif",
        Connectif = "Connectif",
        Ifttt = "IFTTT",
        Pipedrive = "Pipedrive",
        Meta = "Meta",
        Zendesk = "Zendesk",
    }
);

/// A field as the user gave it: left out, an explicit `null` (to clear it), or a value. Only
/// a left-out field is left out of the request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Given<T> {
    #[default]
    Absent,
    Null,
    Value(T),
}

impl<T> Given<T> {
    pub fn is_absent(&self) -> bool {
        matches!(self, Given::Absent)
    }
}

impl<T: Serialize> Serialize for Given<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Given::Value(v) => v.serialize(s),
            Given::Absent | Given::Null => s.serialize_none(),
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Given<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Called only for a key that is present (`#[serde(default)]` covers the rest).
        Ok(match Option::<T>::deserialize(d)? {
            Some(v) => Given::Value(v),
            None => Given::Null,
        })
    }
}

/// One contact as the sync endpoints take it; an explicit `null` is sent as given.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactIn {
    pub phone: E164,
    #[serde(default, skip_serializing_if = "Given::is_absent")]
    pub first_name: Given<String>,
    #[serde(default, skip_serializing_if = "Given::is_absent")]
    pub last_name: Given<String>,
    #[serde(default, skip_serializing_if = "Given::is_absent")]
    pub email: Given<Email>,
    #[serde(default, skip_serializing_if = "Given::is_absent")]
    pub language: Given<String>,
    #[serde(default, skip_serializing_if = "Given::is_absent")]
    pub status: Given<ContactStatus>,
    #[serde(default, skip_serializing_if = "Given::is_absent")]
    pub custom_fields: Given<BTreeMap<String, Option<String>>>,
}

/// 1 to 500 contacts.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(try_from = "Vec<ContactIn>", into = "Vec<ContactIn>")]
pub struct Contacts(Vec<ContactIn>);

impl TryFrom<Vec<ContactIn>> for Contacts {
    type Error = String;

    fn try_from(v: Vec<ContactIn>) -> Result<Self, String> {
        match v.len() {
            0 => Err("at least one contact is needed".to_owned()),
            n if n > MAX_CONTACTS => Err(format!(
                "at most {MAX_CONTACTS} contacts fit in one request, got {n}"
            )),
            _ => Ok(Contacts(v)),
        }
    }
}

impl From<Contacts> for Vec<ContactIn> {
    fn from(c: Contacts) -> Vec<ContactIn> {
        c.0
    }
}

impl Contacts {
    pub fn phones(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|c| c.phone.0.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn e164_rule() {
        for ok in ["+393331234567", "+12025550123", "+4930123456"] {
            assert!(E164::try_from(ok.to_owned()).is_ok(), "{ok}");
        }
        for bad in [
            "393331234567",
            "+0393331234",
            "+39 333 1234567",
            "+1234567",
            "+",
            // Fifteen digits, so the old 8-15 digit rule took it; no such Italian number.
            "+393331234567890",
        ] {
            assert!(E164::try_from(bad.to_owned()).is_err(), "{bad}");
        }
    }

    #[test]
    fn ids_are_positive_integers() {
        assert_eq!(serde_json::from_value::<Id>(json!(7)).ok(), Some(Id(7)));
        assert_eq!(serde_json::from_value::<Id>(json!("42")).ok(), Some(Id(42)));
        for bad in [json!(0), json!(-3), json!("x1"), json!(1.5), json!(null)] {
            assert!(serde_json::from_value::<Id>(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn codes_and_enums() {
        assert!(FieldCode::try_from("ORDER_ID".to_owned()).is_ok());
        assert!(FieldCode::try_from("order_id".to_owned()).is_err());
        // Single-source rules are Spoki's to apply: passed on.
        assert!(FieldCode::try_from("2ND_PHONE".to_owned()).is_ok());
        assert!(FieldCode::try_from("EMAIL".to_owned()).is_ok());
        assert!(DateTime::try_from("2026-12-01T09:00:00".to_owned()).is_ok());
        assert!(DateTime::try_from("tomorrow".to_owned()).is_err());
        assert!(serde_json::from_value::<TicketStatus>(json!("In Progress")).is_ok());
        assert!(serde_json::from_value::<TicketStatus>(json!("open")).is_err());
        assert!(serde_json::from_value::<FieldType>(json!(4)).is_err());
        assert!(Date::try_from("2026-02-30".to_owned()).is_err());
    }

    #[test]
    fn contacts_hold_one_to_five_hundred() {
        let one = json!({"phone": "+393331234567"});
        let many = |n: usize| json!(vec![one.clone(); n]);
        assert!(serde_json::from_value::<Contacts>(many(500)).is_ok());
        assert!(serde_json::from_value::<Contacts>(many(501)).is_err());
        assert!(serde_json::from_value::<Contacts>(many(0)).is_err());
    }
}
