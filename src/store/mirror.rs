//! Both directions between the mirror table `contacts` and Spoki (docs/mirror.md).
//!
//! - Other programs' edits are journaled by triggers into `mirror_changes`; `poll_mirror`
//!   turns them into outbox writes in the transaction that consumes them.
//! - The daemon's own writes to the mirror happen inside "quiet" transactions (a row in
//!   `mirror_quiet` that only that transaction ever sees), so the triggers skip them: nothing
//!   the daemon writes comes back to it as a change.
//! - `contact_state` is the base both sides last agreed on; `merge::three_way` decides per
//!   field what each side ends with.

use std::collections::HashSet;

use sqlx::sqlite::{SqliteConnection, SqliteRow};
use sqlx::{Row, TypeInfo, ValueRef};

use super::{Incoming, Store, StoreError, Tx, fields_json, now_rfc3339};
use crate::config::ConflictWinner;
use crate::diff;
use crate::domain::{ContactFields, ListId, Phone};
use crate::merge::{self, Conflict};
use crate::mirror_rules::{self, DeleteCycle, MirrorCells};
use crate::normalise;

/// What a poll of the mirror journal did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PollOutcome {
    /// Journal entries consumed.
    pub entries: u64,
    /// Distinct contacts those entries were about: one UPDATE journals two entries (the
    /// update and the trigger's touch of `updated_at`), but it is one edit.
    pub contacts: u64,
    /// Contacts with a write queued.
    pub queued: u64,
    pub rejected: u64,
    /// Deletions queued for Spoki (held ones included).
    pub deletes: u64,
    pub held: bool,
}

/// One contact as Spoki holds it.
#[derive(Clone, Debug)]
pub struct SpokiContact {
    pub phone: Phone,
    pub spoki_id: Option<i64>,
    pub fields: ContactFields,
}

/// What merging contacts from Spoki did.
#[derive(Clone, Debug, Default)]
pub struct MergeOutcome {
    /// Mirror rows created or changed.
    pub mirror_writes: u64,
    /// Contacts with a mirror-won value queued for Spoki.
    pub queued: u64,
    pub conflicts: Vec<(Phone, Conflict)>,
}

/// A deletion waiting to be carried out.
#[derive(Clone, Debug)]
pub struct PendingDelete {
    pub phone: String,
    pub spoki_id: Option<i64>,
}

pub const TO_SPOKI: &str = "to_spoki";
pub const TO_MIRROR: &str = "to_mirror";

/// One cell of a row another program wrote, read whatever its storage class: text as is, a
/// number as its text; bytes (a BLOB) or text that is not UTF-8 are the reason it cannot be
/// read. SQLite's column types do not stop a writer from storing bytes in a TEXT column.
fn cell(row: &SqliteRow, col: &str) -> Result<Option<String>, String> {
    let raw = row
        .try_get_raw(col)
        .map_err(|e| format!("cannot read {col}: {e}"))?;
    if raw.is_null() {
        return Ok(None);
    }
    let kind = raw.type_info().name().to_ascii_uppercase();
    match kind.as_str() {
        "INTEGER" => row.try_get::<i64, _>(col).map(|n| Some(n.to_string())),
        "REAL" => row.try_get::<f64, _>(col).map(|n| Some(n.to_string())),
        "BLOB" => return Err(format!("{col} is stored as bytes (a BLOB), not text")),
        _ => row.try_get::<String, _>(col).map(Some),
    }
    .map_err(|_| format!("{col} is not valid UTF-8 text"))
}

/// `cell`, trimmed; blank is none.
fn text(row: &SqliteRow, col: &str) -> Result<Option<String>, String> {
    Ok(cell(row, col)?
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty()))
}

