//! Pure rules for the mirror, with no SQL: what a row other programs wrote into `contacts`
//! means (or why it cannot be sent), and when a cycle's deletions must wait for a
//! confirmation (`mirror.max_delete_share`). `store/mirror.rs` reads the cells and counts; the
//! decisions are here, unit-tested without SQLite.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::domain::ContactFields;
use crate::normalise;

/// The cells of one mirror row, read as text (blank cells as `None`).
#[derive(Clone, Debug, Default)]
pub struct MirrorCells {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<String>,
    pub language: Option<String>,
    /// The `custom_fields` JSON as written.
    pub custom_fields: Option<String>,
}

/// A row's fields, or why it cannot be sent: `custom_fields` must be a JSON object of code
/// to text, and an e-mail must pass the HTML standard's rule.
pub fn read_row(cells: MirrorCells) -> Result<ContactFields, String> {
    let custom = cells.custom_fields.unwrap_or_default();
    let custom_fields = if custom.trim().is_empty() {
        BTreeMap::new()
    } else {
        parse_custom(&custom)?
    };
    let email = match cells.email {
        Some(e) => match normalise::normalise_email(&e) {
            Some(ok) => Some(ok),
            None => return Err(format!("email {e:?} is not a valid address")),
        },
        None => None,
    };
    Ok(ContactFields {
        first_name: cells.first_name,
        last_name: cells.last_name,
        email,
        language: cells.language,
        custom_fields,
    })
}

/// A mirror row's `custom_fields`: a JSON object of code → string (numbers and booleans are
/// taken as their text).
pub fn parse_custom(text: &str) -> Result<BTreeMap<String, String>, String> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| format!("custom_fields is not valid JSON ({e})"))?;
    let Value::Object(map) = value else {
        return Err("custom_fields is not a JSON object".to_owned());
    };
    let mut out = BTreeMap::new();
    for (code, v) in map {
        let text = match v {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Null => continue,
            _ => return Err(format!("custom_fields.{code} is not a text value")),
        };
        if !text.trim().is_empty() {
            out.insert(code, text);
        }
    }
    Ok(out)
}

/// One cycle's deletions in one direction, with what is already queued.
#[derive(Clone, Copy, Debug)]
pub struct DeleteCycle {
    /// Earlier deletions in this direction wait for confirmation.
    pub already_held: bool,
    /// Deletions already queued in this direction.
    pub queued: u64,
    /// Deletions this cycle adds.
    pub this_cycle: u64,
    /// Contacts Spoki knows.
    pub known: u64,
    /// `mirror.max_delete_share`, 0.0..=1.0.
    pub max_share: f64,
}

/// Whether the cycle's deletions wait for `POST /v1/sync/deletes/confirm`: they would delete
/// more than the share of the known contacts, counting every queued deletion, or earlier ones
/// already wait (so a mass deletion cannot trickle through in small cycles).
pub fn deletes_wait(c: DeleteCycle) -> bool {
    let total = (c.queued + c.this_cycle) as f64;
    c.already_held || total > c.max_share * c.known.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_read_or_refused_with_a_reason() {
        let ok = read_row(MirrorCells {
            first_name: Some("Anna".into()),
            email: Some("Anna@Example.IT".into()),
            custom_fields: Some(r#"{"CITTA": "Roma", "N": 7, "GONE": null, "BLANK": " "}"#.into()),
            ..Default::default()
        })
        .expect("readable");
        assert_eq!(ok.email.as_deref(), Some("Anna@example.it"));
        assert_eq!(ok.custom_fields.len(), 2);
        assert_eq!(ok.custom_fields["N"], "7");
        let bad = |cells: MirrorCells| read_row(cells).expect_err("refused");
        assert!(
            bad(MirrorCells {
                custom_fields: Some("[1]".into()),
                ..Default::default()
            })
            .contains("not a JSON object")
        );
        assert!(
            bad(MirrorCells {
                custom_fields: Some(r#"{"X": {"deep": 1}}"#.into()),
                ..Default::default()
            })
            .contains("custom_fields.X")
        );
        assert!(
            bad(MirrorCells {
                email: Some("nope".into()),
                ..Default::default()
            })
            .contains("not a valid address")
        );
    }

    #[test]
    fn deletions_wait_above_the_share_or_behind_held_ones() {
        let cycle = |already_held, queued, this_cycle| DeleteCycle {
            already_held,
            queued,
            this_cycle,
            known: 100,
            max_share: 0.1,
        };
        assert!(!deletes_wait(cycle(false, 0, 10)), "exactly the share goes");
        assert!(deletes_wait(cycle(false, 0, 11)));
        assert!(deletes_wait(cycle(false, 6, 5)), "queued ones count");
        assert!(deletes_wait(cycle(true, 0, 1)), "behind held ones");
        // No known contacts counts as one: any deletion is more than a share of it.
        let empty = DeleteCycle {
            known: 0,
            ..cycle(false, 0, 1)
        };
        assert!(deletes_wait(empty));
    }
}
