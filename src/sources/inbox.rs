//! The watched CSV inbox (CONTRACT §3). notify events and a periodic rescan are both only hints
//! to look at the folder again. A file is read once it has not changed for `csv.settle`; its
//! rows are committed to the outbox in one transaction, and only then is it moved to
//! `processed/` with its report (or to `failed/` when it is not CSV at all).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use notify::{RecursiveMode, Watcher};
use sha2::{Digest, Sha256};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::domain::ListId;
use crate::ingest::{self, FileReport, IngestError, OutboxSink};
use crate::normalise::DefaultRegion;
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

/// A file seen in the inbox: where it goes and which list it feeds.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Candidate {
    path: PathBuf,
    list: ListId,
}

pub struct Inbox {
    settings: InboxSettings,
    /// Reloaded settings, picked up at each scan (the root folder needs a restart).
    live: Option<crate::live::Live<InboxSettings>>,
    store: Store,
    wake_batcher: Arc<Notify>,
    seen: HashMap<PathBuf, (u64, Option<SystemTime>, Instant)>,
}

/// What happened to one file.
#[derive(Debug)]
pub enum FileOutcome {
    Processed(FileReport),
    Failed(String),
}

impl Inbox {
    pub fn new(settings: InboxSettings, store: Store, wake_batcher: Arc<Notify>) -> Inbox {
        Inbox {
            settings,
            live: None,
            store,
            wake_batcher,
            seen: HashMap::new(),
        }
    }

    /// Follows reloaded settings from now on.
    pub fn follow(mut self, live: crate::live::Live<InboxSettings>) -> Inbox {
        self.live = Some(live);
        self
    }

    /// Creates the inbox folder if needed.
    pub fn prepare(root: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(root.join("lists"))
    }