/// A mirror row as other programs left it: its fields, or why it cannot be sent
/// (`mirror_rules::read_row` judges the cells).
fn mirror_fields(row: &SqliteRow) -> Result<ContactFields, String> {
    mirror_rules::read_row(MirrorCells {
        first_name: text(row, "first_name")?,
        last_name: text(row, "last_name")?,
        email: text(row, "email")?,
        language: text(row, "language")?,
        custom_fields: cell(row, "custom_fields")?,
    })
}

/// A journaled phone that is not UTF-8 text: how it is shown in its reject, and why.
fn unreadable_phone(kind: &str, raw: &[u8]) -> (String, String) {
    let hex: String = raw.iter().map(|b| format!("{b:02X}")).collect();
    let shown = format!("X'{hex}'");
    let reason = match (kind, std::str::from_utf8(raw)) {
        ("blob", Ok(text)) => format!(
            "phone is stored as bytes (a BLOB holding {text:?}), not text: write it as TEXT"
        ),
        ("blob", Err(_)) => "phone is stored as bytes (a BLOB), not text".to_owned(),
        _ => "phone is not valid UTF-8 text".to_owned(),
    };
    (shown, reason)
}

pub(super) async fn read_base(
    conn: &mut SqliteConnection,
    phone: &str,
) -> Result<Option<(Option<i64>, ContactFields)>, StoreError> {
    let row = sqlx::query(
        "SELECT spoki_id, first_name, last_name, email, language, custom_fields \
         FROM contact_state WHERE phone = ?",
    )
    .bind(phone)
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        Some(r) => Ok(Some((r.try_get("spoki_id")?, super::fields_from_row(&r)?))),
        None => Ok(None),
    }
}

/// The mirror row's fields as the daemon reads them for merging (a broken `custom_fields`
/// counts as empty: the daemon then rewrites it).
pub(super) async fn read_mirror(
    conn: &mut SqliteConnection,
    phone: &str,
) -> Result<Option<ContactFields>, StoreError> {
    let row = sqlx::query(
        "SELECT first_name, last_name, email, language, custom_fields FROM contacts WHERE phone = ?",
    )
    .bind(phone)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    // A cell that cannot be read (bytes where text belongs) counts as empty, like a broken
    // custom_fields: the merge then writes the agreed value over it.
    let read = |col: &str| text(&row, col).ok().flatten();
    let custom = read("custom_fields").unwrap_or_default();
    Ok(Some(ContactFields {
        first_name: read("first_name"),
        last_name: read("last_name"),
        email: read("email"),
        language: read("language"),
        custom_fields: mirror_rules::parse_custom(&custom).unwrap_or_default(),
    }))
}

/// Writes a whole row of `table` (`contacts` or `contact_state`).
pub(super) async fn write_row(
    conn: &mut SqliteConnection,
    table: &str,
    phone: &str,
    spoki_id: Option<i64>,
    fields: &ContactFields,
) -> Result<(), StoreError> {
    let stamp = if table == "contact_state" {
        "acked_at"
    } else {
        "updated_at"
    };
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {table} (phone, spoki_id, first_name, last_name, email, language, \
         custom_fields, {stamp}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT(phone) DO UPDATE SET spoki_id = COALESCE(excluded.spoki_id, spoki_id), \
         first_name = excluded.first_name, last_name = excluded.last_name, \
         email = excluded.email, language = excluded.language, \
         custom_fields = excluded.custom_fields, {stamp} = excluded.{stamp}"
    )))
    .bind(phone)
    .bind(spoki_id)
    .bind(&fields.first_name)
    .bind(&fields.last_name)
    .bind(&fields.email)
    .bind(&fields.language)
    .bind(fields_json(fields))
    .bind(now_rfc3339())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Removes every trace of a contact the daemon keeps (mirror, base, memberships).
async fn forget_everywhere(conn: &mut SqliteConnection, phone: &str) -> Result<(), StoreError> {
    for sql in [
        "DELETE FROM contacts WHERE phone = ?",
        "DELETE FROM contact_state WHERE phone = ?",
        "DELETE FROM list_members WHERE phone = ?",
        "DELETE FROM outbox WHERE phone = ? AND state = 'pending'",
    ] {
        sqlx::query(sql).bind(phone).execute(&mut *conn).await?;
    }
    Ok(())
}

