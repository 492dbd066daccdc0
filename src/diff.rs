//! Pure: what must be written so that Spoki holds `incoming`, given what it holds (or will
//! hold once the queued writes land). A blank never overwrites; an equal value costs nothing.

use crate::domain::{ContactFields, ListId};

/// What is known about one contact before a new input is applied.
#[derive(Clone, Debug, Default)]
pub struct Known {
    /// Spoki has acknowledged this contact before.
    pub in_state: bool,
    /// A write for this phone (any list) is queued or in flight: Spoki will hear of it.
    pub queued: bool,
    /// What Spoki will hold once every queued write lands: state, then in-flight rows, then
    /// pending rows, oldest first.
    pub effective: ContactFields,
    /// Spoki acknowledged the contact as a member of the list asked about.
    pub member: bool,
    /// The pending row for this (phone, list), which a new change merges into.
    pub pending_here: Option<(i64, ContactFields)>,
}

/// How an incoming contact compares with what Spoki holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Spoki has never acknowledged the contact: it is created, even with no field but its
    /// phone.
    Create,
    /// Spoki knows it, and some field (or the list membership) differs.
    Update,
    /// Nothing to write.
    Unchanged,
}

/// The one rule every input follows (CSV, contacts webhook, mirror): what to write for
/// `incoming`, headed to `list`, given what is known. A contact Spoki has never acknowledged,
/// and that no queued write will create, is written even when no field differs.
pub fn judge(known: &Known, list: ListId, incoming: &ContactFields) -> (Verdict, ContactFields) {
    let write = changes(&known.effective, incoming);
    let needs_membership = !list.is_none() && !known.member && known.pending_here.is_none();
    let unheard_of = !known.in_state && !known.queued;
    if write.is_empty() && !needs_membership && !unheard_of {
        return (Verdict::Unchanged, write);
    }
    let verdict = if known.in_state {
        Verdict::Update
    } else {
        Verdict::Create
    };
    (verdict, write)
}

/// The fields of `incoming` that carry a value different from `known`.
pub fn changes(known: &ContactFields, incoming: &ContactFields) -> ContactFields {
    fn pick(known: &Option<String>, incoming: &Option<String>) -> Option<String> {
        match incoming {
            Some(v) if known.as_deref() != Some(v.as_str()) => Some(v.clone()),
            _ => None,
        }
    }
    ContactFields {
        first_name: pick(&known.first_name, &incoming.first_name),
        last_name: pick(&known.last_name, &incoming.last_name),
        email: pick(&known.email, &incoming.email),
        language: pick(&known.language, &incoming.language),
        custom_fields: incoming
            .custom_fields
            .iter()
            .filter(|(code, value)| known.custom_fields.get(*code) != Some(*value))
            .map(|(c, v)| (c.clone(), v.clone()))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fields(first: Option<&str>, email: Option<&str>, city: Option<&str>) -> ContactFields {
        ContactFields {
            first_name: first.map(str::to_string),
            email: email.map(str::to_string),
            custom_fields: city
                .map(|c| [("CITTA".to_string(), c.to_string())].into())
                .unwrap_or_default(),
            ..Default::default()
        }
    }

    #[test]
    fn a_contact_spoki_never_saw_is_created_even_with_only_a_phone() {
        let nothing = ContactFields::default();
        let (v, write) = judge(&Known::default(), ListId::NONE, &nothing);
        assert_eq!(v, Verdict::Create);
        assert!(write.is_empty());
        let acknowledged = Known {
            in_state: true,
            ..Default::default()
        };
        assert_eq!(
            judge(&acknowledged, ListId::NONE, &nothing).0,
            Verdict::Unchanged
        );
        // A queued write will create it: no second write.
        let queued = Known {
            queued: true,
            ..Default::default()
        };
        assert_eq!(judge(&queued, ListId::NONE, &nothing).0, Verdict::Unchanged);
        // Known, but not yet a member of the list asked for.
        assert_eq!(judge(&acknowledged, ListId(7), &nothing).0, Verdict::Update);
    }

    #[test]
    fn table() {
        let cases = [
            // (known, incoming, expected)
            (
                fields(None, None, None),
                fields(Some("A"), None, None),
                fields(Some("A"), None, None),
            ),
            (
                fields(Some("A"), None, None),
                fields(Some("A"), None, None),
                fields(None, None, None),
            ),
            (
                fields(Some("A"), Some("a@x.it"), None),
                fields(None, None, None),
                fields(None, None, None),
            ),
            (
                fields(Some("A"), None, Some("Roma")),
                fields(Some("A"), None, Some("Bari")),
                fields(None, None, Some("Bari")),
            ),
            (
                fields(Some("A"), None, Some("Roma")),
                fields(Some("B"), Some("b@x.it"), None),
                fields(Some("B"), Some("b@x.it"), None),
            ),
        ];
        for (known, incoming, want) in cases {
            assert_eq!(
                changes(&known, &incoming),
                want,
                "{known:?} <- {incoming:?}"
            );
        }
    }

    fn arb_opt() -> impl Strategy<Value = Option<String>> {
        prop::option::of("[ab]{0,2}")
    }

    fn arb_fields() -> impl Strategy<Value = ContactFields> {
        (
            arb_opt(),
            arb_opt(),
            arb_opt(),
            prop::collection::btree_map("[XY]", "[ab]{0,1}", 0..3),
        )
            .prop_map(|(f, l, e, c)| ContactFields {
                first_name: f,
                last_name: l,
                email: e,
                language: None,
                custom_fields: c,
            })
    }

    proptest! {
        /// Writing the changes over what Spoki holds gives what a full write would give, and a
        /// second diff finds nothing left to send.
        #[test]
        fn applying_changes_converges(known in arb_fields(), incoming in arb_fields()) {
            let delta = changes(&known, &incoming);
            let mut via_delta = known.clone();
            via_delta.overlay(&delta);
            let mut via_full = known.clone();
            via_full.overlay(&incoming);
            prop_assert_eq!(&via_delta, &via_full);
            prop_assert!(changes(&via_delta, &incoming).is_empty());
        }

        /// A value never written by `incoming` is never touched.
        #[test]
        fn blanks_never_overwrite(known in arb_fields(), incoming in arb_fields()) {
            let delta = changes(&known, &incoming);
            if incoming.first_name.is_none() { prop_assert!(delta.first_name.is_none()); }
            for code in delta.custom_fields.keys() {
                prop_assert!(incoming.custom_fields.contains_key(code));
            }
        }
    }
}