    pub async fn run(mut self, cancel: CancellationToken) {
        let (tx, mut rx) = mpsc::channel::<()>(1);
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if res.is_ok() {
                let _ = tx.try_send(());
            }
        })
        .and_then(|mut w| {
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
                _ = rx.recv() => {}
                _ = tokio::time::sleep(next) => {}
            }
        }
    }

    /// Looks at the folder once; processes every settled file. Returns when to look again.
    pub async fn scan_once(&mut self, cancel: &CancellationToken) -> Result<Duration, StoreError> {
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
        let candidates = list_candidates(&self.settings.root);
        self.seen
            .retain(|p, _| candidates.iter().any(|c| &c.path == p));
        for c in candidates {
            if cancel.is_cancelled() {
                break;
            }
            let Ok(meta) = std::fs::metadata(&c.path) else {
                continue;
            };
            let sig = (meta.len(), meta.modified().ok());
            let now = Instant::now();
            let since = match self.seen.get(&c.path) {
                Some((len, mtime, since)) if (*len, *mtime) == sig => *since,
                _ => {
                    self.seen.insert(c.path.clone(), (sig.0, sig.1, now));
                    now
                }
            };
            let settled_for = now - since;
            if settled_for < self.settings.settle {
                next = next.min(self.settings.settle - settled_for);
                continue;
            }
            self.seen.remove(&c.path);
            self.process(&c.path, c.list).await?;
            self.wake_batcher.notify_one();
        }
        Ok(next.max(Duration::from_millis(10)))
    }

    /// Reads one file into the outbox and moves it out of the inbox.
    pub async fn process(&self, path: &Path, list: ListId) -> Result<FileOutcome, StoreError> {
        let name = file_name(path);
        let rel = path
            .strip_prefix(&self.settings.root)
            .unwrap_or(path)
            .to_string_lossy()
            .to_string();
        let sha = match sha256_file(path) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(file = %name, error = %e, "cannot read file yet");
                return Ok(FileOutcome::Failed(e.to_string()));
            }
        };
        // A previous run committed this file but stopped before moving it.
        if let Some((outcome, report)) = self.store.unmoved_file(&rel, &sha).await? {
            tracing::info!(file = %name, "finishing the move of a file committed before a restart");
            self.move_out(path, &outcome, &report)?;
            self.store.mark_file_moved(&rel, &sha).await?;
            return Ok(if outcome == "processed" {
                FileOutcome::Processed(serde_json::from_str(&report).unwrap_or_default())
            } else {
                FileOutcome::Failed(report)
            });
        }

        let mut tx = self.store.begin().await?;
        let mut sink = OutboxSink {
            tx: &mut tx,
            file: rel.clone(),
        };
        let options = ingest::IngestOptions {
            region: self.settings.region,
            list,
            keep_custom_fields: self.settings.create_custom_fields,
            max_new_custom_fields: self.settings.max_new_custom_fields,
        };
        let result = ingest::ingest_file(path, &name, options, &mut sink).await;
        match result {
            Ok(report) => {
                for r in &report.rejected {
                    let key = format!("{rel}:{}", r.line);
                    Store::insert_reject(&mut tx, "csv", &key, &r.phone, &r.reason).await?;
                }
                let json =
                    serde_json::to_string_pretty(&report).unwrap_or_else(|_| "{}".to_string());
                Store::record_file(&mut tx, &rel, &sha, "processed", &json).await?;
                tx.commit().await?;
                tracing::info!(
                    file = %name, list = list.0, rows = report.rows, accepted = report.accepted,
                    unchanged = report.unchanged, duplicates = report.duplicates,
                    rejected = report.rejected.len(), "file committed to the outbox"
                );
                self.move_out(path, "processed", &json)?;
                self.store.mark_file_moved(&rel, &sha).await?;
                Ok(FileOutcome::Processed(report))
            }
            Err(IngestError::Store(e)) => Err(e),
            Err(IngestError::File(e)) => {
                drop(tx);
                let error = e.to_string();
                let json = serde_json::to_string_pretty(
                    &serde_json::json!({ "file": name, "error": error }),
                )
                .unwrap_or_else(|_| "{}".to_string());
                let mut tx = self.store.begin().await?;
                Store::record_file(&mut tx, &rel, &sha, "failed", &json).await?;
                tx.commit().await?;
                tracing::warn!(file = %name, error = %error, "file refused; moved to failed/");
                self.move_out(path, "failed", &json)?;
                self.store.mark_file_moved(&rel, &sha).await?;
                Ok(FileOutcome::Failed(error))
            }
        }
    }

    /// Writes the report, then moves the file beside it (a crash between the two is finished
    /// by the next run, which finds the committed file still in place).
    fn move_out(&self, path: &Path, outcome: &str, report: &str) -> Result<(), StoreError> {
        let io = |e: std::io::Error| {
            StoreError::Corrupt(format!(
                "cannot move {} out of the inbox: {e}",
                path.display()
            ))
        };
        let dir = path.parent().unwrap_or(&self.settings.root).join(outcome);
        std::fs::create_dir_all(&dir).map_err(io)?;
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
        let name = file_name(path);
        let mut target = dir.join(format!("{stamp}-{name}"));
        let mut n = 1;
        while target.exists() {
            target = dir.join(format!("{stamp}-{n}-{name}"));
            n += 1;
        }
        let report_path = PathBuf::from(format!("{}.report.json", target.display()));
        std::fs::write(&report_path, report).map_err(io)?;
        std::fs::rename(path, &target).map_err(io)?;
        Ok(())
    }
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

fn csv_files_in(dir: &Path, list: ListId, out: &mut Vec<Candidate>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut found: Vec<Candidate> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter(|e| wanted(&e.file_name().to_string_lossy()))
        .map(|e| Candidate {
            path: e.path(),
            list,
        })
        .collect();
    found.sort_by(|a, b| a.path.cmp(&b.path));
    out.extend(found);
}

/// `inbox/*.csv` and `inbox/lists/<ID>/*.csv`, oldest name first.
fn list_candidates(root: &Path) -> Vec<Candidate> {
    let mut out = Vec::new();
    csv_files_in(root, ListId::NONE, &mut out);
    if let Ok(lists) = std::fs::read_dir(root.join("lists")) {
        for entry in lists.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if let Ok(id) = name.parse::<i64>()
                && id > 0
                && entry.file_type().is_ok_and(|t| t.is_dir())
            {
                csv_files_in(&entry.path(), ListId(id), &mut out);
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
}
