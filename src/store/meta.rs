//! `meta` and `budget_marks`: the running mark, the last push and pull, when each action
//! last sent; and the counts `/v1/status` shows.

use super::{Store, StoreError, now_rfc3339};

/// Daemon counters for status.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct StatusCounts {
    pub outbox_pending: i64,
    pub outbox_inflight: i64,
    pub rejected: i64,
    pub files_processed: i64,
    pub files_failed: i64,
    pub last_push_at: Option<String>,
    pub last_pull_at: Option<String>,
}

impl Store {
    pub async fn mark_budget(&self, action: &str, at_ms: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO budget_marks (action, last_at_ms) VALUES (?, ?) \
             ON CONFLICT(action) DO UPDATE SET last_at_ms = excluded.last_at_ms",
        )
        .bind(action)
        .bind(at_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn budget_marks(&self) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(
            sqlx::query_as("SELECT action, last_at_ms FROM budget_marks")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Marks this run as started; returns whether the previous one ended without a clean stop
    /// (its mark is still there): a crash or `kill -9`.
    pub async fn begin_run(&self) -> Result<bool, StoreError> {
        let mut tx = self.begin_delivery().await?;
        let (crashed,): (i64,) =
            sqlx::query_as("SELECT EXISTS (SELECT 1 FROM meta WHERE key = 'running')")
                .fetch_one(&mut *tx)
                .await?;
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ('running', ?) \
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        )
        .bind(now_rfc3339())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(crashed != 0)
    }

    /// A clean stop: the next start need not assume a crash.
    pub async fn end_run(&self) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM meta WHERE key = 'running'")
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES (?, ?) \
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn status_counts(&self) -> Result<StatusCounts, StoreError> {
        let (pending, inflight): (i64, i64) = sqlx::query_as(
            "SELECT COALESCE(SUM(state = 'pending'), 0), COALESCE(SUM(state = 'inflight'), 0) \
             FROM outbox",
        )
        .fetch_one(&self.pool)
        .await?;
        let (rejected,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM rejects")
            .fetch_one(&self.pool)
            .await?;
        let (processed, failed): (i64, i64) = sqlx::query_as(
            "SELECT COALESCE(SUM(outcome = 'processed'), 0), COALESCE(SUM(outcome = 'failed'), 0) \
             FROM inbox_files",
        )
        .fetch_one(&self.pool)
        .await?;
        let meta: Vec<(String, String)> = sqlx::query_as(
            "SELECT key, value FROM meta WHERE key IN ('last_push_at', 'last_pull_at')",
        )
        .fetch_all(&self.pool)
        .await?;
        let get = |k: &str| {
            meta.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        };
        Ok(StatusCounts {
            outbox_pending: pending,
            outbox_inflight: inflight,
            rejected,
            files_processed: processed,
            files_failed: failed,
            last_push_at: get("last_push_at"),
            last_pull_at: get("last_pull_at"),
        })
    }
}
