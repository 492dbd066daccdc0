//! The durable command queue: `queued → running → succeeded | failed`. A row turns `running`
//! right before its request leaves, so after a crash `running` means "may have reached Spoki".

use serde::Serialize;
use serde_json::Value;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{Store, StoreError, now_ms, now_rfc3339};

/// Status values, as stored and as the admin API shows them.
pub const QUEUED: &str = "queued";
pub const RUNNING: &str = "running";
pub const SUCCEEDED: &str = "succeeded";
pub const FAILED: &str = "failed";
pub const STATUSES: [&str; 4] = [QUEUED, RUNNING, SUCCEEDED, FAILED];

/// One command as the admin API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct CommandRecord {
    pub id: String,
    pub action: String,
    pub status: String,
    pub attempts: i64,
    pub params: Value,
    /// Spoki's JSON answer; `null` when it was empty.
    pub result: Value,
    /// Spoki's error body when Spoki refused it, else `{"error": "..."}`; `null` unless failed.
    pub error: Value,
    /// The HTTP status of the last answer, when there was one.
    pub http_status: Option<i64>,
    /// Why the last attempt did not succeed, while retries go on.
    pub last_error: Option<String>,
    /// When the next attempt is due (unix milliseconds), while queued.
    pub next_attempt_ms: Option<i64>,
    pub created_at: String,
    pub updated_at: String,
    pub finished_at: Option<String>,
}

/// One command in a listing: everything but `params` and `result`, which can be large
/// (up to 1 MiB of params, a page of Spoki's answer); `GET /v1/commands/{id}` has them.
#[derive(Clone, Debug, Serialize)]
pub struct CommandSummary {
    pub id: String,
    pub action: String,
    pub status: String,
    pub attempts: i64,
    pub error: Value,
    pub http_status: Option<i64>,
    pub last_error: Option<String>,
    pub next_attempt_ms: Option<i64>,
    pub created_at: String,
    pub updated_at: String,
    pub finished_at: Option<String>,
}

/// What queueing a command with an idempotency key found.
#[derive(Clone, Debug)]
pub enum Enqueued {
    /// Queued now, with this id.
    New(String),
    /// The key was used before: the first command, with its action, params and status.
    Existing {
        id: String,
        action: String,
        params: Value,
        status: String,
    },
}

/// A command the worker is about to run.
#[derive(Clone, Debug)]
pub struct DueCommand {
    pub seq: i64,
    pub id: String,
    pub action: String,
    pub params: Value,
    pub request: Value,
    pub attempts: i64,
    pub failures: i64,
    pub ambiguous: bool,
    /// Unix milliseconds.
    pub next_attempt_ms: i64,
}

fn json_column(row: &SqliteRow, name: &str) -> Result<Value, StoreError> {
    let text: Option<String> = row.try_get(name)?;
    match text {
        None => Ok(Value::Null),
        Some(t) => serde_json::from_str(&t)
            .map_err(|e| StoreError::Corrupt(format!("commands.{name} is not JSON: {e}"))),
    }
}

fn record(row: &SqliteRow) -> Result<CommandRecord, StoreError> {
    let status: String = row.try_get("status")?;
    let next: i64 = row.try_get("next_attempt_ms")?;
    Ok(CommandRecord {
        id: row.try_get("id")?,
        action: row.try_get("action")?,
        attempts: row.try_get("attempts")?,
        params: json_column(row, "params")?,
        result: json_column(row, "result")?,
        error: json_column(row, "error")?,
        http_status: row.try_get("http_status")?,
        last_error: row.try_get("last_error")?,
        next_attempt_ms: (status == QUEUED).then_some(next),
        status,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        finished_at: row.try_get("finished_at")?,
    })
}

fn summary(row: &SqliteRow) -> Result<CommandSummary, StoreError> {
    let status: String = row.try_get("status")?;
    let next: i64 = row.try_get("next_attempt_ms")?;
    Ok(CommandSummary {
        id: row.try_get("id")?,
        action: row.try_get("action")?,
        attempts: row.try_get("attempts")?,
        error: json_column(row, "error")?,
        http_status: row.try_get("http_status")?,
        last_error: row.try_get("last_error")?,
        next_attempt_ms: (status == QUEUED).then_some(next),
        status,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        finished_at: row.try_get("finished_at")?,
    })
}

