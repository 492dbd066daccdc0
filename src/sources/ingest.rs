//! One CSV file → merged contacts → diff against what Spoki holds (or will hold) → a sink.
//!
//! Two passes keep memory bounded whatever the file's size: pass 1 parses every phone (the
//! costly step) and counts repeats; pass 2 re-reads the cells, emits contacts whose phone occurs
//! once straight away, and merges repeated phones field by field (last non-empty value wins)
//! before emitting them. A reader thread feeds the async side through a bounded channel.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::domain::{Contact, ContactFields, ListId, Phone};
use crate::normalise::DefaultRegion;
use crate::sources::csv_file::{CsvFile, FileError};
use crate::store::{EnqueueCounts, Incoming, Store, StoreError, Tx};

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
    /// Why each ignored column (header as written) is left out.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub ignored_reasons: std::collections::BTreeMap<String, String>,
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
    ) -> impl Future<Output = Result<EnqueueCounts, StoreError>>;
}

/// The daemon's sink: writes into the outbox inside the file's transaction.
pub struct OutboxSink<'a> {
    pub tx: &'a mut Tx,
    pub file: String,
}

impl Sink for OutboxSink<'_> {
    async fn new_codes(&mut self, codes: &[String]) -> Result<usize, StoreError> {
        Store::new_custom_field_codes(self.tx, codes).await
    }

    async fn want_columns(&mut self, columns: &[(String, String)]) -> Result<(), StoreError> {
        Store::want_custom_fields(self.tx, columns).await
    }

    async fn enqueue(
        &mut self,
        list: ListId,
        contacts: Vec<Incoming>,
    ) -> Result<EnqueueCounts, StoreError> {
        let contacts = contacts
            .into_iter()
            .map(|mut c| {
                c.key = format!("{}:{}", self.file, c.key);
                c
            })
            .collect();
        Store::enqueue_changes(self.tx, "csv", list, contacts).await
    }
}

/// `plan`'s sink: reads the state if there is one, writes nothing.
pub struct PlanSink {
    pub store: Option<Store>,
    pub writes: u64,
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

    async fn enqueue(
        &mut self,
        list: ListId,
        contacts: Vec<Incoming>,
    ) -> Result<EnqueueCounts, StoreError> {
        let judged = match &self.store {
            Some(store) => {
                let mut conn = store.pool().acquire().await?;
                Store::judge_changes(&mut conn, list, &contacts).await?
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
#[derive(Clone, Debug)]
pub struct IngestOptions {
    pub region: DefaultRegion,
    pub list: ListId,
    /// Custom-field columns are sent (and created in Spoki when missing).
    pub keep_custom_fields: bool,
    /// A file bringing more custom-field codes new to the daemon than this is refused whole.
    pub max_new_custom_fields: usize,
    /// Custom-field codes left out of the file whatever `keep_custom_fields` says (Spoki lacks
    /// them and they cannot be created), each with the reason the report gives.
    pub ignored_codes: Arc<BTreeMap<String, String>>,
}

impl IngestOptions {
    pub fn from_settings(settings: &crate::config::Settings, list: ListId) -> IngestOptions {
        IngestOptions {
            region: settings.csv.default_region,
            list,
            keep_custom_fields: settings.csv.create_custom_fields,
            max_new_custom_fields: settings.csv.max_new_custom_fields,
            ignored_codes: Arc::default(),
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
        ignored_codes,
    } = options;
    let (tx, mut rx) = mpsc::channel::<Msg>(4);
    let owned: PathBuf = path.to_path_buf();
    let name = display_name.to_string();
    let reader = tokio::task::spawn_blocking(move || {
        let msg = match read_file(
            &owned,
            &name,
            region,
            keep_custom_fields,
            &ignored_codes,
            &tx,
        ) {
            Ok(report) => Msg::Done(Box::new(report)),
            Err(e) => Msg::Failed(e),
        };
        let _ = tx.blocking_send(msg);
    });

    let mut verdicts = EnqueueCounts::default();
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
    ignored_codes: &BTreeMap<String, String>,
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
        for (code, header) in csv.custom_codes.iter().zip(&csv.custom_headers) {
            match ignored_codes.get(code) {
                Some(reason) => {
                    report.ignored_columns.push(header.clone());
                    report
                        .ignored_reasons
                        .insert(header.clone(), reason.clone());
                }
                None => report.custom_columns.push((code.clone(), header.clone())),
            }
        }
    } else {
        report.ignored_columns = csv.custom_headers.clone();
    }
    if !report.custom_columns.is_empty() {
        tx.blocking_send(Msg::Columns(report.custom_columns.clone()))
            .map_err(|_| FileError::Csv("ingest was cancelled".into()))?;
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
    } else if !ignored_codes.is_empty() {
        csv.drop_custom_codes_where(|code| ignored_codes.contains_key(code));
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
