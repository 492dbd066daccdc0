//! The watched CSV inbox (CONTRACT §3). notify events and a periodic rescan are both only hints
//! to look at the folder again. A file is read once its writer has closed it (a close-after-write
//! or moved-to event), or, when no such event was seen, once it has not changed for `csv.settle`.
//! Its rows are committed to the outbox a chunk at a time, each chunk in a short transaction
//! with the file's checkpoint (so webhooks, the mirror and the batcher get the write lock between
//! chunks, and a restart resumes after the last committed chunk); only once the last chunk, the
//! rejects and the report are committed is it moved to `processed/` with its report (or to
//! `failed/` when it is not CSV at all, which is found before any chunk). A file that changed
//! while it was read stops before its next chunk; one that changed after the commit is not
//! moved. Either way it is read again once it is stable, and what was already queued from it is
//! judged unchanged then.
//!
//! Idle means idle: only create, close-after-write and rename events wake a scan.
//! notify's inotify mask is fixed and includes open events, which the daemon's own scans cause;
//! those (and reads, attribute changes, and anything inside `processed/` and `failed/`) are
//! dropped in the watcher's callback, so a scan never wakes another one.
//!
//! Entries that cannot be processed (symlinks, folders that are not read, folders under `lists/`
//! that are not list ids, files that are not regular or cannot be read or moved) get one log
//! line each, and a file among them goes to `failed/` where it can be moved.

use std::collections::{HashMap, HashSet};
use std::fs::Metadata;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use notify::event::{AccessKind, AccessMode, CreateKind, EventKind, ModifyKind};
use notify::{RecursiveMode, Watcher};
use sha2::{Digest, Sha256};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::domain::ListId;
use crate::normalise::DefaultRegion;
use crate::sources::ingest::{self, FileReport, IngestError, OutboxSink};
use crate::store::{Store, StoreError};

#[derive(Clone, Debug)]
pub struct InboxSettings {
    pub root: PathBuf,
    pub region: DefaultRegion,
    pub settle: Duration,
    pub create_custom_fields: bool,
    pub rescan_interval: Duration,
    pub max_new_custom_fields: usize,
}

/// Events that arrive together are handled by one scan this long after the first.
const DEBOUNCE: Duration = Duration::from_millis(50);

/// A file that has had writes but no close-after-write event (a writer that keeps it open, a
/// hard link, a lost event) is read once it has not changed for this long (or `csv.settle`,
/// whichever is longer).
pub const OPEN_WRITER_GRACE: Duration = Duration::from_secs(60);

/// The longest file name Linux file systems take, in bytes.
const NAME_MAX: usize = 255;
const REPORT_SUFFIX: &str = ".report.json";

/// Modes of what the daemon writes into the inbox: reports hold personal data.
const REPORT_MODE: u32 = 0o640;
const FOLDER_MODE: u32 = 0o750;

/// A file seen in the inbox: where it goes and which list it feeds, or why it cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Candidate {
    path: PathBuf,
    list: ListId,
    /// Set when the file is moved to `failed/` without being read, with this error.
    refuse: Option<String>,
}

/// An entry that is left where it is, logged once.
#[derive(Debug)]
struct Notice {
    path: PathBuf,
    message: &'static str,
}

/// What a look at the folder found.
#[derive(Debug, Default)]
struct Survey {
    files: Vec<Candidate>,
    notices: Vec<Notice>,
}

/// What the watcher learnt about files since the last scan.
#[derive(Debug, Default)]
struct Hints {
    /// Files written to since their last close-after-write event: still being written.
    writing: HashSet<PathBuf>,
    /// Files closed after writing (or renamed in): complete, no need to wait for `csv.settle`.
    closed: HashSet<PathBuf>,
}

/// Size, modification time and inode: if any of them moved, the file changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileSig {
    len: u64,
    mtime: Option<SystemTime>,
    ino: u64,
}

impl FileSig {
    fn of(meta: &Metadata) -> FileSig {
        FileSig {
            len: meta.len(),
            mtime: meta.modified().ok(),
            ino: meta.ino(),
        }
    }

    fn read(path: &Path) -> std::io::Result<FileSig> {
        std::fs::symlink_metadata(path).map(|m| FileSig::of(&m))
    }
}