fn due(row: &SqliteRow) -> Result<DueCommand, StoreError> {
    let ambiguous: i64 = row.try_get("ambiguous")?;
    Ok(DueCommand {
        seq: row.try_get("seq")?,
        id: row.try_get("id")?,
        action: row.try_get("action")?,
        params: json_column(row, "params")?,
        request: json_column(row, "request")?,
        attempts: row.try_get("attempts")?,
        failures: row.try_get("failures")?,
        ambiguous: ambiguous != 0,
        next_attempt_ms: row.try_get("next_attempt_ms")?,
    })
}

/// How a command ended.
#[derive(Clone, Debug)]
pub enum Outcome {
    Succeeded {
        http_status: Option<u16>,
        result: Option<Value>,
    },
    Failed {
        http_status: Option<u16>,
        error: Value,
    },
}

impl Store {
    /// Queues a checked command; returns its id.
    pub async fn enqueue_command(
        &self,
        action: &str,
        params: &Value,
        request: &Value,
    ) -> Result<String, StoreError> {
        match self
            .enqueue_command_once(action, params, request, None)
            .await?
        {
            Enqueued::New(id) | Enqueued::Existing { id, .. } => Ok(id),
        }
    }

    /// Queues a checked command unless `key` was used before; then returns the first command
    /// and queues nothing. The look-up and the insert share one write transaction, so two
    /// requests with one key cannot both queue.
    pub async fn enqueue_command_once(
        &self,
        action: &str,
        params: &Value,
        request: &Value,
        key: Option<&str>,
    ) -> Result<Enqueued, StoreError> {
        self.accepting()?;
        let mut tx = self.begin().await?;
        if let Some(key) = key {
            let first = sqlx::query(
                "SELECT id, action, params, status FROM commands WHERE idempotency_key = ?",
            )
            .bind(key)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(row) = first {
                return Ok(Enqueued::Existing {
                    id: row.try_get("id")?,
                    action: row.try_get("action")?,
                    params: json_column(&row, "params")?,
                    status: row.try_get("status")?,
                });
            }
        }
        let id = uuid::Uuid::new_v4().to_string();
        let now = now_rfc3339();
        sqlx::query(
            "INSERT INTO commands (id, action, params, request, status, next_attempt_ms, \
             created_at, updated_at, idempotency_key) VALUES (?, ?, ?, ?, 'queued', ?, ?, ?, ?)",
        )
        .bind(&id)
        .bind(action)
        .bind(params.to_string())
        .bind(request.to_string())
        .bind(now_ms())
        .bind(&now)
        .bind(&now)
        .bind(key)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Enqueued::New(id))
    }

    pub async fn command(&self, id: &str) -> Result<Option<CommandRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM commands WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(record).transpose()
    }

    /// Newest first, optionally only those with `status`.
    pub async fn commands(
        &self,
        status: Option<&str>,
        limit: i64,
    ) -> Result<Vec<CommandRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM commands WHERE (?1 IS NULL OR status = ?1) ORDER BY seq DESC LIMIT ?2",
        )
        .bind(status)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(record).collect()
    }

    /// A page of the listing, newest first: optionally only `status`, optionally only those
    /// queued before the command `before` (`None` inside when that id is unknown).
    pub async fn command_summaries(
        &self,
        status: Option<&str>,
        before: Option<&str>,
        limit: i64,
    ) -> Result<Option<Vec<CommandSummary>>, StoreError> {
        let before_seq = match before {
            None => None,
            Some(id) => {
                let seq: Option<i64> = sqlx::query_scalar("SELECT seq FROM commands WHERE id = ?")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                match seq {
                    Some(seq) => Some(seq),
                    None => return Ok(None),
                }
            }
        };
        // Never `params`, `request` or `result`: a listing stays small.
        let rows = sqlx::query(
            "SELECT id, action, status, attempts, error, http_status, last_error, \
             next_attempt_ms, created_at, updated_at, finished_at FROM commands \
             WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR seq < ?2) \
             ORDER BY seq DESC LIMIT ?3",
        )
        .bind(status)
        .bind(before_seq)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(summary).collect::<Result<_, _>>().map(Some)
    }

    /// Commands by status, for status and metrics.
    pub async fn command_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(
            sqlx::query_as("SELECT status, COUNT(*) FROM commands GROUP BY status")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// The oldest queued command of each action, due or not, oldest first.
    pub async fn queue_heads(&self) -> Result<Vec<DueCommand>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM commands WHERE seq IN \
             (SELECT MIN(seq) FROM commands WHERE status = 'queued' GROUP BY action) ORDER BY seq",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(due).collect()
    }

    /// `queued → running` right before the request leaves; counts the attempt.
    pub async fn command_sending(&self, seq: i64) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE commands SET status = 'running', attempts = attempts + 1, updated_at = ? \
             WHERE seq = ? AND status = 'queued'",
        )
        .bind(now_rfc3339())
        .bind(seq)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// `running → queued` for another attempt at `next_ms`.
    pub async fn command_retry(
        &self,
        seq: i64,
        next_ms: i64,
        reason: &str,
        http_status: Option<u16>,
        counts_as_failure: bool,
        ambiguous: bool,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE commands SET status = 'queued', next_attempt_ms = ?, last_error = ?, \
             http_status = ?, failures = failures + ?, ambiguous = MAX(ambiguous, ?), \
             updated_at = ? WHERE seq = ? AND status IN ('queued', 'running')",
        )
        .bind(next_ms)
        .bind(reason)
        .bind(http_status.map(i64::from))
        .bind(i64::from(counts_as_failure))
        .bind(i64::from(ambiguous))
        .bind(now_rfc3339())
        .bind(seq)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records how a command ended.
    pub async fn command_finish(&self, seq: i64, outcome: &Outcome) -> Result<(), StoreError> {
        let now = now_rfc3339();
        let (status, http_status, result, error) = match outcome {
            Outcome::Succeeded {
                http_status,
                result,
            } => (
                SUCCEEDED,
                *http_status,
                result.as_ref().map(Value::to_string),
                None,
            ),
            Outcome::Failed { http_status, error } => {
                (FAILED, *http_status, None, Some(error.to_string()))
            }
        };
        sqlx::query(
            "UPDATE commands SET status = ?, http_status = COALESCE(?, http_status), result = ?, \
             error = ?, updated_at = ?, finished_at = ? WHERE seq = ?",
        )
        .bind(status)
        .bind(http_status.map(i64::from))
        .bind(result)
        .bind(error)
        .bind(&now)
        .bind(&now)
        .bind(seq)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// After a crash: `running` commands whose request may be repeated go back to the queue
    /// (as ambiguous: a 404 on a retried delete then means done); the others fail, because the
    /// request may have reached Spoki and repeating it could create a duplicate. Returns
    /// (requeued, failed).
    pub async fn recover_running_commands(
        &self,
        repeat_safe: impl Fn(&str) -> bool,
    ) -> Result<(u64, u64), StoreError> {
        let rows: Vec<(i64, String)> =
            sqlx::query_as("SELECT seq, action FROM commands WHERE status = 'running'")
                .fetch_all(&self.pool)
                .await?;
        let (mut requeued, mut failed) = (0, 0);
        for (seq, action) in rows {
            if repeat_safe(&action) {
                self.command_retry(seq, now_ms(), "interrupted by a restart", None, false, true)
                    .await?;
                requeued += 1;
            } else {
                let error = serde_json::json!({
                    "error": "the daemon stopped while this request was with Spoki; it may have \
                              been applied, and repeating it could duplicate it, so it was not \
                              repeated. Check in Spoki and queue it again if needed."
                });
                self.command_finish(
                    seq,
                    &Outcome::Failed {
                        http_status: None,
                        error,
                    },
                )
                .await?;
                failed += 1;
            }
        }
        Ok((requeued, failed))
    }

    /// A command changed contacts behind the diff's back: forget what Spoki was last told
    /// about them, so the next change to any of them is sent in full rather than skipped as
    /// "unchanged". Costs at most one extra write per contact; never loses one.
    pub async fn forget_contacts(
        &self,
        phones: &[String],
        spoki_id: Option<i64>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_delivery().await?;
        for phone in phones {
            sqlx::query("DELETE FROM contact_state WHERE phone = ?")
                .bind(phone)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(id) = spoki_id {
            sqlx::query("DELETE FROM contact_state WHERE spoki_id = ?")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// A command changed a list's members: forget which members Spoki acknowledged, so the
    /// next file for that list adds its contacts again.
    pub async fn forget_list_members(&self, list_id: i64) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM list_members WHERE list_id = ?")
            .bind(list_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
