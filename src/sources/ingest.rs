//! One CSV file → merged contacts → diff against what Spoki holds (or will hold) → a sink.
//!
//! Two passes keep memory bounded whatever the file's size: pass 1 parses every phone (the
//! costly step) and finds the repeated ones; pass 2 re-reads the cells, emits contacts whose
//! phone occurs once straight away, and merges repeated phones field by field (last non-empty
//! value wins) before emitting them. In both passes one thread reads records in batches and a
//! few workers turn them into rows (`pipeline`); the results are taken in file order, so the
//! report and the order of emitted contacts do not depend on the threads. The reader feeds the
//! async side through a bounded channel, in chunks the sink commits one by one.

use std::path::{Path, PathBuf};
use std::sync::mpsc as sync_mpsc;

use rustc_hash::{FxHashMap, FxHashSet};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::domain::{Contact, ContactFields, ListId, Phone};
use crate::normalise::DefaultRegion;
use crate::sources::csv_file::{CsvFile, FileError};
use crate::store::{EnqueueCounts, FileProgress, Incoming, Snapshot, Store, StoreError};

/// Contacts a chunk holds: what the daemon commits in one short transaction.
const CHUNK: usize = 4_096;
/// Records a worker takes at a time.
const BATCH: usize = 1_024;

/// The report written beside a processed file (CONTRACT §3).
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct FileReport {
    pub file: String,
    pub rows: u64,
    pub accepted: u64,
    pub unchanged: u64,
    pub duplicates: u64,
    pub rejected: Vec<RejectedRow>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignored_columns: Vec<String>,
    /// Distinct contacts new to Spoki / already there with changed fields.
    #[serde(skip)]
    pub creates: u64,
    #[serde(skip)]
    pub updates: u64,
    /// The file's custom-field columns that will be sent, as (code, header as written).
    #[serde(skip)]
    pub custom_columns: Vec<(String, String)>,
}

#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct RejectedRow {
    pub line: u64,
    pub phone: String,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The file changed while it was read (checked before each chunk is committed).
    #[error("the file changed while it was read")]
    Changed,
}

/// Where the diffed contacts go: the outbox (daemon) or nowhere (plan).
pub trait Sink {
    /// How many of the file's custom-field codes are new to the daemon.
    fn new_codes(&mut self, codes: &[String]) -> impl Future<Output = Result<usize, StoreError>>;
    /// The file's custom-field columns (code, header as written), to create in Spoki.
    fn want_columns(
        &mut self,
        columns: &[(String, String)],
    ) -> impl Future<Output = Result<(), StoreError>>;
    /// Judges a chunk of distinct contacts and queues what must be written.
    fn enqueue(
        &mut self,
        list: ListId,
        contacts: Vec<Incoming>,
    ) -> impl Future<Output = Result<EnqueueCounts, IngestError>>;
    /// Verdicts of contacts judged by an earlier, interrupted read of the same file.
    fn carried(&self) -> EnqueueCounts {
        EnqueueCounts::default()
    }
    /// The verdicts for `distinct` contacts when they do not depend on the fields (nothing is
    /// known of any contact): the file's second pass is then skipped.
    fn judge_count(&mut self, _distinct: u64) -> Option<EnqueueCounts> {
        None
    }
}

/// The daemon's sink: each chunk goes into the outbox in a transaction of its own, with the
/// file's checkpoint, so other writers get the lock between chunks and a restart resumes after
/// the last committed chunk.
pub struct OutboxSink<'a> {
    store: &'a Store,
    /// The file as reports and keys name it.
    file: String,
    /// Whether the file is still as it was when its hash was taken.
    unchanged: &'a (dyn Fn() -> bool + Sync),
    progress: FileProgress,
    /// The settled contacts: those the file leaves as they are need no query.
    snapshot: LazySnapshot,
    /// Verdicts carried over from the checkpoint found at the start.
    carried: EnqueueCounts,
    /// Contacts handed to `enqueue` so far by this read.
    seen: u64,
}