impl Store {
    /// A write transaction whose changes to the mirror are not journaled. Finish it with
    /// `commit_quiet`.
    pub async fn begin_quiet(&self) -> Result<Tx, StoreError> {
        let tx = self.begin().await?;
        quiet(tx).await
    }

    /// `begin_quiet` for recording what Spoki already did (acknowledgements, deletions
    /// carried out): allowed while input is refused, like `begin_delivery`.
    pub(crate) async fn begin_quiet_delivery(&self) -> Result<Tx, StoreError> {
        let tx = self.begin_delivery().await?;
        quiet(tx).await
    }

    pub async fn commit_quiet(mut tx: Tx) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM mirror_quiet")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Turns up to `batch` journaled mirror edits into outbox writes (or rejects, or queued
    /// deletions), and consumes them, in one transaction.
    pub async fn poll_mirror(
        &self,
        batch: i64,
        propagate_deletes: bool,
        max_delete_share: f64,
    ) -> Result<PollOutcome, StoreError> {
        // Halted: the poller stops (the halt was logged once, where it was decided).
        // Most polls find nothing: look before taking the write lock.
        if self.halted().is_some() || self.mirror_backlog().await? == 0 {
            return Ok(PollOutcome::default());
        }
        let mut tx = self.begin().await?;
        // The phone as bytes with its storage class: a writer may have stored a BLOB.
        let entries: Vec<(i64, Vec<u8>, String)> = sqlx::query_as(
            "SELECT seq, CAST(phone AS BLOB), typeof(phone) FROM mirror_changes \
             ORDER BY seq LIMIT ?",
        )
        .bind(batch)
        .fetch_all(&mut *tx)
        .await?;
        let Some(max_seq) = entries.last().map(|(seq, _, _)| *seq) else {
            return Ok(PollOutcome::default());
        };
        let mut out = PollOutcome {
            entries: entries.len() as u64,
            ..PollOutcome::default()
        };
        let mut seen = HashSet::new();
        let mut edits: Vec<Incoming> = Vec::new();
        let mut deletions: Vec<(String, Option<i64>)> = Vec::new();
        for (_, raw, kind) in entries {
            match journal_entry(&mut tx, raw, &kind, &mut seen).await? {
                Entry::Seen => {}
                Entry::Rejected => out.rejected += 1,
                Entry::Gone(phone, Some((spoki_id, _))) if propagate_deletes => {
                    deletions.push((phone, spoki_id));
                }
                Entry::Gone(..) => {}
                Entry::Edit(incoming) => edits.push(incoming),
            }
        }
        out.contacts = seen.len() as u64;
        let done = Store::enqueue_changes(&mut tx, "mirror", ListId::NONE, edits).await?;
        out.queued += done.queued();
        if !deletions.is_empty() {
            out.deletes = deletions.len() as u64;
            // The whole cycle counts, not just this batch: every journaled deletion of a
            // contact Spoki knows.
            let (cycle,): (i64,) = sqlx::query_as(
                "SELECT COUNT(DISTINCT mc.phone) FROM mirror_changes mc \
                 JOIN contact_state cs ON cs.phone = mc.phone \
                 WHERE mc.op = 'D' AND NOT EXISTS (SELECT 1 FROM contacts c WHERE c.phone = mc.phone)",
            )
            .fetch_one(&mut *tx)
            .await?;
            let count = deletions.len().max(usize::try_from(cycle).unwrap_or(0));
            out.held = hold_deletes(&mut tx, TO_SPOKI, count, max_delete_share).await?;
            let state = if out.held { "held" } else { "ready" };
            for (phone, spoki_id) in deletions {
                queue_delete(&mut tx, &phone, TO_SPOKI, spoki_id, state).await?;
            }
        }
        sqlx::query("DELETE FROM mirror_changes WHERE seq <= ?")
            .bind(max_seq)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(out)
    }

