//! Outbox operations for the batcher: claim rows into a request, then acknowledge (2xx),
//! release (retry later) or reject them. A row leaves the outbox only through `acknowledge`
//! or `reject`; a crash leaves 'inflight' rows that `recover_inflight` puts back.

use std::collections::HashMap;

use sqlx::sqlite::{SqliteConnection, SqliteRow};
use sqlx::{AssertSqlSafe, Row};

use super::{
    Store, StoreError, fields_from_row, fields_json, mirror, now_ms, now_rfc3339, phone_from_row,
    placeholders,
};
use crate::domain::{ContactFields, ListId, Phone};

/// One queued contact write.
#[derive(Clone, Debug)]
pub struct OutboxRow {
    pub id: i64,
    pub phone: Phone,
    pub list: ListId,
    pub fields: ContactFields,
    pub source: String,
    pub source_key: String,
    pub attempts: i64,
}

fn outbox_row(row: &SqliteRow) -> Result<OutboxRow, StoreError> {
    Ok(OutboxRow {
        id: row.try_get("id")?,
        phone: phone_from_row(row)?,
        list: ListId(row.try_get("list_id")?),
        fields: fields_from_row(row)?,
        source: row.try_get("source")?,
        source_key: row.try_get("source_key")?,
        attempts: row.try_get("attempts")?,
    })
}

/// Which requests a pending row may go in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// A bulk, list or single request, whichever the batcher picks.
    Any,
    /// Only alone (Create or Update Contact): its batch was refused without naming rows.
    Single,
}

impl Route {
    fn as_str(self) -> &'static str {
        match self {
            Route::Any => "any",
            Route::Single => "single",
        }
    }
}

/// How in-flight rows go back to wait: when, why, whether the attempt counts as a failure,
/// and which route they may take next.
#[derive(Clone, Copy, Debug)]
pub struct Release<'a> {
    pub not_before_ms: i64,
    pub error: Option<&'a str>,
    /// The attempt failed (5xx, timeout); a 429 or a crash is no failure of the rows.
    pub failed: bool,
    pub route: Route,
}

impl<'a> Release<'a> {
    /// Back to pending at once, nothing counted, any route.
    pub fn now() -> Release<'a> {
        Release {
            not_before_ms: 0,
            error: None,
            failed: false,
            route: Route::Any,
        }
    }

    pub fn because(self, error: &'a str) -> Release<'a> {
        Release {
            error: Some(error),
            ..self
        }
    }

    /// A failed attempt, retried no sooner than `not_before_ms`.
    pub fn failed_until(self, not_before_ms: i64) -> Release<'a> {
        Release {
            not_before_ms,
            failed: true,
            ..self
        }
    }

    pub fn one_by_one(self) -> Release<'a> {
        Release {
            route: Route::Single,
            ..self
        }
    }
}

const COLUMNS: &str = "id, phone, list_id, first_name, last_name, email, language, custom_fields, \
                       source, source_key, attempts";

/// Pending rows that may leave now: due, no write for the same phone in flight (per-contact
/// order), and no custom-field code still waiting to be created in Spoki (which would drop the
/// value). Checked in the same statement as the claim, so a file committed between the
/// custom-field step and the claim cannot slip through.
const ELIGIBLE: &str = "FROM outbox o WHERE o.state = 'pending' AND o.list_id = ? AND o.route = ? \
     AND o.not_before <= ? \
     AND NOT EXISTS (SELECT 1 FROM outbox i WHERE i.phone = o.phone AND i.state = 'inflight') \
     AND NOT EXISTS (SELECT 1 FROM json_each(o.custom_fields) j \
                     JOIN custom_fields cf ON cf.code = j.key WHERE cf.status = 'wanted')";

impl Store {
    /// How many rows could go in a request to `list` now, counting up to `cap`.
    pub async fn count_eligible(
        &self,
        list: ListId,
        route: Route,
        cap: i64,
    ) -> Result<i64, StoreError> {
        let sql = format!("SELECT COUNT(*) FROM (SELECT 1 {ELIGIBLE} LIMIT ?)");
        let (n,): (i64,) = sqlx::query_as(AssertSqlSafe(sql))
            .bind(list.0)
            .bind(route.as_str())
            .bind(now_ms())
            .bind(cap)
            .fetch_one(&self.pool)
            .await?;
        Ok(n)
    }

