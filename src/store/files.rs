//! The inbox's file checkpoints: how far a file being read has got (`meta`, one key a file,
//! written in the transaction of each chunk), then committed and moved (`inbox_files`).

use sqlx::sqlite::SqliteConnection;

use super::{Store, StoreError, now_rfc3339};

/// How far a file read in short transactions has got: the content it was read from, the
/// contacts already judged and queued (in the order the reader emits them) and their verdicts.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileProgress {
    pub sha256: String,
    /// The settings the file was read with (region, custom fields kept): a resume with other
    /// settings would emit other contacts, so it starts over instead.
    pub settings: String,
    pub contacts: u64,
    pub creates: u64,
    pub updates: u64,
    pub unchanged: u64,
}

fn progress_key(path: &str) -> String {
    format!("inbox_progress:{path}")
}

impl Store {
    /// The checkpoint of a file that was being read when the daemon stopped, if any.
    pub async fn file_progress(&self, path: &str) -> Result<Option<FileProgress>, StoreError> {
        let row: Option<(String,)> = sqlx::query_as("SELECT value FROM meta WHERE key = ?")
            .bind(progress_key(path))
            .fetch_optional(&self.pool)
            .await?;
        // A checkpoint that cannot be read only costs a fresh start (judged rows are unchanged).
        Ok(row.and_then(|(v,)| serde_json::from_str(&v).ok()))
    }

    /// Records how far the file got; call in the transaction that queued those contacts.
    pub async fn save_file_progress(
        conn: &mut SqliteConnection,
        path: &str,
        progress: &FileProgress,
    ) -> Result<(), StoreError> {
        let value = serde_json::to_string(progress)
            .map_err(|e| StoreError::Corrupt(format!("file checkpoint: {e}")))?;
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES (?, ?) \
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        )
        .bind(progress_key(path))
        .bind(value)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// Forgets a file's checkpoint (it is committed whole, or it changed).
    pub async fn clear_file_progress(
        conn: &mut SqliteConnection,
        path: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM meta WHERE key = ?")
            .bind(progress_key(path))
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

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
