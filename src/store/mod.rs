//! The only module with SQL. One SQLite file in WAL mode holds the mirror, the state Spoki last
//! acknowledged, the outbox, file checkpoints and rejects. Migrations are embedded.

mod commands;
mod custom_fields;
mod files;
pub mod maintenance;
mod meta;
mod mirror;
#[cfg(test)]
mod model_tests;
mod outbox;
mod rejects;
mod snapshot;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, SqlitePool};

pub use commands::{CommandRecord, CommandSummary, DueCommand, Enqueued, Outcome, STATUSES};
pub use custom_fields::FieldStatus;
pub use files::FileProgress;
pub use meta::StatusCounts;
pub use rejects::{RejectFilter, RejectRecord};
pub use snapshot::{Snapshot, fields_digest};

pub use mirror::{MergeOutcome, PendingDelete, PollOutcome, SpokiContact, TO_MIRROR, TO_SPOKI};
pub use outbox::{OutboxRow, Release, Route};

use crate::diff::Known;
use crate::domain::{ContactFields, ListId, Phone};

pub type Tx = sqlx::Transaction<'static, sqlx::Sqlite>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unexpected data in the database: {0}")]
    Corrupt(String),
    /// The database file was deleted or replaced, or its schema is damaged beyond repair:
    /// new input is refused (see `Store::halt`).
    #[error("not accepting input: {0}")]
    Halted(String),
    /// `run` will not start over this database (see `Store::open_checked`).
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    File(String),
}

impl StoreError {
    /// The database cannot take writes: the disk is full (SQLITE_FULL) or the file or its
    /// folder is read-only (SQLITE_READONLY, SQLITE_CANTOPEN on a write, I/O errors). Input
    /// is then left where it is, to be taken once writes work again.
    pub fn cannot_write(&self) -> bool {
        if matches!(self, StoreError::Halted(_)) {
            return true;
        }
        let StoreError::Db(sqlx::Error::Database(e)) = self else {
            return false;
        };
        let code = e.code().and_then(|c| c.parse::<i32>().ok()).unwrap_or(0);
        // Primary result codes: 8 READONLY, 10 IOERR, 13 FULL, 14 CANTOPEN.
        matches!(code & 0xff, 8 | 10 | 13 | 14)
    }
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[derive(Clone, Debug)]
pub struct Store {
    pool: SqlitePool,
    /// Why new input is refused, once it is (shared by every clone).
    halted: Arc<Mutex<Option<String>>>,
    /// Transactions of this process waiting for the write lock (see `yield_to_writers`).
    writers_waiting: Arc<AtomicUsize>,
}

/// Counts a writer as waiting for the lock for as long as it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(count: &'a AtomicUsize) -> Waiting<'a> {
        count.fetch_add(1, Ordering::SeqCst);
        Waiting(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One contact an input wants Spoki to hold, with the key its rejects and logs name it by
/// (`file:line`, `webhook-id#index`, the phone).
#[derive(Clone, Debug)]
pub struct Incoming {
    pub phone: Phone,
    pub fields: ContactFields,
    pub key: String,
}

/// What `enqueue_changes` did with the contacts it was given.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EnqueueCounts {
    pub creates: u64,
    pub updates: u64,
    pub unchanged: u64,
}

impl EnqueueCounts {
    fn count(&mut self, verdict: crate::diff::Verdict) {
        use crate::diff::Verdict;
        match verdict {
            Verdict::Create => self.creates += 1,
            Verdict::Update => self.updates += 1,
            Verdict::Unchanged => self.unchanged += 1,
        }
    }

    /// Contacts that got a write.
    pub fn queued(&self) -> u64 {
        self.creates + self.updates
    }

