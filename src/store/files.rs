//! The inbox's file checkpoints (`inbox_files`): committed, then moved.

use sqlx::sqlite::SqliteConnection;

use super::{Store, StoreError, now_rfc3339};

impl Store {
    /// A committed file not yet moved out of the inbox: its outcome and report.
    pub async fn unmoved_file(
        &self,
        path: &str,
        sha256: &str,
    ) -> Result<Option<(String, String)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT outcome, report FROM inbox_files WHERE path = ? AND sha256 = ? AND moved = 0",
        )
        .bind(path)
        .bind(sha256)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn record_file(
        conn: &mut SqliteConnection,
        path: &str,
        sha256: &str,
        outcome: &str,
        report: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO inbox_files (path, sha256, outcome, report, committed_at, moved) \
             VALUES (?, ?, ?, ?, ?, 0) ON CONFLICT(path, sha256) DO UPDATE SET \
             outcome = excluded.outcome, report = excluded.report, \
             committed_at = excluded.committed_at, moved = 0",
        )
        .bind(path)
        .bind(sha256)
        .bind(outcome)
        .bind(report)
        .bind(now_rfc3339())
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// The latest files handled: path, outcome, when, and the report's counts.
    pub async fn recent_files(&self, limit: i64) -> Result<Vec<serde_json::Value>, StoreError> {
        let rows: Vec<(String, String, String, String)> = sqlx::query_as(
            "SELECT path, outcome, committed_at, report FROM inbox_files \
             ORDER BY committed_at DESC LIMIT ?",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(path, outcome, at, report)| {
                let r: serde_json::Value = serde_json::from_str(&report).unwrap_or_default();
                serde_json::json!({
                    "file": path,
                    "outcome": outcome,
                    "at": at,
                    "rows": r.get("rows"),
                    "accepted": r.get("accepted"),
                    "unchanged": r.get("unchanged"),
                    "duplicates": r.get("duplicates"),
                    "rejected": r.get("rejected").and_then(serde_json::Value::as_array).map(Vec::len),
                    "error": r.get("error"),
                })
            })
            .collect())
    }

    pub async fn mark_file_moved(&self, path: &str, sha256: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE inbox_files SET moved = 1 WHERE path = ? AND sha256 = ?")
            .bind(path)
            .bind(sha256)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
