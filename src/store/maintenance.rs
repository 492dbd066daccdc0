//! Keeps the database file sound: its identity across restarts (the sidecar `<db>.id`), the
//! file under a running daemon (deleted or replaced), the schema other programs can damage
//! (the mirror table `contacts` and its triggers), file modes, the WAL's size, and pruning of
//! old rows by the `storage.retention.*` settings.

use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::{Store, StoreError};
use crate::config::RetentionSettings;

/// A checkpoint that resets the WAL cuts it back to this size (SQLite's `journal_size_limit`).
pub const JOURNAL_SIZE_LIMIT: u64 = 64 * 1024 * 1024;

/// How often old rows are pruned (the first maintenance pass prunes too).
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Rows deleted per statement while pruning, so no prune holds the write lock for long.
const PRUNE_CHUNK: i64 = 5000;

pub use crate::config::sqlite_file_problem;

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// The sidecar beside the database that remembers which database was there.
pub fn sidecar_path(db: &Path) -> PathBuf {
    with_suffix(db, ".id")
}

/// Creates the database's folder and the file itself (empty, mode 0600) when missing; takes
/// the "others" bits off an existing database, `-wal` and `-shm`.
pub(super) fn create_private(path: &Path) -> Result<(), String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create the folder {}: {e}", dir.display()))?;
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("cannot create {}: {e}", path.display())),
    }
    for file in [
        path.to_path_buf(),
        with_suffix(path, "-wal"),
        with_suffix(path, "-shm"),
    ] {
        let Ok(meta) = std::fs::metadata(&file) else {
            continue;
        };
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o007 != 0 {
            let fixed = mode & !0o007;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(fixed))
                .map_err(|e| format!("cannot make {} private: {e}", file.display()))?;
            tracing::warn!(
                file = %file.display(),
                was = format!("{mode:o}"),
                now = format!("{fixed:o}"),
                "the database file was readable by everyone; took the others' access away"
            );
        }
    }
    Ok(())
}