    pub fn add(&mut self, other: EnqueueCounts) {
        self.creates += other.creates;
        self.updates += other.updates;
        self.unchanged += other.unchanged;
    }
}

pub(crate) fn fields_json(fields: &ContactFields) -> String {
    serde_json::to_string(&fields.custom_fields).unwrap_or_else(|_| "{}".to_string())
}

pub(crate) fn fields_from_row(row: &SqliteRow) -> Result<ContactFields, StoreError> {
    let custom: String = row.try_get("custom_fields")?;
    let custom_fields: BTreeMap<String, String> = serde_json::from_str(&custom)
        .map_err(|e| StoreError::Corrupt(format!("custom_fields is not a JSON object: {e}")))?;
    Ok(ContactFields {
        first_name: row.try_get("first_name")?,
        last_name: row.try_get("last_name")?,
        email: row.try_get("email")?,
        language: row.try_get("language")?,
        custom_fields,
    })
}

pub(crate) fn phone_from_row(row: &SqliteRow) -> Result<Phone, StoreError> {
    let text: String = row.try_get("phone")?;
    Phone::from_e164(&text).ok_or_else(|| StoreError::Corrupt(format!("bad phone {text:?}")))
}

/// Phones per lookup query in `known`.
const KNOWN_CHUNK: usize = 5000;

fn placeholders(n: usize) -> String {
    let mut s = String::with_capacity(n * 2);
    for i in 0..n {
        if i > 0 {
            s.push(',');
        }
        s.push('?');
    }
    s
}

impl Store {
    /// Opens (creating it if needed) and migrates the database.
    ///
    /// The file is created here, mode 0600, before SQLite sees it: SQLite gives the `-wal`
    /// and `-shm` files the database's mode, so none of them is readable by others whatever
    /// the umask. Connections never create the file: one opened after the file was deleted
    /// fails instead of starting an empty database at the path, and they are kept for the
    /// whole run, on the file opened at start (`maintenance::FileWatch` checks it is still
    /// there).
    pub async fn open(path: &Path) -> Result<Store, StoreError> {
        maintenance::create_private(path).map_err(StoreError::File)?;
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(false)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(60))
            .foreign_keys(true)
            // A checkpoint that resets the WAL also cuts it back to this size.
            .pragma(
                "journal_size_limit",
                maintenance::JOURNAL_SIZE_LIMIT.to_string(),
            );
        let pool = SqlitePoolOptions::new()
            // Inbox, batcher, command worker, mirror poller, puller and deleter, the admin API
            // and the webhook receiver each need one at times; writers wait on the lock, not
            // on the pool.
            .max_connections(8)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(opts)
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Store {
            pool,
            halted: Arc::default(),
            writers_waiting: Arc::default(),
        })
    }

    /// Opens an existing database read-only (for `plan`); `None` when there is none yet.
    pub async fn open_read_only(path: &Path) -> Result<Option<Store>, StoreError> {
        if !path.exists() {
            return Ok(None);
        }
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .read_only(true)
            .busy_timeout(Duration::from_secs(60));
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(opts)
            .await?;
        let migrated: Option<(String,)> = sqlx::query_as(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'contact_state'",
        )
        .fetch_optional(&pool)
        .await?;
        Ok(migrated.map(|_| Store {
            pool,
            halted: Arc::default(),
            writers_waiting: Arc::default(),
        }))
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Starts a write transaction. `BEGIN IMMEDIATE` takes the write lock up front: a deferred
    /// transaction that reads first and then writes gets SQLITE_BUSY at once in WAL mode when
    /// another writer committed in between (the busy timeout does not apply to that case).
    ///
    /// Refused once the store is halted: every path that takes new input (inbox, webhooks,
    /// mirror poll, commands) starts here, so none of them can accept into a database that
    /// is gone.
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        self.accepting()?;
        self.begin_delivery().await
    }

    /// `begin` for recording what was already accepted or already happened in Spoki
    /// (claims, acknowledgements, releases, rejects from Spoki, command outcomes): still
    /// allowed once halted, so what was accepted before keeps reaching Spoki.
    pub(crate) async fn begin_delivery(&self) -> Result<Tx, StoreError> {
        let _waiting = Waiting::new(&self.writers_waiting);
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// For a long series of short write transactions (a big file): between two of them, lets
    /// every transaction of this process that is waiting for the write lock have it first.
    /// SQLite's busy handler is not fair (a waiter sleeps, then tries again, and a writer that
    /// commits and begins again at once usually wins), so without this a webhook or the
    /// batcher could wait for the whole file. Waits at most `YIELD_MAX`.
    pub async fn yield_to_writers(&self) {
        const YIELD_MAX: Duration = Duration::from_secs(2);
        let started = std::time::Instant::now();
        tokio::task::yield_now().await;
        while self.writers_waiting.load(Ordering::SeqCst) > 0 && started.elapsed() < YIELD_MAX {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Stops taking input for good (until a restart). Returns false when it already was.
    pub fn halt(&self, reason: &str) -> bool {
        let mut halted = self.halted.lock().unwrap_or_else(|p| p.into_inner());
        if halted.is_some() {
            return false;
        }
        *halted = Some(reason.to_owned());
        true
    }

    /// Why input is refused, if it is.
    pub fn halted(&self) -> Option<String> {
        self.halted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn accepting(&self) -> Result<(), StoreError> {
        match self.halted() {
            Some(reason) => Err(StoreError::Halted(reason)),
            None => Ok(()),
        }
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// What is known of each phone, for a change headed to `list`.
    pub async fn known(
        conn: &mut SqliteConnection,
        list: ListId,
        phones: &[Phone],
    ) -> Result<HashMap<Phone, Known>, StoreError> {
        let mut out: HashMap<Phone, Known> = HashMap::with_capacity(phones.len());
        // An empty outbox (the usual case for `plan` and a first import) needs no lookup.
        let (queued,): (i64,) = sqlx::query_as("SELECT EXISTS (SELECT 1 FROM outbox)")
            .fetch_one(&mut *conn)
            .await?;
        for chunk in phones.chunks(KNOWN_CHUNK) {
            // One JSON array of the phones as the only parameter: SQLite reads it in C.
            let texts: Vec<String> = chunk.iter().map(Phone::to_string).collect();
            let texts = serde_json::to_string(&texts)
                .map_err(|e| StoreError::Corrupt(format!("phones: {e}")))?;
            let rows = sqlx::query(
                "SELECT phone, first_name, last_name, email, language, custom_fields \
                 FROM contact_state WHERE phone IN (SELECT value FROM json_each(?))",
            )
            .bind(&texts)
            .fetch_all(&mut *conn)
            .await?;
            for row in rows {
                let k = out.entry(phone_from_row(&row)?).or_default();
                k.in_state = true;
                k.effective = fields_from_row(&row)?;
            }
            if queued != 0 {
                let rows = sqlx::query(
                    "SELECT id, phone, list_id, state, first_name, last_name, email, language, \
                     custom_fields FROM outbox WHERE phone IN (SELECT value FROM json_each(?)) \
                     ORDER BY CASE state WHEN 'inflight' THEN 0 ELSE 1 END, id",
                )
                .bind(&texts)
                .fetch_all(&mut *conn)
                .await?;
                for row in rows {
                    let phone = phone_from_row(&row)?;
                    let fields = fields_from_row(&row)?;
                    let k = out.entry(phone).or_default();
                    k.queued = true;
                    k.effective.overlay(&fields);
                    let state: String = row.try_get("state")?;
                    let row_list: i64 = row.try_get("list_id")?;
                    if state == "pending" && row_list == list.0 {
                        k.pending_here = Some((row.try_get("id")?, fields));
                    }
                }
            }
            if !list.is_none() {
                let rows = sqlx::query(
                    "SELECT phone FROM list_members WHERE list_id = ? \
                     AND phone IN (SELECT value FROM json_each(?))",
                )
                .bind(list.0)
                .bind(&texts)
                .fetch_all(&mut *conn)
                .await?;
                for row in rows {
                    out.entry(phone_from_row(&row)?).or_default().member = true;
                }
            }
        }
        Ok(out)
    }

    /// The one enqueue path every input takes (CSV files, the contacts webhook, the mirror):
    /// what is known of each phone → `diff::judge` → pending rows (new ones many to a
    /// statement, changes merged into an existing pending row) → the custom-field codes the
    /// writes use, wanted in Spoki. `contacts` holds distinct phones.
    pub async fn enqueue_changes(
        conn: &mut SqliteConnection,
        source: &str,
        list: ListId,
        contacts: Vec<Incoming>,
    ) -> Result<EnqueueCounts, StoreError> {
        let phones: Vec<Phone> = contacts.iter().map(|c| c.phone).collect();
        let known = Store::known(conn, list, &phones).await?;
        let empty = Known::default();
        let mut out = EnqueueCounts::default();
        let mut fresh = Vec::new();
        let mut codes = BTreeMap::new();
        for c in contacts {
            let k = known.get(&c.phone).unwrap_or(&empty);
            let (verdict, write) = crate::diff::judge(k, list, &c.fields);
            out.count(verdict);
            if verdict == crate::diff::Verdict::Unchanged {
                continue;
            }
            for code in write.custom_fields.keys() {
                codes.entry(code.clone()).or_insert_with(|| code.clone());
            }
            match &k.pending_here {
                Some(pending) => {
                    Store::put_pending(conn, c.phone, list, &write, Some(pending), source, &c.key)
                        .await?;
                }
                None => fresh.push((c.phone, write, c.key)),
            }
        }
        Store::insert_pending_many(conn, list, &fresh, source).await?;
        let codes: Vec<(String, String)> = codes.into_iter().collect();
        Store::want_custom_fields(conn, &codes).await?;
        Ok(out)
    }

    /// `enqueue_changes`' judgement without writing anything (`plan`).
    pub async fn judge_changes(
        conn: &mut SqliteConnection,
        list: ListId,
        contacts: &[Incoming],
    ) -> Result<EnqueueCounts, StoreError> {
        let phones: Vec<Phone> = contacts.iter().map(|c| c.phone).collect();
        let known = Store::known(conn, list, &phones).await?;
        let empty = Known::default();
        let mut out = EnqueueCounts::default();
        for c in contacts {
            let k = known.get(&c.phone).unwrap_or(&empty);
            out.count(crate::diff::judge(k, list, &c.fields).0);
        }
        Ok(out)
    }

    /// Queues a change: merged into the pending row of (phone, list) if there is one.
    pub async fn put_pending(
        conn: &mut SqliteConnection,
        phone: Phone,
        list: ListId,
        changes: &ContactFields,
        pending: Option<&(i64, ContactFields)>,
        source: &str,
        source_key: &str,
    ) -> Result<(), StoreError> {
        match pending {
            Some((id, existing)) => {
                let mut merged = existing.clone();
                merged.overlay(changes);
                sqlx::query(
                    "UPDATE outbox SET first_name = ?, last_name = ?, email = ?, language = ?, \
                     custom_fields = ?, source = ?, source_key = ? WHERE id = ?",
                )
                .bind(&merged.first_name)
                .bind(&merged.last_name)
                .bind(&merged.email)
                .bind(&merged.language)
                .bind(fields_json(&merged))
                .bind(source)
                .bind(source_key)
                .bind(id)
                .execute(&mut *conn)
                .await?;
            }
            None => {
                sqlx::query(
                    "INSERT INTO outbox (phone, list_id, first_name, last_name, email, language, \
                     custom_fields, source, source_key, enqueued_at) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(phone.to_string())
                .bind(list.0)
                .bind(&changes.first_name)
                .bind(&changes.last_name)
                .bind(&changes.email)
                .bind(&changes.language)
                .bind(fields_json(changes))
                .bind(source)
                .bind(source_key)
                .bind(now_rfc3339())
                .execute(&mut *conn)
                .await?;
            }
        }
        Ok(())
    }

    /// Queues new rows (no pending row exists for their contact), many per statement.
    pub async fn insert_pending_many(
        conn: &mut SqliteConnection,
        list: ListId,
        rows: &[(Phone, ContactFields, String)],
        source: &str,
    ) -> Result<(), StoreError> {
        // Rows go in as one JSON array per statement, read by SQLite in C: no bind per value.
        const PER_STATEMENT: usize = 5000;
        type Packed<'a> = (
            String,
            &'a Option<String>,
            &'a Option<String>,
            &'a Option<String>,
            &'a Option<String>,
            String,
            &'a str,
        );
        let now = now_rfc3339();
        for chunk in rows.chunks(PER_STATEMENT) {
            let packed: Vec<Packed<'_>> = chunk
                .iter()
                .map(|(phone, f, key)| {
                    (
                        phone.to_string(),
                        &f.first_name,
                        &f.last_name,
                        &f.email,
                        &f.language,
                        fields_json(f),
                        key.as_str(),
                    )
                })
                .collect();
            let packed = serde_json::to_string(&packed)
                .map_err(|e| StoreError::Corrupt(format!("outbox rows: {e}")))?;
            sqlx::query(
                "INSERT INTO outbox (phone, list_id, first_name, last_name, email, language, \
                 custom_fields, source, source_key, enqueued_at) \
                 SELECT json_extract(j.value, '$[0]'), ?, json_extract(j.value, '$[1]'), \
                 json_extract(j.value, '$[2]'), json_extract(j.value, '$[3]'), \
                 json_extract(j.value, '$[4]'), json_extract(j.value, '$[5]'), ?, \
                 json_extract(j.value, '$[6]'), ? FROM json_each(?) j ORDER BY j.key",
            )
            .bind(list.0)
            .bind(source)
            .bind(&now)
            .bind(packed)
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }

    /// The acknowledged state of one contact (tests and status).
    pub async fn acknowledged(&self, phone: Phone) -> Result<Option<ContactFields>, StoreError> {
        let row = sqlx::query(
            "SELECT first_name, last_name, email, language, custom_fields FROM contact_state \
             WHERE phone = ?",
        )
        .bind(phone.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(fields_from_row).transpose()
    }
}
