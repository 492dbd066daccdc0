//! Raw text → clean values: phones to E.164 through libphonenumber's metadata, emails checked
//! against the HTML standard's `type=email` rule, custom-field codes from column headers.
//! Bad values are data (`RowIssue`), never errors.

use std::str::FromStr;

use rlibphonenumber::{PHONE_NUMBER_UTIL, Region};
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

use crate::domain::Phone;

/// Why a row was not accepted; the text is what reports and `/v1/rejects` show.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RowIssue {
    #[error("no phone number")]
    MissingPhone,
    #[error("invalid phone number")]
    InvalidPhone,
    /// The address as given, so the reject says what was refused.
    #[error("invalid email address {0:?}")]
    InvalidEmail(String),
    #[error("{field} is longer than {max} characters")]
    TooLong { field: String, max: usize },
}

/// Longest first name, last name or language accepted (Spoki's limits are not documented;
/// a request Spoki refuses as too large is final for its contact anyway).
pub const MAX_NAME_CHARS: usize = 255;
/// Longest e-mail address (RFC 5321's path limit).
pub const MAX_EMAIL_CHARS: usize = 254;
/// Longest custom-field value, and code.
pub const MAX_VALUE_CHARS: usize = 1000;
pub const MAX_CODE_CHARS: usize = 100;

/// Refuses a contact whose fields are larger than Spoki plausibly takes: better one clear
/// reject at the door than a request refused (or retried) later.
pub fn check_sizes(fields: &crate::domain::ContactFields) -> Result<(), RowIssue> {
    fn within(field: &str, value: Option<&str>, max: usize) -> Result<(), RowIssue> {
        match value {
            Some(v) if v.chars().count() > max => Err(RowIssue::TooLong {
                field: field.to_owned(),
                max,
            }),
            _ => Ok(()),
        }
    }
    within("first_name", fields.first_name.as_deref(), MAX_NAME_CHARS)?;
    within("last_name", fields.last_name.as_deref(), MAX_NAME_CHARS)?;
    within("language", fields.language.as_deref(), MAX_NAME_CHARS)?;
    within("email", fields.email.as_deref(), MAX_EMAIL_CHARS)?;
    for (code, value) in &fields.custom_fields {
        let short: String = code.chars().take(40).collect();
        within(
            &format!("custom field code {short}"),
            Some(code),
            MAX_CODE_CHARS,
        )?;
        within(
            &format!("custom field {code}"),
            Some(value),
            MAX_VALUE_CHARS,
        )?;
    }
    Ok(())
}

/// The region used for numbers written without a country code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DefaultRegion(Region);

impl DefaultRegion {
    pub fn parse(code: &str) -> Option<DefaultRegion> {
        let code = code.trim().to_ascii_uppercase();
        let region = Region::from_str(&code).ok()?;
        PHONE_NUMBER_UTIL
            .get_supported_regions()
            .any(|r| r == region)
            .then_some(DefaultRegion(region))
    }
}

/// Parses a phone as people write it ("333 123 4567", "0039 333...", "(333) 123.4567") into
/// E.164. Numbers that libphonenumber does not call valid for their region are refused, and so
/// are numbers with letters (libphonenumber would read `ABC` as keypad digits).
pub fn parse_phone(raw: &str, region: DefaultRegion) -> Result<Phone, RowIssue> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err(RowIssue::MissingPhone);
    }
    if raw.chars().any(char::is_alphabetic) {
        return Err(RowIssue::InvalidPhone);
    }
    let number = PHONE_NUMBER_UTIL
        .parse(raw, Some(region.0))
        .map_err(|_| RowIssue::InvalidPhone)?;
    if !PHONE_NUMBER_UTIL.is_valid_number(&number) {
        return Err(RowIssue::InvalidPhone);
    }
    let zeros = if number.italian_leading_zero.unwrap_or(false) {
        number.number_of_leading_zeros.unwrap_or(1).max(1) as u32
    } else {
        0
    };
    let country = u32::try_from(number.country_code).map_err(|_| RowIssue::InvalidPhone)?;
    let phone =
        Phone::from_parts(country, zeros, number.national_number).ok_or(RowIssue::InvalidPhone)?;
    if !phone.meets_spoki_rule() {
        return Err(RowIssue::InvalidPhone);
    }
    Ok(phone)
}

/// Loads libphonenumber's metadata now rather than on the first row (the first parse is slow).
pub fn warm_up() {
    let _ = PHONE_NUMBER_UTIL.parse("+393331234567", None);
}

/// Checks an email against the HTML standard's "valid e-mail address" rule and lower-cases its
/// domain. Returns `None` for an invalid address.
pub fn normalise_email(raw: &str) -> Option<String> {
    let (local, domain) = email_parts(raw)?;
    Some(format!("{local}@{}", domain.to_ascii_lowercase()))
}