impl<'a> OutboxSink<'a> {
    /// A sink for `file` (content hash `sha256`), resuming from its checkpoint when one was
    /// left for the same content and settings.
    pub async fn resume(
        store: &'a Store,
        file: &str,
        sha256: &str,
        options: &IngestOptions,
        unchanged: &'a (dyn Fn() -> bool + Sync),
    ) -> Result<OutboxSink<'a>, StoreError> {
        let settings = format!("{:?}/{}", options.region, options.keep_custom_fields);
        let progress = match store.file_progress(file).await? {
            Some(p) if p.sha256 == sha256 && p.settings == settings => {
                tracing::info!(
                    file = %file, contacts = p.contacts,
                    "resuming a file from its checkpoint"
                );
                p
            }
            _ => FileProgress {
                sha256: sha256.to_string(),
                settings,
                ..FileProgress::default()
            },
        };
        let carried = EnqueueCounts {
            creates: progress.creates,
            updates: progress.updates,
            unchanged: progress.unchanged,
        };
        let snapshot = LazySnapshot::default();
        Ok(OutboxSink {
            store,
            file: file.to_string(),
            unchanged,
            progress,
            snapshot,
            carried,
            seen: 0,
        })
    }
}

impl Sink for OutboxSink<'_> {
    async fn new_codes(&mut self, codes: &[String]) -> Result<usize, StoreError> {
        let mut conn = self.store.pool().acquire().await?;
        Store::new_custom_field_codes(&mut conn, codes).await
    }

    async fn want_columns(&mut self, columns: &[(String, String)]) -> Result<(), StoreError> {
        let mut tx = self.store.begin().await?;
        Store::want_custom_fields(&mut tx, columns).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn enqueue(
        &mut self,
        list: ListId,
        contacts: Vec<Incoming>,
    ) -> Result<EnqueueCounts, IngestError> {
        let start = self.seen;
        self.seen += contacts.len() as u64;
        // Contacts an earlier read already committed are not judged again.
        let done = usize::try_from(self.progress.contacts.saturating_sub(start))
            .unwrap_or(usize::MAX)
            .min(contacts.len());
        if done == contacts.len() {
            return Ok(EnqueueCounts::default());
        }
        if !(self.unchanged)() {
            return Err(IngestError::Changed);
        }
        let snapshot = self.snapshot.get(self.store, list).await?;
        let (same, rest) = split_unchanged(snapshot, contacts.into_iter().skip(done));
        if rest.is_empty() {
            // Nothing to write, so no transaction: a resume judges these contacts again.
            return Ok(same);
        }
        let contacts = rest
            .into_iter()
            .map(|mut c| {
                c.key = format!("{}:{}", self.file, c.key);
                c
            })
            .collect();
        let mut tx = self.store.begin().await?;
        let mut counts = Store::enqueue_changes(&mut tx, "csv", list, contacts).await?;
        counts.add(same);
        let mut progress = self.progress.clone();
        progress.contacts = self.seen;
        progress.creates += counts.creates;
        progress.updates += counts.updates;
        progress.unchanged += counts.unchanged;
        Store::save_file_progress(&mut tx, &self.file, &progress).await?;
        tx.commit().await.map_err(StoreError::from)?;
        self.progress = progress;
        self.store.yield_to_writers().await;
        Ok(counts)
    }

    fn carried(&self) -> EnqueueCounts {
        self.carried
    }
}

/// The snapshot of the settled contacts, read at a file's second chunk: a file of one chunk
/// costs a few queries, which is cheaper than reading the whole state.
#[derive(Default)]
struct LazySnapshot {
    chunks: u32,
    snapshot: Option<Snapshot>,
}

impl LazySnapshot {
    async fn get(&mut self, store: &Store, list: ListId) -> Result<&Snapshot, StoreError> {
        self.chunks += 1;
        if self.chunks >= 2 && self.snapshot.is_none() {
            self.snapshot = Some(store.snapshot(list).await?);
        }
        Ok(self.snapshot.as_ref().unwrap_or(&NO_SNAPSHOT))
    }
}