    /// Takes up to `limit` eligible rows, oldest first, and marks them in flight.
    pub async fn claim(
        &self,
        list: ListId,
        route: Route,
        limit: i64,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let mut tx = self.begin_delivery().await?;
        // Columns are read by name, so `o.*` serves `outbox_row`.
        let sql = format!("SELECT o.* {ELIGIBLE} ORDER BY o.id LIMIT ?");
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(list.0)
            .bind(route.as_str())
            .bind(now_ms())
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
        let rows: Vec<OutboxRow> = rows.iter().map(outbox_row).collect::<Result<_, _>>()?;
        for chunk in rows.chunks(500) {
            let sql = format!(
                "UPDATE outbox SET state = 'inflight' WHERE id IN ({})",
                placeholders(chunk.len())
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for r in chunk {
                q = q.bind(r.id);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(rows)
    }

    /// Lists (other than none) with pending rows.
    pub async fn pending_lists(&self) -> Result<Vec<ListId>, StoreError> {
        let ids: Vec<(i64,)> = sqlx::query_as(
            "SELECT DISTINCT list_id FROM outbox WHERE state = 'pending' AND list_id != 0 \
             ORDER BY list_id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(ids.into_iter().map(|(id,)| ListId(id)).collect())
    }

    /// Milliseconds (unix) at which the next delayed pending row becomes due, if any.
    pub async fn next_due_ms(&self) -> Result<Option<i64>, StoreError> {
        let (ms,): (Option<i64>,) =
            sqlx::query_as("SELECT MIN(not_before) FROM outbox WHERE state = 'pending'")
                .fetch_one(&self.pool)
                .await?;
        Ok(ms)
    }

    /// Spoki took these rows: the state, the mirror and list memberships learn the values, and
    /// the rows leave the outbox, all in one transaction.
    pub async fn acknowledge(
        &self,
        rows: &[OutboxRow],
        spoki_ids: &HashMap<Phone, i64>,
    ) -> Result<(), StoreError> {
        self.acknowledge_noting(rows, spoki_ids, &[]).await
    }

    /// `acknowledge`, plus a reject for each row in `partly` (a part of it that could not be
    /// sent, and why), recorded in the same transaction, so it is recorded once.
    pub async fn acknowledge_noting(
        &self,
        rows: &[OutboxRow],
        spoki_ids: &HashMap<Phone, i64>,
        partly: &[(OutboxRow, String)],
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_quiet_delivery().await?;
        for (row, reason) in partly {
            // Only while the row is still queued: settling twice records once.
            let (queued,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM outbox WHERE id = ?")
                .bind(row.id)
                .fetch_one(&mut *tx)
                .await?;
            if queued == 1 {
                Store::insert_reject(
                    &mut tx,
                    &row.source,
                    &row.source_key,
                    &row.phone.to_string(),
                    reason,
                )
                .await?;
            }
        }
        let now = now_rfc3339();
        for row in rows {
            let phone = row.phone.to_string();
            let spoki_id = spoki_ids.get(&row.phone).copied();
            let old_base = mirror::read_base(&mut tx, &phone)
                .await?
                .map(|(_, f)| f)
                .unwrap_or_default();
            let mut base = old_base.clone();
            base.overlay(&row.fields);
            mirror::write_row(&mut tx, "contact_state", &phone, spoki_id, &base).await?;
            // The mirror learns the values, except where another program changed a field in
            // the meantime: that newer value stays, and the poller sends it next.
            let deleting: Option<(i64,)> =
                sqlx::query_as("SELECT 1 FROM deletes WHERE phone = ? AND direction = 'to_spoki'")
                    .bind(&phone)
                    .fetch_optional(&mut *tx)
                    .await?;
            if deleting.is_none() {
                let new_mirror = match mirror::read_mirror(&mut tx, &phone).await? {
                    Some(m) => crate::merge::ack_into_mirror(&m, &old_base, &row.fields),
                    None => base,
                };
                mirror::write_row(&mut tx, "contacts", &phone, spoki_id, &new_mirror).await?;
            }
            if !row.list.is_none() {
                sqlx::query("INSERT OR IGNORE INTO list_members (list_id, phone) VALUES (?, ?)")
                    .bind(row.list.0)
                    .bind(&phone)
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query("DELETE FROM outbox WHERE id = ?")
                .bind(row.id)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ('last_push_at', ?) \
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        )
        .bind(&now)
        .execute(&mut *tx)
        .await?;
        Store::commit_quiet(tx).await?;
        Ok(())
    }

    /// Puts in-flight rows back to wait until `not_before_ms`. A newer pending row for the same
    /// contact absorbs the old values it does not override, so order and values hold.
    pub async fn release(&self, rows: &[OutboxRow], how: Release<'_>) -> Result<(), StoreError> {
        let mut tx = self.begin_delivery().await?;
        for row in rows {
            release_one(&mut tx, row, how).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Spoki refused these rows for good: they become rejects with Spoki's reason.
    pub async fn reject(&self, rows: &[(OutboxRow, String)]) -> Result<(), StoreError> {
        let mut tx = self.begin_delivery().await?;
        for (row, reason) in rows {
            // Only a row still queued becomes a reject, so recording twice records once.
            let deleted = sqlx::query("DELETE FROM outbox WHERE id = ?")
                .bind(row.id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if deleted == 1 {
                Store::insert_reject(
                    &mut tx,
                    &row.source,
                    &row.source_key,
                    &row.phone.to_string(),
                    reason,
                )
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// After a crash: every row left in flight waits again (its request may or may not have
    /// landed; sending it again is harmless because writes are upserts by phone).
    pub async fn recover_inflight(&self) -> Result<Vec<OutboxRow>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM outbox WHERE state = 'inflight' ORDER BY id"
        )))
        .fetch_all(&self.pool)
        .await?;
        let rows: Vec<OutboxRow> = rows.iter().map(outbox_row).collect::<Result<_, _>>()?;
        self.release(&rows, Release::now()).await?;
        Ok(rows)
    }

    pub async fn outbox_depth(&self) -> Result<i64, StoreError> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM outbox")
            .fetch_one(&self.pool)
            .await?;
        Ok(n)
    }
}

async fn release_one(
    conn: &mut SqliteConnection,
    row: &OutboxRow,
    how: Release<'_>,
) -> Result<(), StoreError> {
    let Release {
        not_before_ms,
        error,
        failed: count_attempt,
        route,
    } = how;
    // Releasing twice must change nothing: only a row still in flight goes back.
    let (in_flight,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM outbox WHERE id = ? AND state = 'inflight'")
            .bind(row.id)
            .fetch_one(&mut *conn)
            .await?;
    if in_flight == 0 {
        return Ok(());
    }
    let attempts = row.attempts + i64::from(count_attempt);
    let newer = sqlx::query(AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM outbox \
         WHERE phone = ? AND list_id = ? AND state = 'pending' AND id != ?"
    )))
    .bind(row.phone.to_string())
    .bind(row.list.0)
    .bind(row.id)
    .fetch_optional(&mut *conn)
    .await?;
    let route_value = route.as_str();
    match newer {
        Some(newer) => {
            let newer = outbox_row(&newer)?;
            let mut merged = newer.fields.clone();
            merged.fill_from_older(&row.fields);
            sqlx::query("DELETE FROM outbox WHERE id = ?")
                .bind(newer.id)
                .execute(&mut *conn)
                .await?;
            sqlx::query(
                "UPDATE outbox SET state = 'pending', first_name = ?, last_name = ?, email = ?, \
                 language = ?, custom_fields = ?, source = ?, source_key = ?, attempts = ?, \
                 not_before = ?, last_error = COALESCE(?, last_error), \
                 route = CASE WHEN ? = 'single' THEN 'single' ELSE route END WHERE id = ?",
            )
            .bind(&merged.first_name)
            .bind(&merged.last_name)
            .bind(&merged.email)
            .bind(&merged.language)
            .bind(fields_json(&merged))
            .bind(&newer.source)
            .bind(&newer.source_key)
            .bind(attempts)
            .bind(not_before_ms)
            .bind(error)
            .bind(route_value)
            .bind(row.id)
            .execute(&mut *conn)
            .await?;
        }
        None => {
            sqlx::query(
                "UPDATE outbox SET state = 'pending', attempts = ?, not_before = ?, \
                 last_error = COALESCE(?, last_error), \
                 route = CASE WHEN ? = 'single' THEN 'single' ELSE route END WHERE id = ?",
            )
            .bind(attempts)
            .bind(not_before_ms)
            .bind(error)
            .bind(route_value)
            .bind(row.id)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store_with_one_row(dir: &std::path::Path) -> (Store, OutboxRow) {
        let store = Store::open(&dir.join("t.db")).await.expect("open");
        let phone = Phone::from_e164("+393331234567").expect("phone");
        let fields = ContactFields {
            first_name: Some("Anna".into()),
            ..Default::default()
        };
        let mut tx = store.begin().await.expect("tx");
        Store::put_pending(
            &mut tx,
            phone,
            ListId::NONE,
            &fields,
            None,
            "csv",
            "f.csv:2",
        )
        .await
        .expect("queue");
        tx.commit().await.expect("commit");
        let rows = store
            .claim(ListId::NONE, Route::Any, 10)
            .await
            .expect("claim");
        assert_eq!(rows.len(), 1);
        (store, rows[0].clone())
    }

    #[tokio::test]
    async fn releasing_twice_keeps_the_row() {
        let dir = tempfile::tempdir().expect("dir");
        let (store, row) = store_with_one_row(dir.path()).await;
        for _ in 0..2 {
            store
                .release(
                    std::slice::from_ref(&row),
                    Release::now().because("503").failed_until(0),
                )
                .await
                .expect("release");
        }
        let again = store
            .claim(ListId::NONE, Route::Any, 10)
            .await
            .expect("claim");
        assert_eq!(again.len(), 1, "the row must survive a repeated release");
        assert_eq!(again[0].attempts, 1, "the attempt is counted once");
        assert_eq!(again[0].fields.first_name.as_deref(), Some("Anna"));
    }

    #[tokio::test]
    async fn rejecting_twice_records_one_reject() {
        let dir = tempfile::tempdir().expect("dir");
        let (store, row) = store_with_one_row(dir.path()).await;
        let bad = [(row, "invalid email".to_string())];
        store.reject(&bad).await.expect("reject");
        store.reject(&bad).await.expect("reject again");
        assert_eq!(store.rejects(10).await.expect("rejects").len(), 1);
        assert_eq!(store.outbox_depth().await.expect("depth"), 0);
    }
}