fn read_sidecar(db: &Path) -> Result<Option<String>, String> {
    let path = sidecar_path(db);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(text.trim().to_owned()).filter(|t| !t.is_empty())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

fn write_sidecar(db: &Path, id: &str) -> Result<(), String> {
    let path = sidecar_path(db);
    let tmp = with_suffix(&path, ".tmp");
    let write = || -> std::io::Result<()> {
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        std::io::Write::write_all(&mut f, format!("{id}\n").as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    };
    write().map_err(|e| format!("cannot write {}: {e}", path.display()))
}

impl Store {
    /// Opens the database for `run`, refusing one that is not the database that was there:
    /// the sidecar `<db>.id` holds the id stored in the database's `meta`. A missing or empty
    /// file, or another id, where the sidecar says a database existed is refused unless
    /// `allow_new` (`run --allow-new-database`): the contacts accepted into the lost file
    /// would otherwise be forgotten without a word.
    pub async fn open_checked(path: &Path, allow_new: bool) -> Result<Store, StoreError> {
        let expected = read_sidecar(path).map_err(StoreError::File)?;
        let fresh = std::fs::metadata(path).map_or(true, |m| m.len() == 0);
        let refuse = |what: String| {
            StoreError::Refused(format!(
                "storage.database: {what}, but {} says the database {} was there: it was \
                 deleted or replaced, and contacts accepted into it may not have reached Spoki. \
                 Restore the file, or start with this database with `spoki-sync run \
                 --allow-new-database`",
                sidecar_path(path).display(),
                expected.as_deref().unwrap_or_default(),
            ))
        };
        if expected.is_some() && fresh && !allow_new {
            return Err(refuse(format!("{} is missing or empty", path.display())));
        }
        let store = Store::open(path).await?;
        let found: Option<(String,)> =
            sqlx::query_as("SELECT value FROM meta WHERE key = 'database_id'")
                .fetch_optional(&store.pool)
                .await?;
        let found = found.map(|(id,)| id);
        let id = match (&expected, &found) {
            (Some(e), Some(f)) if e == f => return Ok(store),
            (Some(_), _) if !allow_new => {
                store.close().await;
                let what = match &found {
                    Some(f) => format!("{} is another database (id {f})", path.display()),
                    None => format!("{} is a database without an id", path.display()),
                };
                return Err(refuse(what));
            }
            (Some(e), _) => {
                tracing::warn!(
                    database = %path.display(),
                    expected = %e,
                    "starting over a new or different database, as --allow-new-database asks"
                );
                found.unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
            }
            (None, Some(f)) => f.clone(),
            (None, None) => uuid::Uuid::new_v4().to_string(),
        };
        // The id goes into the database first: a crash before the sidecar is written only
        // means the next start writes it.
        store.set_meta("database_id", &id).await?;
        write_sidecar(path, &id).map_err(StoreError::File)?;
        Ok(store)
    }
}

/// The database file as opened at start (device and inode), to notice it being deleted or
/// replaced under the running daemon.
#[derive(Clone, Debug)]
pub struct FileWatch {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl FileWatch {
    pub fn new(path: &Path) -> Result<FileWatch, String> {
        let meta =
            std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Ok(FileWatch {
            path: path.to_path_buf(),
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }

    /// What happened to the file, if anything did.
    pub fn problem(&self) -> Option<String> {
        match std::fs::metadata(&self.path) {
            Ok(m) if m.dev() == self.dev && m.ino() == self.ino => None,
            Ok(_) => Some(format!(
                "the database file {} was replaced by another file while the daemon ran",
                self.path.display()
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(format!(
                "the database file {} was deleted while the daemon ran",
                self.path.display()
            )),
            // Cannot look (permissions changed on the folder?): not proof of anything.
            Err(_) => None,
        }
    }
}

const CORE_SQL: &str = include_str!("../../migrations/0001_core.sql");
const MIRROR_SQL: &str = include_str!("../../migrations/0003_mirror.sql");

/// The mirror's triggers, each with the migration that defines it.
pub const TRIGGERS: [(&str, &str); 4] = [
    ("contacts_touch_updated_at", CORE_SQL),
    ("mirror_journal_insert", MIRROR_SQL),
    ("mirror_journal_update", MIRROR_SQL),
    ("mirror_journal_delete", MIRROR_SQL),
];

/// The mirror's columns (docs/mirror.md).
const MIRROR_COLUMNS: [&str; 8] = [
    "phone",
    "spoki_id",
    "first_name",
    "last_name",
    "email",
    "language",
    "custom_fields",
    "updated_at",
];

/// Tables only the daemon writes; without any of them it cannot work.
const DAEMON_TABLES: [&str; 13] = [
    "contact_state",
    "list_members",
    "outbox",
    "rejects",
    "inbox_files",
    "custom_fields",
    "budget_marks",
    "meta",
    "commands",
    "mirror_changes",
    "mirror_quiet",
    "webhook_seen",
    "deletes",
];

/// The statement of `sql` that starts with `head`, up to and including `end`.
fn statement<'a>(sql: &'a str, head: &str, end: &str) -> Option<&'a str> {
    let start = sql.find(head)?;
    let len = sql[start..].find(end)? + end.len();
    Some(&sql[start..start + len])
}

fn trigger_sql(name: &str) -> Option<&'static str> {
    let (_, sql) = TRIGGERS.iter().find(|(n, _)| *n == name)?;
    statement(sql, &format!("CREATE TRIGGER {name} "), "\nEND;")
}

/// What a schema check found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SchemaReport {
    /// The mirror table was missing: recreated, and refilled with this many contacts from
    /// the state Spoki last acknowledged.
    pub mirror_recreated: Option<u64>,
    /// Triggers that were missing and were created again.
    pub triggers_recreated: Vec<String>,
    /// What is wrong and cannot be repaired here.
    pub broken: Vec<String>,
}

impl Store {
    /// Checks the daemon's tables, the mirror table's columns and its triggers. A missing
    /// trigger is created again, and every mirror row is journaled once so edits made while
    /// it was missing are picked up (the poll sends only what differs from Spoki). A missing
    /// mirror table is created again and refilled from `contact_state`, which holds what
    /// Spoki acknowledged: the mirror then holds every contact known to be in Spoki, as
    /// docs/mirror.md says. Missing columns or daemon tables are reported in `broken`.
    pub async fn check_schema(&self) -> Result<SchemaReport, StoreError> {
        let objects: Vec<(String, String)> = sqlx::query_as(
            "SELECT type, name FROM sqlite_master WHERE type IN ('table', 'trigger')",
        )
        .fetch_all(&self.pool)
        .await?;
        let has = |kind: &str, name: &str| objects.iter().any(|(k, n)| k == kind && n == name);
        let mut report = SchemaReport::default();
        for table in DAEMON_TABLES {
            if !has("table", table) {
                report.broken.push(format!("the table {table} is missing"));
            }
        }
        if !report.broken.is_empty() {
            return Ok(report);
        }
        if !has("table", "contacts") {
            report.mirror_recreated = Some(self.recreate_mirror().await?);
            return Ok(report);
        }
        let columns: Vec<(String,)> =
            sqlx::query_as("SELECT name FROM pragma_table_info('contacts')")
                .fetch_all(&self.pool)
                .await?;
        let missing: Vec<&str> = MIRROR_COLUMNS
            .into_iter()
            .filter(|c| !columns.iter().any(|(n,)| n == c))
            .collect();
        if !missing.is_empty() {
            report.broken.push(format!(
                "the mirror table contacts lacks the column(s) {}",
                missing.join(", ")
            ));
            return Ok(report);
        }
        let missing: Vec<&str> = TRIGGERS
            .iter()
            .map(|(n, _)| *n)
            .filter(|n| !has("trigger", n))
            .collect();
        if !missing.is_empty() {
            self.recreate_triggers(&missing).await?;
            report.triggers_recreated = missing.iter().map(|n| (*n).to_owned()).collect();
        }
        Ok(report)
    }

    async fn recreate_triggers(&self, names: &[&str]) -> Result<(), StoreError> {
        let mut tx = self.begin_delivery().await?;
        for name in names {
            let sql = trigger_sql(name)
                .ok_or_else(|| StoreError::Corrupt(format!("no definition of trigger {name}")))?;
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut *tx)
                .await?;
        }
        // Edits made while a journal trigger was missing were never journaled: journal every
        // row (and, for deletes, every acknowledged contact the mirror no longer has).
        if names
            .iter()
            .any(|n| *n == "mirror_journal_insert" || *n == "mirror_journal_update")
        {
            sqlx::query("INSERT INTO mirror_changes (phone, op) SELECT phone, 'U' FROM contacts")
                .execute(&mut *tx)
                .await?;
        }
        if names.contains(&"mirror_journal_delete") {
            sqlx::query(
                "INSERT INTO mirror_changes (phone, op) SELECT phone, 'D' FROM contact_state \
                 WHERE phone NOT IN (SELECT phone FROM contacts WHERE phone IS NOT NULL)",
            )
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Creates the mirror table and its triggers again, filled with the acknowledged state,
    /// in one quiet transaction (nothing of it is journaled). Returns the rows written.
    async fn recreate_mirror(&self) -> Result<u64, StoreError> {
        let table = statement(CORE_SQL, "CREATE TABLE contacts (", "\n);")
            .ok_or_else(|| StoreError::Corrupt("no definition of the table contacts".into()))?;
        let mut tx = self.begin_delivery().await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(table))
            .execute(&mut *tx)
            .await?;
        for (name, _) in TRIGGERS {
            let sql = trigger_sql(name)
                .ok_or_else(|| StoreError::Corrupt(format!("no definition of trigger {name}")))?;
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("INSERT OR IGNORE INTO mirror_quiet (k) VALUES (1)")
            .execute(&mut *tx)
            .await?;
        let rows = sqlx::query(
            "INSERT INTO contacts (phone, spoki_id, first_name, last_name, email, language, \
             custom_fields) SELECT phone, spoki_id, first_name, last_name, email, language, \
             custom_fields FROM contact_state",
        )
        .execute(&mut *tx)
        .await?
        .rows_affected();
        Store::commit_quiet(tx).await?;
        Ok(rows)
    }

    /// Deletes rows older than their retention (a zero retention keeps them): rejects,
    /// finished commands (succeeded or failed), inbox files already moved out, webhook ids.
    pub async fn prune(&self, retention: &RetentionSettings) -> Result<Pruned, StoreError> {
        let cutoff = |age: Duration| {
            chrono::Duration::from_std(age)
                .ok()
                .and_then(|d| chrono::Utc::now().checked_sub_signed(d))
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        };
        let mut out = Pruned::default();
        let jobs: [(&mut u64, Duration, &str); 4] = [
            (
                &mut out.rejects,
                retention.rejects,
                "DELETE FROM rejects WHERE id IN (SELECT id FROM rejects \
                 WHERE created_at < ? LIMIT ?)",
            ),
            (
                &mut out.commands,
                retention.commands,
                "DELETE FROM commands WHERE seq IN (SELECT seq FROM commands \
                 WHERE finished_at < ? AND status IN ('succeeded', 'failed') LIMIT ?)",
            ),
            (
                &mut out.files,
                retention.files,
                "DELETE FROM inbox_files WHERE rowid IN (SELECT rowid FROM inbox_files \
                 WHERE committed_at < ? AND moved = 1 LIMIT ?)",
            ),
            (
                &mut out.webhook_ids,
                retention.webhook_ids,
                "DELETE FROM webhook_seen WHERE (source, id) IN (SELECT source, id \
                 FROM webhook_seen WHERE received_at < ? LIMIT ?)",
            ),
        ];
        for (count, age, sql) in jobs {
            if age.is_zero() {
                continue;
            }
            let Some(before) = cutoff(age) else { continue };
            loop {
                let n = sqlx::query(sql)
                    .bind(&before)
                    .bind(PRUNE_CHUNK)
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                *count += n;
                if n < PRUNE_CHUNK as u64 {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// When the WAL is above `limit` bytes, checkpoints it and truncates it to zero. Returns
    /// its size before and after, when it did.
    pub async fn checkpoint_if_big(
        &self,
        db: &Path,
        limit: u64,
    ) -> Result<Option<(u64, u64)>, StoreError> {
        let wal = with_suffix(db, "-wal");
        let Ok(before) = std::fs::metadata(&wal).map(|m| m.len()) else {
            return Ok(None);
        };
        if before <= limit {
            return Ok(None);
        }
        let _: (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
            .fetch_one(&self.pool)
            .await?;
        let after = std::fs::metadata(&wal).map_or(0, |m| m.len());
        Ok(Some((before, after)))
    }
}

/// Rows pruned, per table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    pub rejects: u64,
    pub commands: u64,
    pub files: u64,
    pub webhook_ids: u64,
}

impl Pruned {
    pub fn total(&self) -> u64 {
        self.rejects + self.commands + self.files + self.webhook_ids
    }
}

/// The periodic maintenance task: every `storage.check_interval` it checks the file and the
/// schema, and checkpoints a big WAL; every hour it prunes.
pub struct Maintenance {
    store: Store,
    path: PathBuf,
    watch: FileWatch,
    retention: RetentionSettings,
    wal_limit: u64,
    interval: Duration,
    last_prune: Option<Instant>,
    failing: bool,
}

impl Maintenance {
    pub fn new(
        store: Store,
        path: &Path,
        retention: RetentionSettings,
        wal_limit: u64,
        interval: Duration,
    ) -> Result<Maintenance, StoreError> {
        Ok(Maintenance {
            store,
            path: path.to_path_buf(),
            watch: FileWatch::new(path).map_err(StoreError::File)?,
            retention,
            wal_limit,
            interval,
            last_prune: None,
            failing: false,
        })
    }

    /// The check at start: repairs what it can; what it cannot is an error (`run` refuses to
    /// start, naming it).
    pub async fn check_at_start(&mut self) -> Result<(), StoreError> {
        let report = self.store.check_schema().await?;
        log_repairs(&report);
        if !report.broken.is_empty() {
            return Err(StoreError::Refused(format!(
                "storage.database: {}: {}; restore the database from a backup",
                self.path.display(),
                report.broken.join("; ")
            )));
        }
        self.prune_if_due().await;
        Ok(())
    }

    /// One pass. Once the store is halted there is nothing left to do until a restart.
    pub async fn pass_once(&mut self) {
        if self.store.halted().is_some() {
            return;
        }
        if let Some(problem) = self.watch.problem() {
            self.halt(&problem);
            return;
        }
        match self.store.check_schema().await {
            Ok(report) => {
                self.failing = false;
                log_repairs(&report);
                if !report.broken.is_empty() {
                    self.halt(&format!(
                        "the database {} is damaged: {}",
                        self.path.display(),
                        report.broken.join("; ")
                    ));
                    return;
                }
            }
            Err(error) => {
                if !self.failing {
                    tracing::warn!(%error, "cannot check the database schema; will try again");
                }
                self.failing = true;
                return;
            }
        }
        match self
            .store
            .checkpoint_if_big(&self.path, self.wal_limit)
            .await
        {
            Ok(Some((before, after))) => tracing::info!(
                before_bytes = before,
                after_bytes = after,
                "checkpointed and truncated a big WAL"
            ),
            Ok(None) => {}
            Err(error) => tracing::warn!(%error, "cannot checkpoint the WAL"),
        }
        self.prune_if_due().await;
    }

    async fn prune_if_due(&mut self) {
        if self.last_prune.is_some_and(|t| t.elapsed() < PRUNE_EVERY) {
            return;
        }
        self.last_prune = Some(Instant::now());
        match self.store.prune(&self.retention).await {
            Ok(p) if p.total() > 0 => tracing::info!(
                rejects = p.rejects,
                commands = p.commands,
                files = p.files,
                webhook_ids = p.webhook_ids,
                "pruned rows past their retention"
            ),
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "cannot prune old rows; will try again"),
        }
    }

    fn halt(&self, reason: &str) {
        if self.store.halt(reason) {
            tracing::error!(
                reason,
                "STOPPED ACCEPTING INPUT: webhooks answer 503, files stay in the inbox, \
                 the mirror is not polled; what was accepted before is still sent. \
                 Restart the daemon once the database is back"
            );
        }
    }

    pub async fn run(mut self, cancel: CancellationToken) {
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(self.interval) => {}
            }
            self.pass_once().await;
        }
    }
}

fn log_repairs(report: &SchemaReport) {
    if let Some(rows) = report.mirror_recreated {
        tracing::error!(
            rows,
            "the mirror table contacts was missing (dropped by another program?): created it \
             again and refilled it from the state Spoki acknowledged; edits made to it since \
             the last poll are lost"
        );
    }
    if !report.triggers_recreated.is_empty() {
        tracing::warn!(
            triggers = report.triggers_recreated.join(", "),
            "mirror triggers were missing (dropped by another program?): created them again; \
             every mirror row is checked once for edits made meanwhile"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_trigger_and_the_mirror_table_have_a_definition() {
        for (name, _) in TRIGGERS {
            let sql = trigger_sql(name).unwrap_or_else(|| panic!("{name}"));
            assert!(sql.ends_with("END;"), "{sql}");
        }
        let table = statement(CORE_SQL, "CREATE TABLE contacts (", "\n);").expect("table");
        for c in MIRROR_COLUMNS {
            assert!(table.contains(&format!("    {c} ")), "{c}");
        }
    }

    #[test]
    fn a_file_that_is_not_sqlite_is_named() {
        let dir = tempfile::tempdir().expect("dir");
        let p = dir.path().join("x.db");
        assert_eq!(sqlite_file_problem(&p), None, "missing is fine");
        std::fs::write(&p, b"").expect("write");
        assert_eq!(sqlite_file_problem(&p), None, "empty is fine");
        std::fs::write(&p, b"phone\n+39333\n").expect("write");
        assert!(sqlite_file_problem(&p).is_some_and(|m| m.contains("not a SQLite database")));
        std::fs::write(&p, b"SQLite format 3\0rest").expect("write");
        assert_eq!(sqlite_file_problem(&p), None);
        assert!(sqlite_file_problem(dir.path()).is_some_and(|m| m.contains("folder")));
    }
}