pub struct Inbox {
    settings: InboxSettings,
    /// Reloaded settings, picked up at each scan (the root folder needs a restart).
    live: Option<crate::live::Live<InboxSettings>>,
    store: Store,
    wake_batcher: Arc<Notify>,
    /// Each file's signature and since when it has had it (the settle rule).
    seen: HashMap<PathBuf, (FileSig, Instant)>,
    /// Entries already logged as not processed (symlinks, folders): said once.
    noticed: HashSet<PathBuf>,
    /// Files that could not be moved out, with the signature they had: not tried again until
    /// they change (or the daemon restarts).
    stuck: HashMap<PathBuf, FileSig>,
    hints: Arc<Mutex<Hints>>,
    scans: Arc<AtomicU64>,
}

/// What happened to one file.
#[derive(Debug)]
pub enum FileOutcome {
    /// Read, committed and moved to `processed/`.
    Processed(FileReport),
    /// Moved to `failed/` with this error.
    Failed(String),
    /// It changed while or after it was read: not moved, read again once stable.
    Changed,
    /// It could not be moved out of the inbox (logged once); left until it changes.
    Stuck(String),
    /// It was gone before it could be read.
    Gone,
}

impl Inbox {
    pub fn new(settings: InboxSettings, store: Store, wake_batcher: Arc<Notify>) -> Inbox {
        Inbox {
            settings,
            live: None,
            store,
            wake_batcher,
            seen: HashMap::new(),
            noticed: HashSet::new(),
            stuck: HashMap::new(),
            hints: Arc::new(Mutex::new(Hints::default())),
            scans: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Follows reloaded settings from now on.
    pub fn follow(mut self, live: crate::live::Live<InboxSettings>) -> Inbox {
        self.live = Some(live);
        self
    }

    /// How many times the folder has been looked at (also `spoki_sync_inbox_scans_total`).
    pub fn scan_counter(&self) -> Arc<AtomicU64> {
        self.scans.clone()
    }

    /// Creates the inbox folder if needed.
    pub fn prepare(root: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(root.join("lists"))
    }

    pub async fn run(mut self, cancel: CancellationToken) {
        let (tx, mut rx) = mpsc::channel::<()>(1);
        let hints = self.hints.clone();
        let handler = move |res: notify::Result<notify::Event>| {
            if take_hint(&hints, res) {
                let _ = tx.try_send(());
            }
        };
        // Symlinks are not followed: not for reading, not for watching.
        let config = notify::Config::default().with_follow_symlinks(false);
        let watcher = notify::RecommendedWatcher::new(handler, config).and_then(|mut w| {
            w.watch(&self.settings.root, RecursiveMode::Recursive)?;
            Ok(w)
        });
        let _watcher = match watcher {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch the inbox; relying on the periodic rescan");
                None
            }
        };
        loop {
            let next = match self.scan_once(&cancel).await {
                Ok(next) => next,
                Err(e) if e.cannot_write() => {
                    tracing::error!(
                        error = %e,
                        "the database cannot be written (disk full or read-only): files stay \
                         in the inbox until it can; retrying every 5 s"
                    );
                    Duration::from_secs(5)
                }
                Err(e) => {
                    tracing::error!(error = %e, "inbox scan failed; retrying");
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = rx.recv() => {
                    // Debounce: whatever else arrives meanwhile is handled by the same scan.
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep(DEBOUNCE) => {}
                    }
                    while rx.try_recv().is_ok() {}
                }
                _ = tokio::time::sleep(next) => {}
            }
        }
    }

    fn hints(&self) -> std::sync::MutexGuard<'_, Hints> {
        self.hints.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Looks at the folder once; processes every settled file. Returns when to look again.
    pub async fn scan_once(&mut self, cancel: &CancellationToken) -> Result<Duration, StoreError> {
        self.scans.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("spoki_sync_inbox_scans_total").increment(1);
        if let Some(live) = &self.live {
            let root = self.settings.root.clone();
            self.settings = InboxSettings { root, ..live.get() };
        }
        let mut next = self.settings.rescan_interval;
        if self.store.halted().is_some() {
            // The database is gone or damaged (logged once where that was found): files
            // stay where they are.
            return Ok(next);
        }
        let survey = survey(&self.settings.root);
        self.note(&survey.notices);
        let present: HashSet<&PathBuf> = survey.files.iter().map(|c| &c.path).collect();
        self.seen.retain(|p, _| present.contains(p));
        self.stuck.retain(|p, _| present.contains(p));
        {
            // By what is on disk now, not by the survey: a file created since the survey
            // keeps what its events said.
            let mut hints = self.hints();
            hints.writing.retain(|p| p.symlink_metadata().is_ok());
            hints.closed.retain(|p| p.symlink_metadata().is_ok());
        }
        let grace = OPEN_WRITER_GRACE.max(self.settings.settle);
        for c in &survey.files {
            if cancel.is_cancelled() {
                break;
            }
            let Ok(sig) = FileSig::read(&c.path) else {
                continue;
            };
            if self.stuck.get(&c.path) == Some(&sig) {
                continue;
            }
            let now = Instant::now();
            let since = match self.seen.get(&c.path) {
                Some((s, since)) if *s == sig => *since,
                _ => {
                    self.seen.insert(c.path.clone(), (sig, now));
                    now
                }
            };
            let unchanged_for = now - since;
            let (writing, closed) = {
                let hints = self.hints();
                (
                    hints.writing.contains(&c.path),
                    hints.closed.contains(&c.path),
                )
            };
            if writing {
                // Written to since its last close: its writer may still be at it.
                if unchanged_for < grace {
                    next = next.min(grace - unchanged_for);
                    continue;
                }
                tracing::info!(
                    file = %self.rel(&c.path), unchanged_secs = unchanged_for.as_secs(),
                    "no close-after-write event for this file, but it has not changed for a \
                     while: reading it"
                );
            } else if !closed && unchanged_for < self.settings.settle {
                next = next.min(self.settings.settle - unchanged_for);
                continue;
            }
            self.hints().closed.remove(&c.path);
            match self.process_candidate(c, sig).await? {
                FileOutcome::Changed => {
                    // Wait for it to be stable again, from now.
                    let sig = FileSig::read(&c.path).unwrap_or(sig);
                    self.seen.insert(c.path.clone(), (sig, Instant::now()));
                    next = next.min(self.settings.settle);
                }
                FileOutcome::Stuck(_) => {
                    self.stuck.insert(c.path.clone(), sig);
                }
                FileOutcome::Processed(_) | FileOutcome::Failed(_) | FileOutcome::Gone => {
                    self.seen.remove(&c.path);
                }
            }
            self.wake_batcher.notify_one();
        }
        Ok(next.max(Duration::from_millis(10)))
    }

    /// Logs each entry that is left in place once, for as long as it stays.
    fn note(&mut self, notices: &[Notice]) {
        let current: HashSet<&PathBuf> = notices.iter().map(|n| &n.path).collect();
        self.noticed.retain(|p| current.contains(p));
        for n in notices {
            if self.noticed.insert(n.path.clone()) {
                tracing::warn!(path = %self.rel(&n.path), "{}", n.message);
            }
        }
    }

    /// The path as shown in logs and reports: relative to the inbox.
    fn rel(&self, path: &Path) -> String {
        path.strip_prefix(&self.settings.root)
            .unwrap_or(path)
            .to_string_lossy()
            .to_string()
    }

    /// Reads one file into the outbox and moves it out of the inbox.
    pub async fn process(&self, path: &Path, list: ListId) -> Result<FileOutcome, StoreError> {
        let c = Candidate {
            path: path.to_path_buf(),
            list,
            refuse: None,
        };
        match FileSig::read(path) {
            Ok(sig) => self.process_candidate(&c, sig).await,
            Err(_) => Ok(FileOutcome::Gone),
        }
    }

    async fn process_candidate(
        &self,
        c: &Candidate,
        before: FileSig,
    ) -> Result<FileOutcome, StoreError> {
        let path = &c.path;
        let name = file_name(path);
        let rel = self.rel(path);
        if let Some(reason) = &c.refuse {
            return self.fail_unread(c, before, reason).await;
        }
        let sha = match sha256_file(path) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(FileOutcome::Gone),
            Err(e) => {
                return self
                    .fail_unread(c, before, &format!("cannot read the file: {e}"))
                    .await;
            }
        };
        // A previous run committed this content but stopped before moving it.
        if let Some((outcome, report)) = self.store.unmoved_file(&rel, &sha).await? {
            tracing::info!(file = %name, "finishing the move of a file committed before a restart");
            let moved = self
                .finish_move(c, before, &outcome, &report, &rel, &sha)
                .await?;
            return Ok(match moved {
                Some(other) => other,
                None if outcome == "processed" => {
                    FileOutcome::Processed(serde_json::from_str(&report).unwrap_or_default())
                }
                None => FileOutcome::Failed(report),
            });
        }

        let options = ingest::IngestOptions {
            region: self.settings.region,
            list: c.list,
            keep_custom_fields: self.settings.create_custom_fields,
            max_new_custom_fields: self.settings.max_new_custom_fields,
        };
        // Checked before each chunk is committed: the same size, time and inode as before.
        let still = || FileSig::read(path).ok() == Some(before);
        let mut sink = OutboxSink::resume(&self.store, &rel, &sha, &options, &still).await?;
        let result = ingest::ingest_file(path, &name, options, &mut sink).await;
        // Did we read all of it? The same size, time, inode and content as before the read.
        let unchanged = !matches!(result, Err(IngestError::Changed))
            && FileSig::read(path).ok() == Some(before)
            && sha256_file(path).ok().as_ref() == Some(&sha);
        match result {
            Err(IngestError::Store(e)) => Err(e),
            Ok(_) | Err(IngestError::File(_)) | Err(IngestError::Changed) if !unchanged => {
                self.forget_progress(&rel).await?;
                tracing::info!(
                    file = %rel,
                    "file changed while it was read: reading it again once it is stable (what \
                     was already queued from it is judged unchanged then)"
                );
                Ok(FileOutcome::Changed)
            }
            Ok(report) => self.commit_processed(c, before, report, &rel, &sha).await,
            Err(IngestError::Changed) => Ok(FileOutcome::Changed),
            Err(IngestError::File(e)) => self.commit_failed(c, before, &e.to_string(), &sha).await,
        }
    }

