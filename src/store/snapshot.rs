//! A compact picture of the contacts whose next write would change nothing, for judging a big
//! file without a query per chunk: per settled contact (acknowledged by Spoki, nothing queued
//! or in flight for its phone, a member of the list asked about) its phone as a number and a
//! 64-bit digest of its fields, 16 bytes a contact. Read once per file, in one read
//! transaction, in pages whose rows SQLite packs into one JSON text each.
//!
//! A contact in the file whose fields digest to what the snapshot holds is unchanged; every
//! other contact is judged exactly (`Store::enqueue_changes` / `judge_changes`), so the
//! snapshot only ever saves work. A contact that changes after the snapshot was read is judged
//! as of the snapshot: as if the file's row had come first.

use std::borrow::Cow;
use std::hash::{Hash, Hasher};

use super::*;

/// Settled contacts: (phone digits, digest of the fields), sorted by phone.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    entries: Vec<(u64, u64)>,
}

impl Snapshot {
    pub const EMPTY: Snapshot = Snapshot {
        entries: Vec::new(),
    };

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Spoki holds exactly these fields for this phone, and nothing is queued for it.
    pub fn unchanged(&self, phone: Phone, fields: &ContactFields) -> bool {
        if self.entries.is_empty() {
            return false;
        }
        match self
            .entries
            .binary_search_by_key(&phone.digits(), |&(p, _)| p)
        {
            Ok(i) => self.entries[i].1 == fields_digest(fields),
            Err(_) => false,
        }
    }
}

/// The digest of a contact's fields, custom fields as the store writes them.
pub fn fields_digest(fields: &ContactFields) -> u64 {
    digest(
        fields.first_name.as_deref(),
        fields.last_name.as_deref(),
        fields.email.as_deref(),
        fields.language.as_deref(),
        &fields_json(fields),
    )
}

fn digest(
    first: Option<&str>,
    last: Option<&str>,
    email: Option<&str>,
    language: Option<&str>,
    custom: &str,
) -> u64 {
    let mut h = rustc_hash::FxHasher::default();
    (first, last, email, language, custom).hash(&mut h);
    h.finish()
}

/// One state row as the snapshot query packs it.
#[derive(serde::Deserialize)]
struct Packed<'a>(
    #[serde(borrow)] Cow<'a, str>,
    #[serde(borrow)] Option<Cow<'a, str>>,
    #[serde(borrow)] Option<Cow<'a, str>>,
    #[serde(borrow)] Option<Cow<'a, str>>,
    #[serde(borrow)] Option<Cow<'a, str>>,
    #[serde(borrow)] Cow<'a, str>,
);

/// State rows read per query.
const PAGE: i64 = 50_000;

impl Store {
    /// The settled contacts, for a change headed to `list`.
    pub async fn snapshot(&self, list: ListId) -> Result<Snapshot, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut entries: Vec<(u64, u64)> = Vec::new();
        let mut after = String::new();
        loop {
            let (last, packed): (Option<String>, Option<String>) = sqlx::query_as(
                "WITH page AS (SELECT phone, first_name, last_name, email, language, \
                 custom_fields FROM contact_state WHERE phone > ? ORDER BY phone LIMIT ?) \
                 SELECT (SELECT MAX(phone) FROM page), \
                 (SELECT json_group_array(json_array(p.phone, p.first_name, p.last_name, \
                  p.email, p.language, p.custom_fields)) FROM page p \
                  WHERE NOT EXISTS (SELECT 1 FROM outbox o WHERE o.phone = p.phone) \
                  AND (? = 0 OR EXISTS (SELECT 1 FROM list_members m \
                                        WHERE m.list_id = ? AND m.phone = p.phone)))",
            )
            .bind(&after)
            .bind(PAGE)
            .bind(list.0)
            .bind(list.0)
            .fetch_one(&mut *tx)
            .await?;
            let Some(last) = last else { break };
            let rows: Vec<Packed<'_>> = serde_json::from_str(packed.as_deref().unwrap_or("[]"))
                .map_err(|e| StoreError::Corrupt(format!("state snapshot: {e}")))?;
            for Packed(phone, first, last_name, email, language, custom) in rows {
                let Some(phone) = Phone::from_e164(&phone) else {
                    continue;
                };
                let d = digest(
                    first.as_deref(),
                    last_name.as_deref(),
                    email.as_deref(),
                    language.as_deref(),
                    &custom,
                );
                entries.push((phone.digits(), d));
            }
            after = last;
        }
        tx.commit().await?;
        entries.sort_unstable();
        entries.shrink_to_fit();
        Ok(Snapshot { entries })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_settled_contacts_with_equal_fields_count_as_unchanged() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(&dir.path().join("t.db")).await.expect("open");
        let anna = ContactFields {
            first_name: Some("Anna \"A\" Rossi".into()),
            custom_fields: [("CITTA".to_string(), "Forlì".to_string())].into(),
            ..Default::default()
        };
        let settled = Phone::from_e164("+393331234567").expect("phone");
        let queued = Phone::from_e164("+393331234568").expect("phone");
        let mut tx = store.begin().await.expect("tx");
        for phone in [settled, queued] {
            sqlx::query(
                "INSERT INTO contact_state (phone, first_name, custom_fields, acked_at) \
                 VALUES (?, ?, ?, '2026-01-01T00:00:00Z')",
            )
            .bind(phone.to_string())
            .bind(&anna.first_name)
            .bind(fields_json(&anna))
            .execute(&mut *tx)
            .await
            .expect("state");
        }
        Store::put_pending(&mut tx, queued, ListId::NONE, &anna, None, "csv", "f:2")
            .await
            .expect("queue");
        tx.commit().await.expect("commit");

        let snap = store.snapshot(ListId::NONE).await.expect("snapshot");
        assert_eq!(
            snap.len(),
            1,
            "the contact with a queued write is not settled"
        );
        assert!(snap.unchanged(settled, &anna));
        assert!(!snap.unchanged(queued, &anna));
        let mut other = anna.clone();
        other.first_name = Some("Anna".into());
        assert!(!snap.unchanged(settled, &other), "a changed field");
        let mut blank = anna.clone();
        blank.custom_fields.clear();
        assert!(
            !snap.unchanged(settled, &blank),
            "not equal: judged exactly"
        );
        let in_list = store.snapshot(ListId(7)).await.expect("snapshot");
        assert!(in_list.is_empty(), "not a member of list 7");
    }
}
