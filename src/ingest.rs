//! One CSV file → merged contacts → diff against what Spoki holds (or will hold) → a sink.
//!
//! Two passes keep memory bounded whatever the file's size: pass 1 parses every phone (the
//! costly step) and counts repeats; pass 2 re-reads the cells, emits contacts whose phone occurs
//! once straight away, and merges repeated phones field by field (last non-empty value wins)
//! before emitting them. A reader thread feeds the async side through a bounded channel.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rustc_hash::FxHashMap;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::diff;
use crate::domain::{Contact, ContactFields, ListId, Phone};
use crate::normalise::DefaultRegion;
use crate::sources::csv_file::{CsvFile, FileError};
use crate::store::{Known, Store, StoreError, Tx};

const CHUNK: usize = 2_000;

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
}

/// How each contact of a chunk compares with what Spoki holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Create,
    Update,
    Unchanged,
}

/// A write the diff found necessary.
#[derive(Clone, Debug)]
pub struct PendingWrite {
    pub phone: Phone,
    pub changes: ContactFields,
    pub pending: Option<(i64, ContactFields)>,
    pub line: u64,
}

/// Where the diffed contacts go: the outbox (daemon) or nowhere (plan).
pub trait Sink {
    fn known(
        &mut self,
        list: ListId,
        phones: &[Phone],
    ) -> impl Future<Output = Result<HashMap<Phone, Known>, StoreError>>;
    fn write(
        &mut self,
        list: ListId,
        writes: Vec<PendingWrite>,
    ) -> impl Future<Output = Result<(), StoreError>>;
}

/// The daemon's sink: writes into the outbox inside the file's transaction.
pub struct OutboxSink<'a> {
    pub tx: &'a mut Tx,
    pub file: String,
}

impl Sink for OutboxSink<'_> {
    async fn known(
        &mut self,
        list: ListId,
        phones: &[Phone],
    ) -> Result<HashMap<Phone, Known>, StoreError> {
        Store::known(self.tx, list, phones).await
    }

    async fn write(&mut self, list: ListId, writes: Vec<PendingWrite>) -> Result<(), StoreError> {
        // New rows go in many to a statement; merging into a pending row is one by one.
        let mut fresh = Vec::new();
        for w in writes {
            let key = format!("{}:{}", self.file, w.line);
            if w.pending.is_some() {
                Store::put_pending(
                    self.tx,
                    w.phone,
                    list,
                    &w.changes,
                    w.pending.as_ref(),
                    "csv",
                    &key,
                )
                .await?;
            } else {
                fresh.push((w.phone, w.changes, key));
            }
        }
        Store::insert_pending_many(self.tx, list, &fresh, "csv").await
    }
}

/// `plan`'s sink: reads the state if there is one, writes nothing.
pub struct PlanSink {
    pub store: Option<Store>,
    pub writes: u64,
}

impl Sink for PlanSink {
    async fn known(
        &mut self,
        list: ListId,
        phones: &[Phone],
    ) -> Result<HashMap<Phone, Known>, StoreError> {
        match &self.store {
            Some(store) => {
                let mut conn = store.pool().acquire().await?;
                Store::known(&mut conn, list, phones).await
            }
            None => Ok(HashMap::new()),
        }
    }

    async fn write(&mut self, _list: ListId, writes: Vec<PendingWrite>) -> Result<(), StoreError> {
        self.writes += writes.len() as u64;
        Ok(())
    }
}

enum Msg {
    Chunk(Vec<(Contact, u64)>),
    Done(Box<FileReport>),
    Failed(FileError),
}