/// Whether `normalise_email` accepts the address, without building it.
pub fn is_valid_email(raw: &str) -> bool {
    email_parts(raw).is_some()
}

/// The local part and domain of a valid address.
fn email_parts(raw: &str) -> Option<(&str, &str)> {
    let text = raw.trim();
    let (local, domain) = text.split_once('@')?;
    let local_ok = !local.is_empty()
        && local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".!#$%&'*+/=?^_`{|}~-".contains(&b));
    let domain_ok = !domain.is_empty()
        && domain.split('.').all(|label| {
            let bytes = label.as_bytes();
            !bytes.is_empty()
                && bytes.len() <= 63
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
                && bytes[0] != b'-'
                && bytes[bytes.len() - 1] != b'-'
        });
    (local_ok && domain_ok).then_some((local, domain))
}

/// The custom-field code for a column header: NFKD, combining marks dropped, ASCII letters and
/// digits upper-cased, every other run of characters one `_`, `_` trimmed from both ends.
/// `Città` → `CITTA`, `Order Id` → `ORDER_ID`, `Straße` → `STRA_E`.
pub fn custom_field_code(header: &str) -> String {
    let mut code = String::with_capacity(header.len());
    let mut gap = false;
    for c in header.nfkd().filter(|c| !is_combining_mark(*c)) {
        if c.is_ascii_alphanumeric() {
            if gap && !code.is_empty() {
                code.push('_');
            }
            gap = false;
            code.push(c.to_ascii_uppercase());
        } else {
            gap = true;
        }
    }
    code
}

/// Trims a cell; an empty cell is "no value".
pub fn clean_text(raw: &str) -> Option<String> {
    let t = raw.trim();
    (!t.is_empty()).then(|| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn it() -> DefaultRegion {
        DefaultRegion::parse("IT").expect("IT is a region")
    }

    #[test]
    fn italian_spellings_normalise_to_e164() {
        let cases = [
            ("+39 333 123 4567", "+393331234567"),
            ("0039 333 1234567", "+393331234567"),
            ("333-123-4567", "+393331234567"),
            ("(333) 123.4567", "+393331234567"),
            ("3331234567", "+393331234567"),
            ("06 6982 1234", "+390669821234"),
            ("+44 20 7946 0958", "+442079460958"),
            ("+1 415 555 2671", "+14155552671"),
        ];
        for (raw, want) in cases {
            let got = parse_phone(raw, it()).map(|p| p.to_string());
            assert_eq!(got.as_deref(), Ok(want), "{raw}");
        }
    }

    #[test]
    fn bad_phones_are_refused_with_a_reason() {
        assert_eq!(parse_phone("  ", it()), Err(RowIssue::MissingPhone));
        for raw in ["12345", "+39 000", "abc", "+1 555", "0039", "333-ABC-DEFG"] {
            assert_eq!(parse_phone(raw, it()), Err(RowIssue::InvalidPhone), "{raw}");
        }
    }

    #[test]
    fn oversized_fields_are_refused_with_the_field_named() {
        let mut f = crate::domain::ContactFields {
            first_name: Some("A".repeat(MAX_NAME_CHARS)),
            ..Default::default()
        };
        assert_eq!(check_sizes(&f), Ok(()));
        f.custom_fields
            .insert("NOTE".into(), "x".repeat(MAX_VALUE_CHARS + 1));
        assert_eq!(
            check_sizes(&f).map_err(|e| e.to_string()),
            Err("custom field NOTE is longer than 1000 characters".to_owned())
        );
        f.custom_fields.clear();
        f.email = Some(format!("{}@x.it", "a".repeat(MAX_EMAIL_CHARS)));
        assert!(check_sizes(&f).is_err());
    }

    #[test]
    fn emails_follow_the_html_rule() {
        assert_eq!(
            normalise_email(" Mario.Rossi@Example.IT "),
            Some("Mario.Rossi@example.it".into())
        );
        for bad in [
            "mario",
            "mario@",
            "@x.it",
            "ma rio@x.it",
            "mario@x..it",
            "mario@-x.it",
        ] {
            assert_eq!(normalise_email(bad), None, "{bad}");
        }
    }

    #[test]
    fn custom_field_codes_follow_the_contract() {
        let cases = [
            ("Order Id", "ORDER_ID"),
            ("Città", "CITTA"),
            ("Numéro", "NUMERO"),
            ("Straße", "STRA_E"),
            ("  Codice   Cliente ", "CODICE_CLIENTE"),
            ("__x--y__", "X_Y"),
        ];
        for (header, code) in cases {
            assert_eq!(custom_field_code(header), code, "{header}");
        }
    }
}