    /// Merges contacts as Spoki holds them into the mirror and the base, field by field
    /// (`merge::three_way`); values the mirror wins are queued for Spoki. One quiet
    /// transaction.
    pub async fn merge_from_spoki(
        &self,
        contacts: &[SpokiContact],
        winner: ConflictWinner,
    ) -> Result<MergeOutcome, StoreError> {
        let mut out = MergeOutcome::default();
        let mut tx = self.begin_quiet().await?;
        let mut to_spoki = Vec::new();
        for c in contacts {
            let phone = c.phone.to_string();
            let held_delete: Option<(i64,)> =
                sqlx::query_as("SELECT 1 FROM deletes WHERE phone = ? AND direction = 'to_spoki'")
                    .bind(&phone)
                    .fetch_optional(&mut *tx)
                    .await?;
            if held_delete.is_some() {
                // Deleted from the mirror and about to be deleted in Spoki: leave it gone.
                continue;
            }
            let base = read_base(&mut tx, &phone).await?;
            let mirror = read_mirror(&mut tx, &phone).await?;
            let base_fields = base.as_ref().map(|(_, f)| f.clone()).unwrap_or_default();
            let merged = match &mirror {
                Some(m) => merge::three_way(&base_fields, m, &c.fields, winner),
                // Not in the mirror: a contact new to us, or one deleted from the mirror while
                // deletes do not propagate. Only a change in Spoki brings it back.
                None => {
                    if base.is_some() && diff::changes(&base_fields, &c.fields).is_empty() {
                        write_row(&mut tx, "contact_state", &phone, c.spoki_id, &base_fields)
                            .await?;
                        continue;
                    }
                    merge::three_way(&base_fields, &base_fields, &c.fields, winner)
                }
            };
            if mirror.as_ref() != Some(&merged.mirror) {
                write_row(&mut tx, "contacts", &phone, c.spoki_id, &merged.mirror).await?;
                out.mirror_writes += 1;
            } else if c.spoki_id.is_some() {
                sqlx::query(
                    "UPDATE contacts SET spoki_id = ? WHERE phone = ? AND spoki_id IS NOT ?",
                )
                .bind(c.spoki_id)
                .bind(&phone)
                .bind(c.spoki_id)
                .execute(&mut *tx)
                .await?;
            }
            write_row(&mut tx, "contact_state", &phone, c.spoki_id, &merged.base).await?;
            for conflict in &merged.conflicts {
                out.conflicts.push((c.phone, conflict.clone()));
            }
            if winner == ConflictWinner::Spoki {
                // A mirror edit still waiting to be sent lost to Spoki's value: drop it.
                strip_pending(&mut tx, &phone, &merged.conflicts).await?;
            }
            if !merged.to_spoki.is_empty() {
                to_spoki.push(Incoming {
                    phone: c.phone,
                    fields: merged.to_spoki,
                    key: phone,
                });
            }
        }
        // The values the mirror won go the way every input goes (after the state rows above,
        // so they are diffed against the merged base plus what is queued).
        let done = Store::enqueue_changes(&mut tx, "merge", ListId::NONE, to_spoki).await?;
        out.queued += done.queued();
        Store::commit_quiet(tx).await?;
        Ok(out)
    }

    /// A contact deleted in Spoki (webhook): gone from the mirror and the base at once.
    pub async fn forget_deleted_in_spoki(&self, phone: &str) -> Result<bool, StoreError> {
        let mut tx = self.begin_quiet().await?;
        let existed = read_base(&mut tx, phone).await?.is_some()
            || read_mirror(&mut tx, phone).await?.is_some();
        forget_everywhere(&mut tx, phone).await?;
        sqlx::query("DELETE FROM deletes WHERE phone = ?")
            .bind(phone)
            .execute(&mut *tx)
            .await?;
        Store::commit_quiet(tx).await?;
        Ok(existed)
    }