    /// Drops the checkpoint of a file that changed: its new content is read from the start.
    async fn forget_progress(&self, rel: &str) -> Result<(), StoreError> {
        let mut tx = self.store.begin().await?;
        Store::clear_file_progress(&mut tx, rel).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every row of the file is queued: its rejects, its report and the end of its checkpoint
    /// commit together, then it moves to `processed/`.
    async fn commit_processed(
        &self,
        c: &Candidate,
        before: FileSig,
        report: FileReport,
        rel: &str,
        sha: &str,
    ) -> Result<FileOutcome, StoreError> {
        let name = file_name(&c.path);
        let mut tx = self.store.begin().await?;
        let rejects: Vec<(String, &str, &str)> = report
            .rejected
            .iter()
            .map(|r| {
                (
                    format!("{rel}:{}", r.line),
                    r.phone.as_str(),
                    r.reason.as_str(),
                )
            })
            .collect();
        Store::insert_rejects(&mut tx, "csv", &rejects).await?;
        let json = serde_json::to_string_pretty(&report).unwrap_or_else(|_| "{}".to_string());
        Store::record_file(&mut tx, rel, sha, "processed", &json).await?;
        Store::clear_file_progress(&mut tx, rel).await?;
        tx.commit().await?;
        tracing::info!(
            file = %name, list = c.list.0, rows = report.rows, accepted = report.accepted,
            unchanged = report.unchanged, duplicates = report.duplicates,
            rejected = report.rejected.len(), "file committed to the outbox"
        );
        match self
            .finish_move(c, before, "processed", &json, rel, sha)
            .await?
        {
            None => Ok(FileOutcome::Processed(report)),
            Some(other) => Ok(other),
        }
    }

    /// The file cannot be taken (not CSV, refused whole): it moves to `failed/`. Nothing of it
    /// was queued: every such error comes before the first chunk.
    async fn commit_failed(
        &self,
        c: &Candidate,
        before: FileSig,
        error: &str,
        sha: &str,
    ) -> Result<FileOutcome, StoreError> {
        let name = file_name(&c.path);
        let rel = self.rel(&c.path);
        let json = failed_report(&name, error);
        let mut tx = self.store.begin().await?;
        Store::record_file(&mut tx, &rel, sha, "failed", &json).await?;
        Store::clear_file_progress(&mut tx, &rel).await?;
        tx.commit().await?;
        tracing::warn!(file = %rel, error = %error, "file refused; moving it to failed/");
        match self
            .finish_move(c, before, "failed", &json, &rel, sha)
            .await?
        {
            None => Ok(FileOutcome::Failed(error.to_string())),
            Some(other) => Ok(other),
        }
    }

    /// Moves a file that is not read at all (not a regular file, unreadable, in a folder that is
    /// not a list) to `failed/` with a report naming the problem.
    async fn fail_unread(
        &self,
        c: &Candidate,
        before: FileSig,
        error: &str,
    ) -> Result<FileOutcome, StoreError> {
        let name = file_name(&c.path);
        let rel = self.rel(&c.path);
        // No content was read: the checkpoint is keyed by what the file looked like.
        let key = format!(
            "unread:{}:{}:{}",
            before.len,
            before.ino,
            before
                .mtime
                .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos())
        );
        let json = failed_report(&name, error);
        let mut tx = self.store.begin().await?;
        Store::record_file(&mut tx, &rel, &key, "failed", &json).await?;
        tx.commit().await?;
        tracing::warn!(file = %rel, error = %error, "file cannot be processed; moving it to failed/");
        match self
            .finish_move(c, before, "failed", &json, &rel, &key)
            .await?
        {
            None => Ok(FileOutcome::Failed(error.to_string())),
            Some(other) => Ok(other),
        }
    }

