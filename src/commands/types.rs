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

/// A phone in E.164: `+`, a country code that does not start with 0, 8 to 15 digits in all.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct E164(String);

impl TryFrom<String> for E164 {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let ok = text.strip_prefix('+').is_some_and(|digits| {
            (8..=15).contains(&digits.len())
                && digits.bytes().all(|b| b.is_ascii_digit())
                && !digits.starts_with('0')
        });
        if ok {
            Ok(E164(text))
        } else {
            Err(format!(
                "{text:?} is not an E.164 phone number (a + and the country code, then digits \
                 only, 8 to 15 in all)"
            ))
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

/// An ISO-8601 (RFC 3339) date and time with its offset, e.g. `2026-12-01T09:00:00+01:00`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DateTime(String);

impl TryFrom<String> for DateTime {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        chrono::DateTime::parse_from_rfc3339(&text)
            .map(|_| DateTime(text.clone()))
            .map_err(|_| {
                format!("{text:?} is not an ISO-8601 date and time (e.g. 2026-12-01T09:00:00Z)")
            })
    }
}

impl From<DateTime> for String {
    fn from(d: DateTime) -> String {
        d.0
    }
}

/// Codes of Spoki's built-in contact fields, refused as custom-field codes (Spoki's custom-field rules).
const RESERVED_CODES: [&str; 6] = [
    "FIRST_NAME",
    "LAST_NAME",
    "EMAIL",
    "PHONE",
    "ACCOUNT_NAME",
    "LANGUAGE",
];

/// A custom-field code: upper-case letters, digits and `_`, starting with a letter, not reserved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FieldCode(String);

impl TryFrom<String> for FieldCode {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let shaped = text.starts_with(|c: char| c.is_ascii_uppercase())
            && text
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
        if !shaped {
            return Err(format!(
                "{text:?} is not a custom-field code (upper-case letters, digits and _, \
                 starting with a letter)"
            ));
        }
        if RESERVED_CODES.contains(&text.as_str()) {
            return Err(format!(
                "{text:?} is a built-in contact field, not a custom field"
            ));
        }
        Ok(FieldCode(text))
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
string_enum!(
    /// Role names seen in Spoki's examples.
    RoleName {
        Administrator = "Administrator",
        ChatOperator = "Chat Operator",
        ChatOperatorManager = "Chat Operator Manager",
    }
);
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

/// One contact as the sync endpoints take it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactIn {
    pub phone: E164,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<Email>,
    pub language: Option<String>,
    pub status: Option<ContactStatus>,
    pub custom_fields: Option<BTreeMap<String, String>>,
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
        assert!(FieldCode::try_from("EMAIL".to_owned()).is_err());
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