static NO_SNAPSHOT: Snapshot = Snapshot::EMPTY;

/// Contacts the snapshot shows unchanged (counted), and the others, to be judged exactly.
fn split_unchanged(
    snapshot: &Snapshot,
    contacts: impl Iterator<Item = Incoming>,
) -> (EnqueueCounts, Vec<Incoming>) {
    let mut same = EnqueueCounts::default();
    let rest = contacts
        .filter(|c| {
            let unchanged = snapshot.unchanged(c.phone, &c.fields);
            same.unchanged += u64::from(unchanged);
            !unchanged
        })
        .collect();
    (same, rest)
}

/// `plan`'s sink: reads the state if there is one, writes nothing.
pub struct PlanSink {
    store: Option<Store>,
    snapshot: LazySnapshot,
    /// Contacts that would get a write.
    pub writes: u64,
}

impl PlanSink {
    pub fn new(store: Option<Store>) -> PlanSink {
        PlanSink {
            store,
            snapshot: LazySnapshot::default(),
            writes: 0,
        }
    }
}

impl Sink for PlanSink {
    async fn new_codes(&mut self, codes: &[String]) -> Result<usize, StoreError> {
        match &self.store {
            Some(store) => {
                let mut conn = store.pool().acquire().await?;
                Store::new_custom_field_codes(&mut conn, codes).await
            }
            None => Ok(codes.len()),
        }
    }

    async fn want_columns(&mut self, _columns: &[(String, String)]) -> Result<(), StoreError> {
        Ok(())
    }

    fn judge_count(&mut self, distinct: u64) -> Option<EnqueueCounts> {
        // No state: every distinct contact is new, whatever its fields.
        self.store.is_none().then(|| {
            self.writes += distinct;
            EnqueueCounts {
                creates: distinct,
                ..EnqueueCounts::default()
            }
        })
    }

    async fn enqueue(
        &mut self,
        list: ListId,
        contacts: Vec<Incoming>,
    ) -> Result<EnqueueCounts, IngestError> {
        let judged = match &self.store {
            Some(store) => {
                let snapshot = self.snapshot.get(store, list).await?;
                let (same, rest) = split_unchanged(snapshot, contacts.into_iter());
                let mut judged = if rest.is_empty() {
                    EnqueueCounts::default()
                } else {
                    let mut conn = store.pool().acquire().await.map_err(StoreError::from)?;
                    Store::judge_changes(&mut conn, list, &rest).await?
                };
                judged.add(same);
                judged
            }
            None => EnqueueCounts {
                creates: contacts.len() as u64,
                ..EnqueueCounts::default()
            },
        };
        self.writes += judged.queued();
        Ok(judged)
    }
}

enum Msg {
    /// The file's custom-field columns (code, header as written), sent before any chunk.
    Columns(Vec<(String, String)>),
    Chunk(Vec<(Contact, u64)>),
    Done(Box<FileReport>),
    Failed(FileError),
}

/// How a file is read.
#[derive(Clone, Copy, Debug)]
pub struct IngestOptions {
    pub region: DefaultRegion,
    pub list: ListId,
    /// Custom-field columns are sent (and created in Spoki when missing).
    pub keep_custom_fields: bool,
    /// A file bringing more custom-field codes new to the daemon than this is refused whole.
    pub max_new_custom_fields: usize,
}

impl IngestOptions {
    pub fn from_settings(settings: &crate::config::Settings, list: ListId) -> IngestOptions {
        IngestOptions {
            region: settings.csv.default_region,
            list,
            keep_custom_fields: settings.csv.create_custom_fields,
            max_new_custom_fields: settings.csv.max_new_custom_fields,
        }
    }
}