    /// Moves a committed file out, unless it changed since it was read. Returns `None` once
    /// moved (the caller knows the outcome), `Changed` or `Stuck` otherwise.
    async fn finish_move(
        &self,
        c: &Candidate,
        before: FileSig,
        outcome: &str,
        report: &str,
        rel: &str,
        key: &str,
    ) -> Result<Option<FileOutcome>, StoreError> {
        if FileSig::read(&c.path).ok() != Some(before) {
            tracing::info!(
                file = %rel,
                "file changed after it was read: not moved; reading it again once it is stable"
            );
            return Ok(Some(FileOutcome::Changed));
        }
        match move_out(&c.path, outcome, report, before) {
            Ok(true) => {
                self.store.mark_file_moved(rel, key).await?;
                Ok(None)
            }
            Ok(false) => {
                tracing::info!(
                    file = %rel,
                    "file changed while it was moved: put back; reading it again once it is \
                     stable"
                );
                Ok(Some(FileOutcome::Changed))
            }
            Err(e) => {
                let error = format!("cannot move the file to {outcome}/: {e}");
                tracing::error!(
                    file = %rel, error = %error,
                    "file left in the inbox; it is tried again when it changes or the daemon \
                     restarts"
                );
                Ok(Some(FileOutcome::Stuck(error)))
            }
        }
    }
}