    /// Base contacts a complete pull did not see, acknowledged before the pull began: they
    /// are gone from Spoki. Queued as deletions from the mirror (held when too many).
    /// `unreadable`: Spoki ids of records the pull saw but could not read (a contact with one
    /// of them is not gone, whatever its phone).
    pub async fn queue_missing_after_pull(
        &self,
        seen: &HashSet<Phone>,
        unreadable: &HashSet<i64>,
        pull_started: &str,
        max_delete_share: f64,
    ) -> Result<(u64, bool), StoreError> {
        let rows: Vec<(String, Option<i64>)> =
            sqlx::query_as("SELECT phone, spoki_id FROM contact_state WHERE acked_at < ?")
                .bind(pull_started)
                .fetch_all(&self.pool)
                .await?;
        let missing: Vec<String> = rows
            .into_iter()
            .filter(|(_, id)| id.is_none_or(|id| !unreadable.contains(&id)))
            .map(|(p, _)| p)
            .filter(|p| Phone::from_e164(p).is_none_or(|ph| !seen.contains(&ph)))
            .collect();
        if missing.is_empty() {
            return Ok((0, false));
        }
        let mut tx = self.begin_delivery().await?;
        let held = hold_deletes(&mut tx, TO_MIRROR, missing.len(), max_delete_share).await?;
        let state = if held { "held" } else { "ready" };
        for phone in &missing {
            queue_delete(&mut tx, phone, TO_MIRROR, None, state).await?;
        }
        tx.commit().await?;
        Ok((missing.len() as u64, held))
    }

    /// Deletions ready to carry out in one direction, oldest first.
    pub async fn ready_deletes(
        &self,
        direction: &str,
        limit: i64,
    ) -> Result<Vec<PendingDelete>, StoreError> {
        let rows: Vec<(String, Option<i64>)> = sqlx::query_as(
            "SELECT phone, spoki_id FROM deletes WHERE direction = ? AND state = 'ready' \
             ORDER BY created_at LIMIT ?",
        )
        .bind(direction)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(phone, spoki_id)| PendingDelete { phone, spoki_id })
            .collect())
    }

    /// A deletion done: the contact leaves the mirror, the base and the delete queue.
    pub async fn finish_delete(&self, phone: &str, direction: &str) -> Result<(), StoreError> {
        let mut tx = self.begin_quiet_delivery().await?;
        forget_everywhere(&mut tx, phone).await?;
        sqlx::query("DELETE FROM deletes WHERE phone = ? AND direction = ?")
            .bind(phone)
            .bind(direction)
            .execute(&mut *tx)
            .await?;
        Store::commit_quiet(tx).await?;
        Ok(())
    }

    /// A deletion that cannot happen (Spoki refused it): dropped from the queue, recorded as a
    /// reject.
    pub async fn reject_delete(
        &self,
        phone: &str,
        direction: &str,
        reason: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_delivery().await?;
        sqlx::query("DELETE FROM deletes WHERE phone = ? AND direction = ?")
            .bind(phone)
            .bind(direction)
            .execute(&mut *tx)
            .await?;
        Store::insert_reject(&mut tx, "mirror-delete", phone, phone, reason).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Held deletions by direction.
    pub async fn held_deletes(&self) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT direction, COUNT(*) FROM deletes WHERE state = 'held' GROUP BY direction",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Confirms (held → ready) or cancels (dropped) every held deletion; returns how many.
    pub async fn settle_held_deletes(&self, confirm: bool) -> Result<u64, StoreError> {
        let sql = if confirm {
            "UPDATE deletes SET state = 'ready' WHERE state = 'held'"
        } else {
            "DELETE FROM deletes WHERE state = 'held'"
        };
        Ok(sqlx::query(sql).execute(&self.pool).await?.rows_affected())
    }

    /// Records a webhook delivery id; false when it was seen before (apply nothing twice).
    pub async fn first_delivery(
        conn: &mut SqliteConnection,
        source: &str,
        id: &str,
    ) -> Result<bool, StoreError> {
        let inserted = sqlx::query(
            "INSERT INTO webhook_seen (source, id, received_at) VALUES (?, ?, ?) \
             ON CONFLICT(source, id) DO NOTHING",
        )
        .bind(source)
        .bind(id)
        .bind(now_rfc3339())
        .execute(&mut *conn)
        .await?
        .rows_affected();
        Ok(inserted == 1)
    }

    /// Whether a webhook delivery id was applied before.
    pub async fn delivery_seen(&self, source: &str, id: &str) -> Result<bool, StoreError> {
        let row: Option<(i64,)> =
            sqlx::query_as("SELECT 1 FROM webhook_seen WHERE source = ? AND id = ?")
                .bind(source)
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.is_some())
    }

    /// The phone of the contact Spoki knows by `id`.
    pub async fn phone_by_spoki_id(&self, id: i64) -> Result<Option<String>, StoreError> {
        let row: Option<(String,)> = sqlx::query_as(
            "SELECT phone FROM contact_state WHERE spoki_id = ? \
             UNION SELECT phone FROM contacts WHERE spoki_id = ? LIMIT 1",
        )
        .bind(id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(p,)| p))
    }

    /// Journal entries not yet consumed.
    pub async fn mirror_backlog(&self) -> Result<i64, StoreError> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM mirror_changes")
            .fetch_one(&self.pool)
            .await?;
        Ok(n)
    }
}

