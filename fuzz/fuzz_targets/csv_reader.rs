//! The inbox's CSV path on arbitrary bytes: the bytes become a file, which goes through
//! `ingest::ingest_file` exactly as `plan` drives it (a `PlanSink` with no state), so encoding
//! sniffing, the delimiter guess, header aliases, phone and email normalisation, the two passes
//! and the merge of repeated phones all run. It must never panic, and the report's counts must
//! add up.
//!
//! The input is the file, unchanged (so a real CSV is a seed as it is). The settings come from
//! the input's length, so mutations reach every combination:
//! bit 0: `keep_custom_fields`; bit 1: a list (`ListId(7)`) or none; bit 2: region IT or US.

#![no_main]

use std::io::Write;
use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use spoki_sync::domain::ListId;
use spoki_sync::sources::ingest::{self, IngestError, PlanSink};
use spoki_sync::normalise::DefaultRegion;
use spoki_sync::sources::csv_file::CsvFile;

struct Env {
    rt: tokio::runtime::Runtime,
    path: PathBuf,
    _dir: tempfile::TempDir,
}

fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("input.csv");
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        spoki_sync::normalise::warm_up();
        Env {
            rt,
            path,
            _dir: dir,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let env = env();
    {
        let mut f = std::fs::File::create(&env.path).expect("create input");
        f.write_all(data).expect("write input");
    }
    let ctl = data.len();
    let keep_custom_fields = ctl & 1 == 1;
    let list = if ctl & 2 == 2 {
        ListId(7)
    } else {
        ListId::NONE
    };
    let region = DefaultRegion::parse(if ctl & 4 == 4 { "US" } else { "IT" }).expect("region");

    let mut sink = PlanSink {
        store: None,
        writes: 0,
    };
    let result = env.rt.block_on(ingest::ingest_file(
        &env.path,
        "input.csv",
        ingest::IngestOptions {
            region,
            list,
            keep_custom_fields,
            max_new_custom_fields: 50,
        },
        &mut sink,
    ));
    match result {
        Ok(report) => {
            // Every row is rejected, or the first of its phone, or a repeat.
            assert_eq!(
                report.rows,
                report.accepted + report.duplicates + report.rejected.len() as u64,
                "rows do not add up: {report:?}"
            );
            // Every distinct phone gets exactly one verdict.
            assert_eq!(
                report.creates + report.updates + report.unchanged,
                report.accepted,
                "verdicts do not add up: {report:?}"
            );
            assert_eq!(sink.writes, report.creates + report.updates);
            // No state: nothing is known, so nothing is an update.
            assert_eq!(report.updates, 0);
            // The report is what the inbox writes beside the file.
            let json = serde_json::to_string_pretty(&report).expect("report serialises");
            let back: ingest::FileReport = serde_json::from_str(&json).expect("report reads back");
            assert_eq!(back.rows, report.rows);

            // The reader on its own agrees with the ingest on the row count.
            let mut csv = CsvFile::open(&env.path).expect("opened once, opens again");
            let mut rows = 0u64;
            let mut last_line = 0u64;
            while let Some(row) = csv.next_row().expect("read once, reads again") {
                rows += 1;
                assert!(row.line > last_line, "line numbers go forward");
                last_line = row.line;
                if let Ok(phone) = row.validate(region) {
                    let _ = phone.to_string();
                    let _ = row.into_fields();
                }
            }
            assert_eq!(rows, report.rows);
        }
        Err(IngestError::File(e)) => {
            // A file refused as a whole: the message goes into the failure report.
            let _ = e.to_string();
        }
        Err(IngestError::Store(e)) => panic!("no store, yet a store error: {e}"),
    }
});