/// Records what one watcher event says; true when it should wake a scan.
fn take_hint(hints: &Mutex<Hints>, res: notify::Result<notify::Event>) -> bool {
    let Ok(event) = res else {
        // The watcher lost track (e.g. its queue overflowed): look again.
        return true;
    };
    let mut hints = hints.lock().unwrap_or_else(|e| e.into_inner());
    if event.need_rescan() {
        hints.writing.clear();
        return true;
    }
    // What happens in processed/ and failed/ is the daemon's own doing.
    let paths: Vec<&PathBuf> = event
        .paths
        .iter()
        .filter(|p| !in_outcome_folder(p))
        .collect();
    if paths.is_empty() {
        return false;
    }
    match event.kind {
        EventKind::Create(kind) => {
            if kind != CreateKind::Folder {
                for p in paths {
                    hints.writing.insert(p.clone());
                }
            }
            true
        }
        EventKind::Modify(ModifyKind::Data(_)) | EventKind::Modify(ModifyKind::Any) => {
            for p in paths {
                hints.closed.remove(p);
                hints.writing.insert(p.clone());
            }
            false
        }
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => {
            for p in paths {
                hints.writing.remove(p);
                hints.closed.insert(p.clone());
            }
            true
        }
        EventKind::Modify(ModifyKind::Name(_)) => {
            // A file renamed in is complete; one renamed away is gone.
            for p in paths {
                hints.writing.remove(p);
                hints.closed.insert(p.clone());
            }
            true
        }
        EventKind::Remove(_) => {
            for p in paths {
                hints.writing.remove(p);
                hints.closed.remove(p);
            }
            false
        }
        // Opens, reads, closes after reading (our own scans cause them), attribute changes.
        _ => false,
    }
}

fn in_outcome_folder(path: &Path) -> bool {
    path.parent()
        .and_then(Path::file_name)
        .is_some_and(|n| n == "processed" || n == "failed")
}

