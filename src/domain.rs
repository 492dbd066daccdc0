//! Pure contact types: no IO, no async. A `Phone` can only be built by parsing, so code that
//! holds one never re-checks it.

use std::collections::BTreeMap;
use std::fmt;
use std::num::NonZeroU64;

/// An E.164 phone number, stored as its digits (at most 15, so a `u64` holds every one; never
/// zero, so `Option<Phone>` is 8 bytes too).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Phone(NonZeroU64);

impl Phone {
    /// Builds a phone from a country code, the national number's leading zeros (Italian
    /// landlines keep theirs in E.164) and the national number, as libphonenumber gives them.
    pub(crate) fn from_parts(
        country_code: u32,
        leading_zeros: u32,
        national_number: u64,
    ) -> Option<Phone> {
        let cc = u64::from(country_code);
        let width = count_digits(national_number) + leading_zeros;
        let value = cc
            .checked_mul(10u64.checked_pow(width)?)?
            .checked_add(national_number)?;
        if count_digits(value) > 15 || country_code == 0 {
            return None;
        }
        NonZeroU64::new(value).map(Phone)
    }

    /// Reads back a phone this program stored as `+<digits>` (database rows, Spoki answers).
    /// Accepts exactly the shape Spoki requires: `^\+[1-9][0-9]{7,14}$`.
    pub fn from_e164(text: &str) -> Option<Phone> {
        let digits = text.strip_prefix('+')?;
        let ok = (8..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0');
        if !ok {
            return None;
        }
        digits.parse().ok().and_then(NonZeroU64::new).map(Phone)
    }

    /// Whether Spoki accepts this number (`^\+[1-9][0-9]{7,14}$`): libphonenumber calls some
    /// very short national numbers valid that Spoki's E.164 check refuses.
    pub fn meets_spoki_rule(self) -> bool {
        (8..=15).contains(&count_digits(self.0.get()))
    }

    pub fn digits(self) -> u64 {
        self.0.get()
    }
}

fn count_digits(mut n: u64) -> u32 {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

impl fmt::Display for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "+{}", self.0)
    }
}

/// Spoki list id; contacts synced without a list use `ListId::NONE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ListId(pub i64);

impl ListId {
    pub const NONE: ListId = ListId(0);

    pub fn is_none(self) -> bool {
        self.0 == 0
    }
}

/// The writable fields of a contact. `None` means "no value known / nothing to write": a blank
/// never overwrites a value.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ContactFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub custom_fields: BTreeMap<String, String>,
}

impl ContactFields {
    pub fn is_empty(&self) -> bool {
        self.first_name.is_none()
            && self.last_name.is_none()
            && self.email.is_none()
            && self.language.is_none()
            && self.custom_fields.is_empty()
    }

    /// Writes every value `newer` carries over `self`; values `newer` lacks stay as they are.
    pub fn overlay(&mut self, newer: &ContactFields) {
        fn put(slot: &mut Option<String>, value: &Option<String>) {
            if let Some(v) = value {
                *slot = Some(v.clone());
            }
        }
        put(&mut self.first_name, &newer.first_name);
        put(&mut self.last_name, &newer.last_name);
        put(&mut self.email, &newer.email);
        put(&mut self.language, &newer.language);
        for (code, value) in &newer.custom_fields {
            self.custom_fields.insert(code.clone(), value.clone());
        }
    }

    /// Like `overlay`, but only fills the fields `self` has no value for (older under newer).
    pub fn fill_from_older(&mut self, older: &ContactFields) {
        let mut merged = older.clone();
        merged.overlay(self);
        *self = merged;
    }
}

/// A contact as read from an input: its phone and the fields the input gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contact {
    pub phone: Phone,
    pub fields: ContactFields,
}

/// A contact as a Spoki write carries it.
impl From<&Contact> for spoki_api::ContactPayload {
    fn from(c: &Contact) -> spoki_api::ContactPayload {
        let f = &c.fields;
        spoki_api::ContactPayload {
            phone: c.phone.to_string(),
            first_name: f.first_name.clone(),
            last_name: f.last_name.clone(),
            email: f.email.clone(),
            language: f.language.clone(),
            custom_fields: f.custom_fields.clone(),
        }
    }
}

/// The fields of a contact as Spoki returns it, in our terms: blank values count as absent,
/// `%%CODE%%` becomes `CODE`.
impl From<&spoki_api::ContactRecord> for ContactFields {
    fn from(r: &spoki_api::ContactRecord) -> ContactFields {
        fn some(v: &Option<String>) -> Option<String> {
            v.as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        }
        let custom_fields = r
            .contactfield_set
            .iter()
            .filter_map(|cf| {
                let code = cf.visual_code.as_deref()?.trim_matches('%');
                let value = some(&cf.value)?;
                (!code.is_empty()).then(|| (code.to_string(), value))
            })
            .collect();
        ContactFields {
            first_name: some(&r.first_name),
            last_name: some(&r.last_name),
            email: some(&r.email),
            language: some(&r.language),
            custom_fields,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_round_trips_through_e164_text() {
        let p = Phone::from_parts(39, 0, 3331234567).expect("valid parts");
        assert_eq!(p.to_string(), "+393331234567");
        assert_eq!(Phone::from_e164("+393331234567"), Some(p));
        let landline = Phone::from_parts(39, 1, 612345678).expect("valid parts");
        assert_eq!(landline.to_string(), "+390612345678");
    }

    #[test]
    fn from_e164_refuses_what_spoki_refuses() {
        for bad in [
            "393331234567",
            "+0393331234567",
            "+1234567",
            "+1234567890123456",
            "+39 333",
        ] {
            assert_eq!(Phone::from_e164(bad), None, "{bad}");
        }
    }

    #[test]
    fn record_reads_custom_fields_by_visual_code() {
        let r: spoki_api::ContactRecord = serde_json::from_value(serde_json::json!({
            "id": 7, "phone": "+393331234567", "first_name": "Anna", "email": null,
            "contactfield_set": [{"id": 1, "field": 3, "value": "Roma", "visual_code": "%%CITTA%%"}]
        }))
        .expect("parses");
        let f = ContactFields::from(&r);
        assert_eq!(f.first_name.as_deref(), Some("Anna"));
        assert_eq!(f.email, None);
        assert_eq!(f.custom_fields["CITTA"], "Roma");
    }

    #[test]
    fn overlay_keeps_values_the_newer_side_lacks() {
        let mut a = ContactFields {
            first_name: Some("Anna".into()),
            email: Some("a@x.it".into()),
            ..Default::default()
        };
        let b = ContactFields {
            first_name: Some("Anna Maria".into()),
            custom_fields: [("CITTA".to_string(), "Roma".to_string())].into(),
            ..Default::default()
        };
        a.overlay(&b);
        assert_eq!(a.first_name.as_deref(), Some("Anna Maria"));
        assert_eq!(a.email.as_deref(), Some("a@x.it"));
        assert_eq!(a.custom_fields["CITTA"], "Roma");
    }
}