/// What one journal entry comes to.
enum Entry {
    /// Its phone was handled earlier in this batch.
    Seen,
    /// The row cannot be sent; its reject is recorded.
    Rejected,
    /// The row is gone from the mirror; the base, if Spoki knows the contact.
    Gone(String, Option<(Option<i64>, ContactFields)>),
    /// What to queue for Spoki: the whole row if Spoki never acknowledged it, else the edits.
    Edit(Incoming),
}

/// Reads the mirror row a journal entry names (its phone as bytes with its storage class: a
/// writer may have stored a BLOB) and judges it (`mirror_rules`, `check_sizes`).
async fn journal_entry(
    tx: &mut Tx,
    raw: Vec<u8>,
    kind: &str,
    seen: &mut HashSet<String>,
) -> Result<Entry, StoreError> {
    let phone_text = match (kind, String::from_utf8(raw)) {
        ("text", Ok(text)) => text,
        (_, read) => {
            let raw = read.map_or_else(|e| e.into_bytes(), String::into_bytes);
            let (shown, reason) = unreadable_phone(kind, &raw);
            if !seen.insert(shown.clone()) {
                return Ok(Entry::Seen);
            }
            let (present,): (i64,) = sqlx::query_as(
                "SELECT EXISTS (SELECT 1 FROM contacts WHERE CAST(phone AS BLOB) = ? \
                 AND typeof(phone) = ?)",
            )
            .bind(&raw)
            .bind(kind)
            .fetch_one(&mut **tx)
            .await?;
            if present == 0 {
                return Ok(Entry::Seen);
            }
            Store::insert_reject(tx, "mirror", &shown, &shown, &reason).await?;
            return Ok(Entry::Rejected);
        }
    };
    if !seen.insert(phone_text.clone()) {
        return Ok(Entry::Seen);
    }
    let row = sqlx::query("SELECT * FROM contacts WHERE phone = ?")
        .bind(&phone_text)
        .fetch_optional(&mut **tx)
        .await?;
    let base = read_base(tx, &phone_text).await?;
    let Some(row) = row else {
        return Ok(Entry::Gone(phone_text, base));
    };
    // Back (or still) in the mirror: no deletion to carry out.
    sqlx::query("DELETE FROM deletes WHERE phone = ? AND direction = 'to_spoki'")
        .bind(&phone_text)
        .execute(&mut **tx)
        .await?;
    let Some(phone) = Phone::from_e164(&phone_text).filter(|p| p.meets_spoki_rule()) else {
        let reason = "phone is not in E.164 form (a + and the country code, digits only)";
        Store::insert_reject(tx, "mirror", &phone_text, &phone_text, reason).await?;
        return Ok(Entry::Rejected);
    };
    let judged = mirror_fields(&row).and_then(|f| {
        normalise::check_sizes(&f)
            .map(|()| f)
            .map_err(|e| e.to_string())
    });
    match judged {
        Ok(fields) => {
            // A row Spoki never acknowledged is sent whole, even with only a phone
            // (`diff::judge` creates it); a known one sends only what was edited.
            let changed = match base {
                Some((_, base_fields)) => merge::mirror_edits(&fields, &base_fields),
                None => fields,
            };
            Ok(Entry::Edit(Incoming {
                phone,
                fields: changed,
                key: phone_text,
            }))
        }
        Err(reason) => {
            Store::insert_reject(tx, "mirror", &phone_text, &phone_text, &reason).await?;
            Ok(Entry::Rejected)
        }
    }
}