fn failed_report(name: &str, error: &str) -> String {
    serde_json::to_string_pretty(&serde_json::json!({ "file": name, "error": error }))
        .unwrap_or_else(|_| "{}".to_string())
}

/// Creates `dir` (and its parents) with `FOLDER_MODE` where it does not exist yet.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(FOLDER_MODE)
        .create(dir)
}

/// Writes the report, then moves the file beside it (a crash between the two is finished by
/// the next run, which finds the committed file still in place). Returns false when the file
/// changed while it was moved: it is put back where it was and the report removed.
fn move_out(path: &Path, outcome: &str, report: &str, before: FileSig) -> std::io::Result<bool> {
    let dir = path.parent().unwrap_or(Path::new(".")).join(outcome);
    create_private_dir(&dir)?;
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    let name = file_name(path);
    let mut n = 0;
    let (target, report_path) = loop {
        let moved = moved_name(&stamp, n, &name);
        let target = dir.join(&moved);
        let report_path = dir.join(format!("{moved}{REPORT_SUFFIX}"));
        if !target.exists() && !report_path.exists() {
            break (target, report_path);
        }
        n += 1;
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(REPORT_MODE)
        .open(&report_path)?;
    let written = file
        .write_all(report.as_bytes())
        .and_then(|()| file.sync_all());
    drop(file);
    if let Err(e) = written.and_then(|()| std::fs::rename(path, &target)) {
        let _ = std::fs::remove_file(&report_path);
        return Err(e);
    }
    // A writer that still had it open may have written between the last look and the rename.
    if FileSig::read(&target).ok() != Some(before) && !path.exists() {
        if std::fs::rename(&target, path).is_ok() {
            let _ = std::fs::remove_file(&report_path);
            return Ok(false);
        }
        tracing::warn!(
            file = %target.display(),
            "file changed while it was moved and could not be put back"
        );
    }
    // The moved file holds personal data: not for everyone (only tightened, never widened).
    if let Ok(meta) = std::fs::metadata(&target) {
        let mode = meta.permissions().mode();
        if mode & 0o007 != 0 {
            let _ =
                std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode & 0o7770));
        }
    }
    Ok(true)
}

/// `<stamp>-<name>` (or `<stamp>-<n>-<name>` when taken), shortened when it and its report's
/// name would not fit in `NAME_MAX` bytes: the start of the name, a digest of the whole name
/// (so two long names that start alike stay apart), and the extension.
fn moved_name(stamp: &str, n: u32, name: &str) -> String {
    let prefix = if n == 0 {
        format!("{stamp}-")
    } else {
        format!("{stamp}-{n}-")
    };
    let full = format!("{prefix}{name}");
    if full.len() + REPORT_SUFFIX.len() <= NAME_MAX {
        return full;
    }
    let (stem, ext) = match name.rfind('.') {
        Some(i) if i > 0 && name.len() - i <= 16 => name.split_at(i),
        _ => (name, ""),
    };
    let digest = format!("{:x}", Sha256::digest(name.as_bytes()));
    let tag = format!("~{}", &digest[..12]);
    let room = NAME_MAX.saturating_sub(REPORT_SUFFIX.len() + prefix.len() + tag.len() + ext.len());
    let mut cut = room.min(stem.len());
    while !stem.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{prefix}{}{tag}{ext}", &stem[..cut])
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default()
}

fn wanted(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    !name.starts_with('.')
        && lower.ends_with(".csv")
        && !lower.ends_with(".tmp")
        && !lower.ends_with(".part")
}

/// A list folder's name: a positive whole number written canonically (no sign, no leading
/// zeros) that fits in an i64.
fn list_id(name: &str) -> Option<i64> {
    if name.is_empty() || name.starts_with('0') || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    name.parse::<i64>().ok()
}

const SYMLINK: &str = "symlinks in the inbox are not followed; left in place";
const FOLDER: &str = "folders are not read here: files are read directly in the inbox and in \
                      lists/<LIST_ID>/; left in place";
const BAD_LIST: &str = "not a list folder: a list id is a positive whole number without sign or \
                        leading zeros; its CSV files go to its failed/";
const NOT_REGULAR: &str =
    "not a regular file (a FIFO, socket or device); only regular files are read";