/// Reads `path` and feeds every accepted contact through the diff into `sink`.
pub async fn ingest_file<S: Sink>(
    path: &Path,
    display_name: &str,
    region: DefaultRegion,
    list: ListId,
    keep_custom_fields: bool,
    sink: &mut S,
) -> Result<FileReport, IngestError> {
    let (tx, mut rx) = mpsc::channel::<Msg>(4);
    let owned: PathBuf = path.to_path_buf();
    let name = display_name.to_string();
    let reader = tokio::task::spawn_blocking(move || {
        let msg = match read_file(&owned, &name, region, keep_custom_fields, &tx) {
            Ok(report) => Msg::Done(Box::new(report)),
            Err(e) => Msg::Failed(e),
        };
        let _ = tx.blocking_send(msg);
    });

    let mut verdicts: (u64, u64, u64) = (0, 0, 0);
    let mut outcome = None;
    while let Some(msg) = rx.recv().await {
        match msg {
            Msg::Chunk(chunk) => {
                let (c, u, n) = apply_chunk(sink, list, chunk).await?;
                verdicts = (verdicts.0 + c, verdicts.1 + u, verdicts.2 + n);
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
    report.creates = verdicts.0;
    report.updates = verdicts.1;
    report.unchanged = verdicts.2;
    Ok(report)
}

async fn apply_chunk<S: Sink>(
    sink: &mut S,
    list: ListId,
    chunk: Vec<(Contact, u64)>,
) -> Result<(u64, u64, u64), StoreError> {
    let phones: Vec<Phone> = chunk.iter().map(|(c, _)| c.phone).collect();
    let known = sink.known(list, &phones).await?;
    let empty = Known::default();
    let mut writes = Vec::new();
    let (mut creates, mut updates, mut unchanged) = (0, 0, 0);
    for (contact, line) in chunk {
        let k = known.get(&contact.phone).unwrap_or(&empty);
        let changes = diff::changes(&k.effective, &contact.fields);
        let needs_membership = !list.is_none() && !k.member && k.pending_here.is_none();
        if changes.is_empty() && !needs_membership {
            unchanged += 1;
            continue;
        }
        if k.in_state {
            updates += 1;
        } else {
            creates += 1;
        }
        writes.push(PendingWrite {
            phone: contact.phone,
            changes,
            pending: k.pending_here.clone(),
            line,
        });
    }
    sink.write(list, writes).await?;
    Ok((creates, updates, unchanged))
}

/// Both passes, on a blocking thread. Sends chunks; returns the counts for the report.
fn read_file(
    path: &Path,
    name: &str,
    region: DefaultRegion,
    keep_custom_fields: bool,
    tx: &mpsc::Sender<Msg>,
) -> Result<FileReport, FileError> {
    let mut report = FileReport {
        file: name.to_string(),
        ..Default::default()
    };

    // Pass 1: phones.
    let mut csv = CsvFile::open(path)?;
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
    // One entry per row (`None`: rejected), so pass 2 need not parse phones again.
    let mut row_phones: Vec<Option<Phone>> = Vec::new();
    let mut counts: FxHashMap<Phone, u32> = FxHashMap::default();
    while let Some(row) = csv.next_row()? {
        report.rows += 1;
        match row.validate(region) {
            Ok(phone) => {
                row_phones.push(Some(phone));
                let n = counts.entry(phone).or_insert(0);
                if *n > 0 {
                    report.duplicates += 1;
                }
                *n += 1;
            }
            Err(issue) => {
                row_phones.push(None);
                report.rejected.push(RejectedRow {
                    line: row.line,
                    phone: row.phone.clone(),
                    reason: issue.to_string(),
                });
            }
        }
    }
    report.accepted = counts.len() as u64;

    // Pass 2: fields.
    let mut csv = CsvFile::open_as(path, format)?;
    if !keep_custom_fields {
        csv.drop_custom_codes();
    }
    let mut repeated: FxHashMap<Phone, (u64, ContactFields)> = FxHashMap::default();
    let mut repeated_order: Vec<Phone> = Vec::new();
    let mut chunk: Vec<(Contact, u64)> = Vec::with_capacity(CHUNK);
    let mut phones = row_phones.into_iter();
    while let Some(row) = csv.next_row()? {
        let Some(phone) = phones.next().flatten() else {
            continue;
        };
        let line = row.line;
        let fields = row.into_fields();
        if counts.get(&phone).copied().unwrap_or(0) > 1 {
            match repeated.get_mut(&phone) {
                Some((_, merged)) => merged.overlay(&fields),
                None => {
                    repeated_order.push(phone);
                    repeated.insert(phone, (line, fields));
                }
            }
            continue;
        }
        chunk.push((Contact { phone, fields }, line));
        if chunk.len() == CHUNK {
            send(tx, std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK)))?;
        }
    }
    drop(phones);
    for phone in repeated_order {
        if let Some((line, fields)) = repeated.remove(&phone) {
            chunk.push((Contact { phone, fields }, line));
            if chunk.len() == CHUNK {
                send(tx, std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK)))?;
            }
        }
    }
    if !chunk.is_empty() {
        send(tx, chunk)?;
    }
    Ok(report)
}

fn send(tx: &mpsc::Sender<Msg>, chunk: Vec<(Contact, u64)>) -> Result<(), FileError> {
    tx.blocking_send(Msg::Chunk(chunk))
        .map_err(|_| FileError::Csv("ingest was cancelled".into()))
}