/// Reads `path` and feeds every accepted contact through the diff into `sink`.
pub async fn ingest_file<S: Sink>(
    path: &Path,
    display_name: &str,
    options: IngestOptions,
    sink: &mut S,
) -> Result<FileReport, IngestError> {
    let IngestOptions {
        region,
        list,
        keep_custom_fields,
        max_new_custom_fields,
    } = options;
    // Probed with no contacts: whether this sink judges by the count alone.
    let by_count = sink.judge_count(0).is_some();
    let (tx, mut rx) = mpsc::channel::<Msg>(4);
    let owned: PathBuf = path.to_path_buf();
    let name = display_name.to_string();
    let reader = tokio::task::spawn_blocking(move || {
        let msg = match read_file(&owned, &name, region, keep_custom_fields, by_count, &tx) {
            Ok(report) => Msg::Done(Box::new(report)),
            Err(e) => Msg::Failed(e),
        };
        let _ = tx.blocking_send(msg);
    });

    let mut verdicts = sink.carried();
    let mut outcome = None;
    while let Some(msg) = rx.recv().await {
        match msg {
            Msg::Columns(columns) => {
                let codes: Vec<String> = columns.iter().map(|(c, _)| c.clone()).collect();
                let new = sink.new_codes(&codes).await?;
                if new > max_new_custom_fields {
                    // Dropping the receiver stops the reader at its next chunk.
                    drop(rx);
                    let _ = reader.await;
                    return Err(FileError::Refused(format!(
                        "the file brings {new} custom-field columns new to Spoki, more than \
                         csv.max_new_custom_fields ({max_new_custom_fields}); nothing was queued"
                    ))
                    .into());
                }
                sink.want_columns(&columns).await?;
            }
            Msg::Chunk(chunk) => {
                let contacts = chunk
                    .into_iter()
                    .map(|(c, line)| Incoming {
                        phone: c.phone,
                        fields: c.fields,
                        // The sink knows the file's path; it makes the key `path:line`.
                        key: line.to_string(),
                    })
                    .collect();
                verdicts.add(sink.enqueue(list, contacts).await?);
            }
            Msg::Done(report) => outcome = Some(Ok(*report)),
            Msg::Failed(e) => outcome = Some(Err(e)),
        }
    }
    let _ = reader.await;
    let mut report = match outcome {
        Some(Ok(r)) => r,
        Some(Err(e)) => return Err(e.into()),
        None => {
            return Err(FileError::Csv("the reader stopped without a result".into()).into());
        }
    };
    if by_count && let Some(judged) = sink.judge_count(report.accepted) {
        verdicts.add(judged);
    }
    report.creates = verdicts.creates;
    report.updates = verdicts.updates;
    report.unchanged = verdicts.unchanged;
    Ok(report)
}

/// Both passes, on a blocking thread. Sends chunks; returns the counts for the report.
fn read_file(
    path: &Path,
    name: &str,
    region: DefaultRegion,
    keep_custom_fields: bool,
    by_count: bool,
    tx: &mpsc::Sender<Msg>,
) -> Result<FileReport, FileError> {
    let mut report = FileReport {
        file: name.to_string(),
        ..Default::default()
    };
    let csv = CsvFile::open(path)?;
    let format = csv.format();
    if keep_custom_fields {
        report.custom_columns = csv
            .custom_codes
            .iter()
            .cloned()
            .zip(csv.custom_headers.iter().cloned())
            .collect();
    } else {
        report.ignored_columns = csv.custom_headers.clone();
    }
    if !report.custom_columns.is_empty() {
        tx.blocking_send(Msg::Columns(report.custom_columns.clone()))
            .map_err(|_| cancelled())?;
    }
    let phones = pass_one(csv, region, &mut report)?;
    if by_count {
        return Ok(report);
    }

    let mut csv = CsvFile::open_as(path, format)?;
    if !keep_custom_fields {
        csv.drop_custom_codes();
    }
    pass_two(csv, phones, tx)?;
    Ok(report)
}

/// What pass 1 learnt: each non-blank row's phone (`None`: rejected), in file order, and the
/// phones that occur more than once.
struct Phones {
    rows: Vec<Option<Phone>>,
    repeated: FxHashSet<Phone>,
}

