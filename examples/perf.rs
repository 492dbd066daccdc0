//! End-to-end figures of the daemon against the in-process simulator:
//! 1. a 100,000-row CSV dropped with the bulk slot free: time until the first bulk request
//!    reaches Spoki, and the file's ingest rate;
//! 2. bulk slot use under that backlog: the interval Spoki's limit allows divided by the
//!    interval the requests actually kept, over 10 requests at a 1 s "minute";
//! 3. optionally (`-- FILE.csv`), the ingest of a big file (e.g. 1,000,000 rows from
//!    `tests/data/gen_contacts.py`) into the outbox: rows/s and peak RSS.
//!
//! Run: `cargo run --release --example perf [-- big.csv]`

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use spoki_sync::app::App;
use spoki_sync::cli::demo::scaled_settings;
use spoki_sync::sim::{self, SimConfig, SimHandle};

fn bulk_times(sim: &SimHandle) -> Vec<u64> {
    sim.requests()
        .iter()
        .filter(|r| r.path.ends_with("/contacts/sync_all/") && r.status == 200)
        .map(|r| r.at_ms)
        .collect()
}

async fn processed(inbox: &Path, name: &str) {
    loop {
        let done = std::fs::read_dir(inbox.join("processed"))
            .map(|d| {
                d.flatten().any(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .ends_with(&format!("-{name}"))
                })
            })
            .unwrap_or(false);
        if done {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let big = std::env::args().nth(1);
    let window = Duration::from_secs(1);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sim = sim::start(
        listener,
        SimConfig {
            window,
            ..SimConfig::default()
        },
    )
    .await?;
    let dir = tempfile::tempdir()?;
    let mut settings = scaled_settings(&sim.base_url(), "sim-api-key", dir.path(), window)?;
    settings.csv.settle = Duration::from_millis(100);
    let inbox = settings.csv.inbox.clone();
    let app = App::build(settings).await?;
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn(app.run_until(async {
        let _ = rx.await;
    }));

    // 1. 100,000 rows, bulk slot free.
    let mut csv = String::from("telefono;nome;cognome\n");
    for i in 0..100_000u64 {
        csv.push_str(&format!("+39 333 {i:07};Nome{i};Cognome{i}\n"));
    }
    std::fs::write(inbox.join("100k.csv.part"), &csv)?;
    let dropped = Instant::now();
    std::fs::rename(inbox.join("100k.csv.part"), inbox.join("100k.csv"))?;
    processed(&inbox, "100k.csv").await;
    let ingested = dropped.elapsed();
    while bulk_times(&sim).is_empty() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let first_bulk = dropped.elapsed();
    println!(
        "100,000-row CSV: committed to the outbox after {:.2} s (settle 100 ms included, \
         {:.0} rows/s); first bulk request reached Spoki after {:.2} s",
        ingested.as_secs_f64(),
        100_000.0 / ingested.as_secs_f64(),
        first_bulk.as_secs_f64()
    );

    // 2. Slot use over 10 bulk requests at 1 per second.
    while bulk_times(&sim).len() < 11 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let t = bulk_times(&sim);
    let kept = (t[10] - t[0]) as f64 / 10.0;
    println!(
        "bulk slot use under a backlog: 10 requests every {kept:.0} ms against a limit of one \
         per {} ms: {:.1}%",
        window.as_millis(),
        100.0 * window.as_millis() as f64 / kept
    );

    // 3. A big file's ingest.
    if let Some(path) = big {
        let name = "big.csv";
        std::fs::copy(&path, inbox.join(format!("{name}.part")))?;
        let started = Instant::now();
        std::fs::rename(inbox.join(format!("{name}.part")), inbox.join(name))?;
        processed(&inbox, name).await;
        let took = started.elapsed();
        let rows = csv_rows(Path::new(&path))?;
        println!(
            "{path}: {rows} rows committed to the outbox in {:.1} s ({:.0} rows/s); peak RSS of \
             the whole process {:.0} MiB",
            took.as_secs_f64(),
            rows as f64 / took.as_secs_f64(),
            common::peak_rss_mib()
        );
    }
    let _ = stop.send(());
    daemon.await??;
    Ok(())
}

fn csv_rows(path: &Path) -> std::io::Result<u64> {
    let bytes = std::fs::read(path)?;
    Ok(bytes
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        .saturating_sub(1) as u64)
}
