//! Pure field-level three-way merge between the mirror and Spoki, against the last state both
//! sides agreed on (the base: `contact_state`, what Spoki acknowledged). ARCHITECTURE.md
//! ("Both directions") explains why this keeps both sides in step without echoes.
//!
//! A value of `None` carries no information: a blank never overwrites, on either side.

use serde::Serialize;

use crate::config::ConflictWinner;
use crate::domain::ContactFields;

/// One field's name: a built-in field or a custom-field code.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Field {
    FirstName,
    LastName,
    Email,
    Language,
    Custom(String),
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Field::FirstName => f.write_str("first_name"),
            Field::LastName => f.write_str("last_name"),
            Field::Email => f.write_str("email"),
            Field::Language => f.write_str("language"),
            Field::Custom(code) => write!(f, "custom_fields.{code}"),
        }
    }
}

fn get<'a>(c: &'a ContactFields, field: &Field) -> Option<&'a str> {
    match field {
        Field::FirstName => c.first_name.as_deref(),
        Field::LastName => c.last_name.as_deref(),
        Field::Email => c.email.as_deref(),
        Field::Language => c.language.as_deref(),
        Field::Custom(code) => c.custom_fields.get(code).map(String::as_str),
    }
}

fn set(c: &mut ContactFields, field: &Field, value: Option<&str>) {
    let value = value.map(str::to_owned);
    match field {
        Field::FirstName => c.first_name = value,
        Field::LastName => c.last_name = value,
        Field::Email => c.email = value,
        Field::Language => c.language = value,
        Field::Custom(code) => match value {
            Some(v) => {
                c.custom_fields.insert(code.clone(), v);
            }
            None => {
                c.custom_fields.remove(code);
            }
        },
    }
}

/// Every field any of `sides` mentions.
fn fields(sides: &[&ContactFields]) -> Vec<Field> {
    let mut out = vec![
        Field::FirstName,
        Field::LastName,
        Field::Email,
        Field::Language,
    ];
    let mut codes: Vec<&String> = sides.iter().flat_map(|c| c.custom_fields.keys()).collect();
    codes.sort_unstable();
    codes.dedup();
    out.extend(codes.into_iter().map(|c| Field::Custom(c.clone())));
    out
}

/// What other programs changed in the mirror: fields holding a value that differs from the
/// base. These are sent to Spoki.
pub fn mirror_edits(mirror: &ContactFields, base: &ContactFields) -> ContactFields {
    let mut out = ContactFields::default();
    for f in fields(&[mirror]) {
        if let Some(v) = get(mirror, &f) {
            if get(base, &f) != Some(v) {
                set(&mut out, &f, Some(v));
            }
        }
    }
    out
}

/// The mirror once Spoki acknowledged `acked`: a field takes the acknowledged value only where
/// the mirror still holds the old base value. A field another program changed in the meantime
/// keeps its (newer) value, which the poller sends next.
pub fn ack_into_mirror(
    mirror: &ContactFields,
    old_base: &ContactFields,
    acked: &ContactFields,
) -> ContactFields {
    let mut out = mirror.clone();
    for f in fields(&[acked]) {
        if let Some(v) = get(acked, &f) {
            if get(mirror, &f) == get(old_base, &f) {
                set(&mut out, &f, Some(v));
            }
        }
    }
    out
}

/// A field changed on both sides to different values.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Conflict {
    pub field: Field,
    pub mirror: String,
    pub spoki: String,
    pub winner: &'static str,
}

/// The result of merging what Spoki holds into the mirror.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Merged {
    /// The new agreed state.
    pub base: ContactFields,
    /// The new mirror row.
    pub mirror: ContactFields,
    /// Values the mirror won that Spoki must be told.
    pub to_spoki: ContactFields,
    pub conflicts: Vec<Conflict>,
}