/// Pass 1: every row judged (phone, email, sizes); counts rows, rejects and repeats.
fn pass_one(
    mut csv: CsvFile,
    region: DefaultRegion,
    report: &mut FileReport,
) -> Result<Phones, FileError> {
    let layout = csv.layout();
    let mut rows: Vec<Option<Phone>> = Vec::new();
    let mut valid: Vec<Phone> = Vec::new();
    pipeline(
        |batch: &mut Batch<()>| batch.fill(&mut csv, |_| Some(())),
        |batch: &Batch<()>| {
            batch
                .records()
                .map(|(record, ())| {
                    layout.validate(record, region).map_err(|rejected| {
                        let (row, issue) = *rejected;
                        RejectedRow {
                            line: row.line,
                            phone: row.phone,
                            reason: issue.to_string(),
                        }
                    })
                })
                .collect::<Vec<_>>()
        },
        |judged| {
            for r in judged {
                report.rows += 1;
                match r {
                    Ok(phone) => {
                        rows.push(Some(phone));
                        valid.push(phone);
                    }
                    Err(rejected) => {
                        rows.push(None);
                        report.rejected.push(rejected);
                    }
                }
            }
            Ok(())
        },
    )?;
    // Sorting the valid phones finds the repeats without a map of every phone.
    valid.sort_unstable();
    let mut repeated = FxHashSet::default();
    let mut distinct = 0u64;
    for (i, phone) in valid.iter().enumerate() {
        if i > 0 && valid[i - 1] == *phone {
            report.duplicates += 1;
            repeated.insert(*phone);
        } else {
            distinct += 1;
        }
    }
    report.accepted = distinct;
    Ok(Phones { rows, repeated })
}

/// Pass 2: the fields of every accepted row; contacts whose phone occurs once are emitted in
/// file order, repeated ones merged and emitted last, in the order they first occur.
fn pass_two(mut csv: CsvFile, phones: Phones, tx: &mpsc::Sender<Msg>) -> Result<(), FileError> {
    let layout = csv.layout();
    let Phones { rows, repeated } = phones;
    let mut row_phones = rows.into_iter();
    let mut merged: FxHashMap<Phone, (u64, ContactFields)> = FxHashMap::default();
    let mut merged_order: Vec<Phone> = Vec::new();
    let mut chunk: Vec<(Contact, u64)> = Vec::with_capacity(CHUNK);
    pipeline(
        |batch: &mut Batch<Phone>| batch.fill(&mut csv, |_| row_phones.next().flatten()),
        |batch: &Batch<Phone>| {
            batch
                .records()
                .map(|(record, phone)| {
                    let row = layout.row(record);
                    let line = row.line;
                    (
                        Contact {
                            phone: *phone,
                            fields: row.into_fields(),
                        },
                        line,
                    )
                })
                .collect::<Vec<_>>()
        },
        |contacts| {
            for (contact, line) in contacts {
                if repeated.contains(&contact.phone) {
                    match merged.get_mut(&contact.phone) {
                        Some((_, fields)) => fields.overlay(&contact.fields),
                        None => {
                            merged_order.push(contact.phone);
                            merged.insert(contact.phone, (line, contact.fields));
                        }
                    }
                    continue;
                }
                push(tx, &mut chunk, contact, line)?;
            }
            Ok(())
        },
    )?;
    for phone in merged_order {
        if let Some((line, fields)) = merged.remove(&phone) {
            push(tx, &mut chunk, Contact { phone, fields }, line)?;
        }
    }
    if !chunk.is_empty() {
        tx.blocking_send(Msg::Chunk(chunk))
            .map_err(|_| cancelled())?;
    }
    Ok(())
}

fn push(
    tx: &mpsc::Sender<Msg>,
    chunk: &mut Vec<(Contact, u64)>,
    contact: Contact,
    line: u64,
) -> Result<(), FileError> {
    chunk.push((contact, line));
    if chunk.len() == CHUNK {
        let full = std::mem::replace(chunk, Vec::with_capacity(CHUNK));
        tx.blocking_send(Msg::Chunk(full))
            .map_err(|_| cancelled())?;
    }
    Ok(())
}

