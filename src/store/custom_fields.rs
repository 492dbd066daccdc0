//! Custom-field codes and where each stands with Spoki (`FieldStatus`).

use sqlx::AssertSqlSafe;
use sqlx::sqlite::SqliteConnection;

use super::*;

/// Where a custom-field code stands with Spoki.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldStatus {
    /// Used by queued contacts, not yet known to exist in Spoki: their rows wait.
    Wanted,
    /// Spoki has it.
    Exists,
    /// Spoki refused to create it (or lacks it while creation is off): values are not sent.
    Failed,
}

impl FieldStatus {
    fn as_str(self) -> &'static str {
        match self {
            FieldStatus::Wanted => "wanted",
            FieldStatus::Exists => "exists",
            FieldStatus::Failed => "failed",
        }
    }
}

impl Store {
    /// How many of `codes` the daemon has never seen (neither created, nor waiting, nor
    /// refused): what an input would add to the custom fields to create in Spoki.
    pub async fn new_custom_field_codes(
        conn: &mut SqliteConnection,
        codes: &[String],
    ) -> Result<usize, StoreError> {
        let mut new = 0;
        for chunk in codes.chunks(KNOWN_CHUNK) {
            let sql = format!(
                "SELECT COUNT(*) FROM custom_fields WHERE code IN ({})",
                placeholders(chunk.len())
            );
            let mut q = sqlx::query_as(AssertSqlSafe(sql));
            for c in chunk {
                q = q.bind(c);
            }
            let (seen,): (i64,) = q.fetch_one(&mut *conn).await?;
            new += chunk
                .len()
                .saturating_sub(usize::try_from(seen).unwrap_or(0));
        }
        Ok(new)
    }

    /// Marks custom-field codes as needed in Spoki (unless already known).
    pub async fn want_custom_fields(
        conn: &mut SqliteConnection,
        codes: &[(String, String)],
    ) -> Result<(), StoreError> {
        for (code, label) in codes {
            sqlx::query(
                "INSERT INTO custom_fields (code, label, status) VALUES (?, ?, 'wanted') \
                 ON CONFLICT(code) DO NOTHING",
            )
            .bind(code)
            .bind(label)
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }

    /// (code, label) of the custom fields in `status`.
    pub async fn custom_fields_with_status(
        &self,
        status: FieldStatus,
    ) -> Result<Vec<(String, String)>, StoreError> {
        Ok(
            sqlx::query_as("SELECT code, label FROM custom_fields WHERE status = ? ORDER BY code")
                .bind(status.as_str())
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Codes Spoki refused to create (or that it lacks while creation is off), with why.
    pub async fn failed_custom_fields(&self) -> Result<Vec<(String, String)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT code, COALESCE(reason, 'refused by Spoki') FROM custom_fields \
             WHERE status = 'failed' ORDER BY code",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Where each of `codes` stands, with the reason of a refusal; codes the daemon has never
    /// seen are absent from the answer.
    pub async fn custom_field_states(
        &self,
        codes: &[String],
    ) -> Result<Vec<(String, FieldStatus, Option<String>)>, StoreError> {
        let mut states = Vec::new();
        for chunk in codes.chunks(KNOWN_CHUNK) {
            let sql = format!(
                "SELECT code, status, reason FROM custom_fields WHERE code IN ({})",
                placeholders(chunk.len())
            );
            let mut q = sqlx::query_as(AssertSqlSafe(sql));
            for c in chunk {
                q = q.bind(c);
            }
            let rows: Vec<(String, String, Option<String>)> = q.fetch_all(&self.pool).await?;
            for (code, status, reason) in rows {
                let status = match status.as_str() {
                    "exists" => FieldStatus::Exists,
                    "failed" => FieldStatus::Failed,
                    _ => FieldStatus::Wanted,
                };
                states.push((code, status, reason));
            }
        }
        Ok(states)
    }

    /// Asks for a look at Spoki's fields for these (code, label) pairs: codes never seen
    /// become wanted (nothing else changes), in a transaction of their own.
    pub async fn probe_custom_fields(&self, codes: &[(String, String)]) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        Store::want_custom_fields(&mut tx, codes).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every refused code is wanted again (a configuration reload: the operator may have
    /// fixed what stood in the way). Returns how many.
    pub async fn retry_failed_custom_fields(&self) -> Result<u64, StoreError> {
        Ok(sqlx::query(
            "UPDATE custom_fields SET status = 'wanted', reason = NULL WHERE status = 'failed'",
        )
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// The first value queued for `code` (oldest outbox row first): the `example` a new field
    /// is created with.
    pub async fn custom_field_example(&self, code: &str) -> Result<Option<String>, StoreError> {
        // Codes are upper-case letters, digits and `_`; quoted in the path all the same.
        let path = format!("$.\"{}\"", code.replace('"', ""));
        let row: Option<(Option<String>,)> = sqlx::query_as(
            "SELECT json_extract(custom_fields, ?1) FROM outbox \
             WHERE json_extract(custom_fields, ?1) IS NOT NULL ORDER BY id LIMIT 1",
        )
        .bind(path)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.and_then(|(v,)| v))
    }

    pub async fn set_custom_field_status(
        &self,
        code: &str,
        status: FieldStatus,
        reason: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE custom_fields SET status = ?, reason = ? WHERE code = ?")
            .bind(status.as_str())
            .bind(reason)
            .bind(code)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