/// Three-way merge of one contact. Per field: changed in Spoki only → Spoki's value on both
/// sides; changed in the mirror only → left for the poller to send; changed on both sides to
/// the same value → agreed; to different values → `winner`'s value on both sides.
pub fn three_way(
    base: &ContactFields,
    mirror: &ContactFields,
    spoki: &ContactFields,
    winner: ConflictWinner,
) -> Merged {
    let mut out = Merged {
        base: base.clone(),
        mirror: mirror.clone(),
        ..Merged::default()
    };
    for f in fields(&[base, mirror, spoki]) {
        let (b, m, s) = (get(base, &f), get(mirror, &f), get(spoki, &f));
        let Some(s) = s else { continue };
        if Some(s) == b {
            continue;
        }
        // Spoki changed this field.
        set(&mut out.base, &f, Some(s));
        match m {
            Some(m) if m != s && Some(m) != b => {
                let winner_name = match winner {
                    ConflictWinner::Mirror => {
                        set(&mut out.to_spoki, &f, Some(m));
                        "mirror"
                    }
                    ConflictWinner::Spoki => {
                        set(&mut out.mirror, &f, Some(s));
                        "spoki"
                    }
                };
                out.conflicts.push(Conflict {
                    field: f.clone(),
                    mirror: m.to_owned(),
                    spoki: s.to_owned(),
                    winner: winner_name,
                });
            }
            _ => set(&mut out.mirror, &f, Some(s)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn c(first: Option<&str>, last: Option<&str>, city: Option<&str>) -> ContactFields {
        ContactFields {
            first_name: first.map(str::to_owned),
            last_name: last.map(str::to_owned),
            custom_fields: city
                .map(|v| [("CITTA".to_owned(), v.to_owned())].into())
                .unwrap_or_default(),
            ..ContactFields::default()
        }
    }

    #[test]
    fn different_fields_changed_on_each_side_both_survive() {
        let base = c(Some("Anna"), Some("Rossi"), None);
        let mirror = c(Some("Anna Maria"), Some("Rossi"), None);
        let spoki = c(Some("Anna"), Some("Bianchi"), None);
        let m = three_way(&base, &mirror, &spoki, ConflictWinner::Mirror);
        assert_eq!(m.mirror, c(Some("Anna Maria"), Some("Bianchi"), None));
        assert_eq!(m.base, c(Some("Anna"), Some("Bianchi"), None));
        assert!(m.conflicts.is_empty());
        // The mirror's own edit is left for the poller, which compares with the new base.
        assert_eq!(
            mirror_edits(&m.mirror, &m.base),
            c(Some("Anna Maria"), None, None)
        );
    }

    #[test]
    fn same_field_changed_on_both_sides_goes_to_the_winner() {
        let base = c(Some("Anna"), None, Some("Roma"));
        let mirror = c(Some("Anna"), None, Some("Milano"));
        let spoki = c(Some("Anna"), None, Some("Torino"));
        let m = three_way(&base, &mirror, &spoki, ConflictWinner::Mirror);
        assert_eq!(m.mirror.custom_fields["CITTA"], "Milano");
        assert_eq!(m.to_spoki.custom_fields["CITTA"], "Milano");
        assert_eq!(m.conflicts.len(), 1);
        assert_eq!(m.conflicts[0].winner, "mirror");
        let m = three_way(&base, &mirror, &spoki, ConflictWinner::Spoki);
        assert_eq!(m.mirror.custom_fields["CITTA"], "Torino");
        assert!(m.to_spoki.is_empty());
        assert_eq!(mirror_edits(&m.mirror, &m.base), ContactFields::default());
    }

    #[test]
    fn an_acknowledged_write_does_not_overwrite_a_newer_mirror_edit() {
        let old_base = c(Some("Anna"), Some("Rossi"), None);
        let mirror = c(Some("Annie"), Some("Rossi"), None);
        let acked = c(Some("Anna Maria"), Some("Verdi"), None);
        let out = ack_into_mirror(&mirror, &old_base, &acked);
        assert_eq!(out, c(Some("Annie"), Some("Verdi"), None));
    }

    fn opt() -> impl Strategy<Value = Option<String>> {
        prop::option::of(prop::sample::select(vec!["a", "b", "c"]).prop_map(str::to_owned))
    }

    fn contact() -> impl Strategy<Value = ContactFields> {
        (opt(), opt(), opt())
            .prop_map(|(f, l, city)| c(f.as_deref(), l.as_deref(), city.as_deref()))
    }

    proptest! {
        /// Merging what Spoki holds twice in a row changes nothing the second time: no
        /// ping-pong.
        #[test]
        fn merge_is_idempotent(base in contact(), mirror in contact(), spoki in contact()) {
            for winner in [ConflictWinner::Mirror, ConflictWinner::Spoki] {
                let first = three_way(&base, &mirror, &spoki, winner);
                let second = three_way(&first.base, &first.mirror, &spoki, winner);
                prop_assert_eq!(&second.mirror, &first.mirror);
                prop_assert_eq!(&second.base, &first.base);
                prop_assert!(second.conflicts.is_empty());
            }
        }

        /// A field only one side changed ends with that side's value.
        #[test]
        fn one_sided_changes_win(base in contact(), mirror in contact(), spoki in contact()) {
            let m = three_way(&base, &mirror, &spoki, ConflictWinner::Mirror);
            for f in fields(&[&base, &mirror, &spoki]) {
                let (b, mv, s) = (get(&base, &f), get(&mirror, &f), get(&spoki, &f));
                if s.is_some() && s != b && (mv == b || mv.is_none()) {
                    prop_assert_eq!(get(&m.mirror, &f), s);
                }
                if s == b || s.is_none() {
                    prop_assert_eq!(get(&m.mirror, &f), mv);
                }
            }
        }
    }
}