async fn quiet(mut tx: Tx) -> Result<Tx, StoreError> {
    sqlx::query("INSERT OR IGNORE INTO mirror_quiet (k) VALUES (1)")
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

/// Whether a cycle's `count` deletions in `direction` must wait for confirmation: more than
/// `share` of the known contacts, or earlier ones are already held.
async fn hold_deletes(
    conn: &mut SqliteConnection,
    direction: &str,
    count: usize,
    share: f64,
) -> Result<bool, StoreError> {
    let (known,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM contact_state")
        .fetch_one(&mut *conn)
        .await?;
    let (held, queued): (i64, i64) = sqlx::query_as(
        "SELECT COALESCE(SUM(state = 'held'), 0), COUNT(*) FROM deletes WHERE direction = ?",
    )
    .bind(direction)
    .fetch_one(&mut *conn)
    .await?;
    Ok(mirror_rules::deletes_wait(DeleteCycle {
        already_held: held > 0,
        queued: u64::try_from(queued).unwrap_or(0),
        this_cycle: count as u64,
        known: u64::try_from(known).unwrap_or(0),
        max_share: share,
    }))
}

async fn queue_delete(
    conn: &mut SqliteConnection,
    phone: &str,
    direction: &str,
    spoki_id: Option<i64>,
    state: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO deletes (phone, direction, spoki_id, state, created_at) \
         VALUES (?, ?, ?, ?, ?) ON CONFLICT(phone, direction) DO NOTHING",
    )
    .bind(phone)
    .bind(direction)
    .bind(spoki_id)
    .bind(state)
    .bind(now_rfc3339())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Removes the conflicting fields from the contact's pending (not in-flight) outbox rows.
async fn strip_pending(
    conn: &mut SqliteConnection,
    phone: &str,
    conflicts: &[Conflict],
) -> Result<(), StoreError> {
    if conflicts.is_empty() {
        return Ok(());
    }
    let rows = sqlx::query(
        "SELECT id, first_name, last_name, email, language, custom_fields FROM outbox \
         WHERE phone = ? AND state = 'pending'",
    )
    .bind(phone)
    .fetch_all(&mut *conn)
    .await?;
    for row in rows {
        let id: i64 = row.try_get("id")?;
        let mut fields = super::fields_from_row(&row)?;
        for c in conflicts {
            match &c.field {
                merge::Field::FirstName => fields.first_name = None,
                merge::Field::LastName => fields.last_name = None,
                merge::Field::Email => fields.email = None,
                merge::Field::Language => fields.language = None,
                merge::Field::Custom(code) => {
                    fields.custom_fields.remove(code);
                }
            }
        }
        sqlx::query(
            "UPDATE outbox SET first_name = ?, last_name = ?, email = ?, language = ?, \
             custom_fields = ? WHERE id = ?",
        )
        .bind(&fields.first_name)
        .bind(&fields.last_name)
        .bind(&fields.email)
        .bind(&fields.language)
        .bind(fields_json(&fields))
        .bind(id)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(&dir.path().join("t.db")).await.expect("open");
        (dir, store)
    }

    #[tokio::test]
    async fn other_programs_edits_are_journaled_and_the_daemons_are_not() {
        let (_dir, store) = store().await;
        sqlx::query("INSERT INTO contacts (phone, first_name) VALUES ('+393331234567', 'Anna')")
            .execute(store.pool())
            .await
            .expect("insert");
        sqlx::query("UPDATE contacts SET first_name = 'Anna Maria' WHERE phone = '+393331234567'")
            .execute(store.pool())
            .await
            .expect("update");
        assert_eq!(
            store.mirror_backlog().await.expect("backlog"),
            3,
            "I, U and the touch U"
        );
        let mut tx = store.begin_quiet().await.expect("quiet");
        write_row(
            &mut tx,
            "contacts",
            "+393337654321",
            Some(7),
            &ContactFields::default(),
        )
        .await
        .expect("write");
        Store::commit_quiet(tx).await.expect("commit");
        assert_eq!(store.mirror_backlog().await.expect("backlog"), 3);
        let (quiet,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM mirror_quiet")
            .fetch_one(store.pool())
            .await
            .expect("count");
        assert_eq!(quiet, 0, "the quiet marker never outlives its transaction");
        let out = store.poll_mirror(1000, false, 0.1).await.expect("poll");
        assert_eq!(out.queued, 1);
        assert_eq!(
            (out.entries, out.contacts),
            (3, 1),
            "three journal entries, one contact edited: the log says one edit"
        );
        assert_eq!(store.mirror_backlog().await.expect("backlog"), 0);
    }

    #[tokio::test]
    async fn a_contact_whose_record_the_pull_could_not_read_is_not_taken_for_gone() {
        let (_dir, store) = store().await;
        let mut tx = store.begin_quiet().await.expect("quiet");
        for (phone, id) in [("+393331000001", Some(7)), ("+393331000002", Some(8))] {
            write_row(
                &mut tx,
                "contact_state",
                phone,
                id,
                &ContactFields::default(),
            )
            .await
            .expect("write");
        }
        Store::commit_quiet(tx).await.expect("commit");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let started = now_rfc3339();
        // The pull saw neither phone, but could not read the record with Spoki id 7.
        let (missing, held) = store
            .queue_missing_after_pull(&HashSet::new(), &HashSet::from([7]), &started, 1.0)
            .await
            .expect("queue");
        assert_eq!((missing, held), (1, false));
        let queued: Vec<(String,)> = sqlx::query_as("SELECT phone FROM deletes")
            .fetch_all(store.pool())
            .await
            .expect("deletes");
        assert_eq!(queued, vec![("+393331000002".to_owned(),)]);
    }

    #[tokio::test]
    async fn bad_mirror_rows_become_rejects() {
        let (_dir, store) = store().await;
        for sql in [
            "INSERT INTO contacts (phone, first_name) VALUES ('333 1234567', 'x')",
            "INSERT INTO contacts (phone, email) VALUES ('+393331234567', 'not an email')",
            "INSERT INTO contacts (phone, custom_fields) VALUES ('+393331234568', '[1]')",
        ] {
            sqlx::query(sql)
                .execute(store.pool())
                .await
                .expect("insert");
        }
        let out = store.poll_mirror(1000, false, 0.1).await.expect("poll");
        assert_eq!(out.rejected, 3);
        assert_eq!(out.queued, 0);
        let rejects = store.rejects(10).await.expect("rejects");
        assert!(rejects.iter().all(|r| r.source == "mirror"));
    }
}