/// One folder's entries: CSV files, and what is left alone. `refuse` sends every CSV file in it
/// to `failed/` with that error.
fn survey_folder(dir: &Path, list: ListId, refuse: Option<&str>, out: &mut Survey) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with('.') {
            continue;
        }
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let path = entry.path();
        if kind.is_dir() {
            if name != "processed" && name != "failed" {
                out.notices.push(Notice {
                    path,
                    message: FOLDER,
                });
            }
            continue;
        }
        if !wanted(&name) {
            continue;
        }
        if kind.is_symlink() {
            out.notices.push(Notice {
                path,
                message: SYMLINK,
            });
            continue;
        }
        let refuse = match refuse {
            Some(r) => Some(r.to_string()),
            None if !kind.is_file() => Some(NOT_REGULAR.to_string()),
            None => None,
        };
        found.push(Candidate { path, list, refuse });
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    out.files.extend(found);
}

/// `inbox/*.csv` and `inbox/lists/<ID>/*.csv`, oldest name first, and what is left alone.
fn survey(root: &Path) -> Survey {
    let mut out = Survey::default();
    survey_folder(root, ListId::NONE, None, &mut out);
    // `lists/` itself is expected, not a stray folder.
    let lists = root.join("lists");
    out.notices.retain(|n| n.path != lists);
    let Ok(entries) = std::fs::read_dir(&lists) else {
        return out;
    };
    let mut folders = Vec::new();
    let mut loose = false;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with('.') {
            continue;
        }
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let path = entry.path();
        if kind.is_symlink() {
            out.notices.push(Notice {
                path,
                message: SYMLINK,
            });
        } else if kind.is_dir() {
            if name != "processed" && name != "failed" {
                folders.push((name, path));
            }
        } else if wanted(&name) {
            loose = true;
        }
    }
    if loose {
        survey_folder(
            &lists,
            ListId::NONE,
            Some("a file in lists/ must be inside a list folder, lists/<LIST_ID>/"),
            &mut out,
        );
        // Its folders are looked at below.
        out.notices
            .retain(|n| n.message != FOLDER || n.path.parent() != Some(&lists));
    }
    folders.sort();
    for (name, path) in folders {
        match list_id(&name) {
            Some(id) => survey_folder(&path, ListId(id), None, &mut out),
            None => {
                let refuse = format!(
                    "lists/{name} is not a list folder: a list id is a positive whole number \
                     without sign or leading zeros, at most {}",
                    i64::MAX
                );
                survey_folder(&path, ListId::NONE, Some(&refuse), &mut out);
                out.notices.push(Notice {
                    path,
                    message: BAD_LIST,
                });
            }
        }
    }
    out
}

fn sha256_file(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("{:x}", hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_csv_files_count() {
        assert!(wanted("a.csv"));
        assert!(wanted("A.CSV"));
        assert!(!wanted(".hidden.csv"));
        assert!(!wanted("a.csv.part"));
        assert!(!wanted("a.csv.tmp"));
        assert!(!wanted("a.txt"));
    }

    #[test]
    fn only_canonical_positive_ids_are_lists() {
        assert_eq!(list_id("5"), Some(5));
        assert_eq!(list_id("9223372036854775807"), Some(i64::MAX));
        for bad in [
            "",
            "0",
            "-1",
            "+5",
            "007",
            "abc",
            "5a",
            "99999999999999999999",
            " 5",
        ] {
            assert_eq!(list_id(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn long_names_are_shortened_keeping_the_extension_and_apart() {
        let stamp = "20260101T000000Z";
        assert_eq!(moved_name(stamp, 0, "a.csv"), "20260101T000000Z-a.csv");
        let long_a = format!("{}a.csv", "x".repeat(240));
        let long_b = format!("{}b.csv", "x".repeat(240));
        let a = moved_name(stamp, 0, &long_a);
        let b = moved_name(stamp, 3, &long_b);
        assert!(a.len() + REPORT_SUFFIX.len() <= NAME_MAX, "{}", a.len());
        assert!(b.len() + REPORT_SUFFIX.len() <= NAME_MAX, "{}", b.len());
        assert!(a.ends_with(".csv") && a.starts_with("20260101T000000Z-xxx"));
        assert_ne!(a, b);
        // Multi-byte characters are not cut in half.
        let accents = format!("{}.csv", "è".repeat(200));
        assert!(moved_name(stamp, 0, &accents).ends_with(".csv"));
    }
}
