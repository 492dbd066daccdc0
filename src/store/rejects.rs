//! Rejects: what was accepted but cannot be sent, with the reason (`GET /v1/rejects`).

use sqlx::Row;
use sqlx::sqlite::SqliteConnection;

use super::*;

#[derive(Clone, Debug, serde::Serialize)]
pub struct RejectRecord {
    pub id: i64,
    pub source: String,
    pub key: String,
    pub phone: String,
    pub reason: String,
    pub created_at: String,
}

/// Which rejects a listing shows.
#[derive(Clone, Debug, Default)]
pub struct RejectFilter {
    pub before: Option<i64>,
    pub source: Option<String>,
    pub file: Option<String>,
}

/// A reject's reason as a short label for metrics (the text itself varies too much).
fn reason_class(reason: &str) -> &'static str {
    let r = reason.to_ascii_lowercase();
    if r.starts_with("invalid email") {
        // Before the other tests: the address it quotes may hold any word.
        "invalid_email"
    } else if r.contains("longer than") || r.contains("too large") {
        "too_large"
    } else if r.contains("custom field value not sent") {
        "custom_field_refused"
    } else if r.contains("no phone") {
        "missing_phone"
    } else if r.contains("phone") {
        "invalid_phone"
    } else if r.contains("email") || r.contains("e-mail") {
        "invalid_email"
    } else if r.contains("custom_fields") {
        "invalid_custom_fields"
    } else if r.contains("spoki") || r.contains("http") {
        "refused_by_spoki"
    } else {
        "other"
    }
}

impl Store {
    /// Records many rejects of one source (key, phone, reason) in a few statements.
    pub async fn insert_rejects(
        conn: &mut SqliteConnection,
        source: &str,
        rejects: &[(String, &str, &str)],
    ) -> Result<(), StoreError> {
        const PER_STATEMENT: usize = 5_000;
        let mut classes: HashMap<&'static str, u64> = HashMap::new();
        for (_, _, reason) in rejects {
            *classes.entry(reason_class(reason)).or_default() += 1;
        }
        for (class, n) in classes {
            metrics::counter!("spoki_sync_rejects_total", "source" => source.to_owned(), "reason" => class)
                .increment(n);
        }
        let now = now_rfc3339();
        for chunk in rejects.chunks(PER_STATEMENT) {
            let rows = serde_json::to_string(chunk)
                .map_err(|e| StoreError::Corrupt(format!("rejects: {e}")))?;
            sqlx::query(
                "INSERT INTO rejects (source, key, phone, reason, created_at) \
                 SELECT ?, json_extract(j.value, '$[0]'), json_extract(j.value, '$[1]'), \
                 json_extract(j.value, '$[2]'), ? FROM json_each(?) j ORDER BY j.key",
            )
            .bind(source)
            .bind(&now)
            .bind(rows)
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }

    pub async fn insert_reject(
        conn: &mut SqliteConnection,
        source: &str,
        key: &str,
        phone: &str,
        reason: &str,
    ) -> Result<(), StoreError> {
        metrics::counter!("spoki_sync_rejects_total", "source" => source.to_owned(), "reason" => reason_class(reason))
            .increment(1);
        sqlx::query(
            "INSERT INTO rejects (source, key, phone, reason, created_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(source)
        .bind(key)
        .bind(phone)
        .bind(reason)
        .bind(now_rfc3339())
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    pub async fn rejects(&self, limit: i64) -> Result<Vec<RejectRecord>, StoreError> {
        self.rejects_page(&RejectFilter::default(), limit).await
    }

    /// Newest first: those with an id below `before`, of `source`, of the CSV `file` (its
    /// keys are `<file>:<line>`), each filter optional.
    pub async fn rejects_page(
        &self,
        filter: &RejectFilter,
        limit: i64,
    ) -> Result<Vec<RejectRecord>, StoreError> {
        // `<file>:` up to (not including) `<file>;`: every key that starts with `<file>:`,
        // without LIKE's wildcards in file names.
        let rows = sqlx::query(
            "SELECT id, source, key, phone, reason, created_at FROM rejects \
             WHERE (?1 IS NULL OR id < ?1) AND (?2 IS NULL OR source = ?2) \
             AND (?3 IS NULL OR (key >= ?3 || ':' AND key < ?3 || ';')) \
             ORDER BY id DESC LIMIT ?4",
        )
        .bind(filter.before)
        .bind(filter.source.as_deref())
        .bind(filter.file.as_deref())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(RejectRecord {
                    id: r.try_get("id")?,
                    source: r.try_get("source")?,
                    key: r.try_get("key")?,
                    phone: r.try_get("phone")?,
                    reason: r.try_get("reason")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }
}