fn cancelled() -> FileError {
    FileError::Csv("ingest was cancelled".into())
}

/// Up to `BATCH` records, each with what the reader attached to it; its buffers are reused
/// from batch to batch.
struct Batch<T> {
    records: Vec<csv::ByteRecord>,
    tags: Vec<T>,
}

impl<T> Batch<T> {
    fn new() -> Batch<T> {
        Batch {
            records: Vec::new(),
            tags: Vec::with_capacity(BATCH),
        }
    }

    fn records(&self) -> impl Iterator<Item = (&csv::ByteRecord, &T)> {
        self.records.iter().zip(self.tags.iter())
    }

    /// Reads records until the batch is full; `tag` says what a record carries, or `None` to
    /// leave it out. Returns whether the file has more.
    fn fill(
        &mut self,
        csv: &mut CsvFile,
        mut tag: impl FnMut(&csv::ByteRecord) -> Option<T>,
    ) -> Result<bool, FileError> {
        self.tags.clear();
        let mut spare = std::mem::take(&mut self.records);
        let mut used = 0;
        while used < BATCH {
            if spare.len() == used {
                spare.push(csv::ByteRecord::new());
            }
            if !csv.read_record(&mut spare[used])? {
                spare.truncate(used);
                self.records = spare;
                return Ok(false);
            }
            if let Some(t) = tag(&spare[used]) {
                self.tags.push(t);
                used += 1;
            }
        }
        spare.truncate(used);
        self.records = spare;
        Ok(true)
    }
}

/// How many threads turn records into rows.
fn workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().clamp(1, 4))
}

/// Reads batches on one thread (`read` fills one and says whether more follow), runs `work`
/// on each on `workers()` threads, and hands the results to `take` in the order the batches
/// were read. Batches go round-robin to the workers and are collected round-robin, which keeps
/// the order; emptied batches go back to the reader to be filled again.
fn pipeline<B, R, Read, Work, Take>(
    mut read: Read,
    work: Work,
    mut take: Take,
) -> Result<(), FileError>
where
    B: Send + Batchlike,
    R: Send,
    Read: FnMut(&mut B) -> Result<bool, FileError> + Send,
    Work: Fn(&B) -> R + Sync,
    Take: FnMut(R) -> Result<(), FileError>,
{
    let n = workers();
    std::thread::scope(|scope| {
        let (recycle_tx, recycle_rx) = sync_mpsc::channel::<B>();
        let mut inputs = Vec::with_capacity(n);
        let mut outputs = Vec::with_capacity(n);
        for _ in 0..n {
            let (in_tx, in_rx) = sync_mpsc::sync_channel::<Result<B, FileError>>(2);
            let (out_tx, out_rx) = sync_mpsc::sync_channel::<Result<(B, R), FileError>>(2);
            inputs.push(in_tx);
            outputs.push(out_rx);
            let work = &work;
            scope.spawn(move || {
                for batch in in_rx {
                    let out = batch.map(|b| {
                        let r = work(&b);
                        (b, r)
                    });
                    if out_tx.send(out).is_err() {
                        break;
                    }
                }
            });
        }
        scope.spawn(move || {
            for i in 0.. {
                let mut batch = recycle_rx.try_recv().unwrap_or_else(|_| B::empty());
                let (msg, more) = match read(&mut batch) {
                    Ok(more) => (Ok(batch), more),
                    Err(e) => (Err(e), false),
                };
                if inputs[i % n].send(msg).is_err() || !more {
                    break;
                }
            }
        });
        for i in 0.. {
            let Ok(out) = outputs[i % n].recv() else {
                break;
            };
            let (batch, result) = out?;
            take(result)?;
            let _ = recycle_tx.send(batch);
        }
        Ok(())
    })
}

/// A batch the pipeline can make afresh.
trait Batchlike {
    fn empty() -> Self;
}

impl<T> Batchlike for Batch<T> {
    fn empty() -> Self {
        Batch::new()
    }
}
