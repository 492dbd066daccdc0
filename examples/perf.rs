//! End-to-end figures of the daemon against the in-process simulator:
//! 1. a 100,000-row CSV dropped with the bulk slot free: time until the first bulk request
//!    reaches Spoki, and the file's ingest rate;
//! 2. bulk slot use under that backlog: the interval Spoki's limit allows divided by the
//!    interval the requests actually kept, over 10 requests at a 1 s "minute";
//! 3. optionally (`-- FILE.csv`), the ingest of a big file (e.g. 1,000,000 rows from
//!    `tests/data/gen_contacts.py`) into the outbox: rows/s and peak RSS, while a signed
//!    contacts webhook arrives every 0.5 s (the slowest 202 is printed) and the batcher sends
//!    (bulk requests during the ingest against what the limit allowed);
//! 4. with the file: the state made to hold every contact of it (as if Spoki had acknowledged
//!    the whole outbox), the daemon restarted and the same file dropped again: rows/s and
//!    outbox rows written (none expected). With `PERF_KEEP_DB=PATH` that state database is
//!    kept at PATH, for timing `spoki-sync plan` against 1,000,000 known contacts.
//!
//! Run: `cargo run --release --example perf [-- big.csv]`

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use spoki_sync::app::App;
use spoki_sync::cli::demo::scaled_settings;
use spoki_sync::sim::{self, SimConfig, SimHandle};

const WEBHOOK_KEY: &[u8] = b"perf webhook key";

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
    let key = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, WEBHOOK_KEY);
    settings.webhooks.secret = Some(spoki_sync::config::Secret::new(format!("whsec_{key}")));
    let inbox = settings.csv.inbox.clone();
    let settings_db = settings.storage.database.clone();
    let app = App::build(settings.clone()).await?;
    let webhooks = app.webhooks_addr()?;
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

    // 3. A big file's ingest, with webhooks arriving and the batcher sending.
    if let Some(path) = big {
        let rows = csv_rows(Path::new(&path))?;
        let name = "big.csv";
        std::fs::copy(&path, inbox.join(format!("{name}.part")))?;
        let bulk_before = bulk_times(&sim).len();
        let started = Instant::now();
        std::fs::rename(inbox.join(format!("{name}.part")), inbox.join(name))?;
        let hooks = tokio::spawn(webhooks_every_half_second(webhooks, inbox.clone()));
        processed(&inbox, name).await;
        let took = started.elapsed();
        let slowest = hooks.await??;
        let bulk = bulk_times(&sim).len() - bulk_before;
        println!(
            "{path}: {rows} rows committed to the outbox in {:.2} s ({:.0} rows/s); peak RSS of \
             the whole process (simulator included) {:.0} MiB",
            took.as_secs_f64(),
            rows as f64 / took.as_secs_f64(),
            common::peak_rss_mib()
        );
        println!(
            "during that ingest: slowest signed contacts webhook 202 {:.0} ms ({} sent); {bulk} \
             bulk requests left, {:.0} allowed by the limit",
            slowest.0.as_secs_f64() * 1000.0,
            slowest.1,
            took.as_secs_f64() / window.as_secs_f64()
        );
        let _ = stop.send(());
        daemon.await??;

        // 4. The same file again, once the state holds every contact of it.
        let store = spoki_sync::store::Store::open(&settings_db).await?;
        acknowledge_everything(&store).await?;
        store.close().await;
        let app = App::build(settings.clone()).await?;
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let daemon = tokio::spawn(app.run_until(async {
            let _ = rx.await;
        }));
        let name = "big-again.csv";
        std::fs::copy(&path, inbox.join(format!("{name}.part")))?;
        let started = Instant::now();
        std::fs::rename(inbox.join(format!("{name}.part")), inbox.join(name))?;
        processed(&inbox, name).await;
        let took = started.elapsed();
        let store = spoki_sync::store::Store::open_read_only(&settings_db)
            .await?
            .ok_or_else(|| anyhow::anyhow!("no database"))?;
        let depth = store.outbox_depth().await?;
        store.close().await;
        println!(
            "the same file again, nothing changed: {:.2} s ({:.0} rows/s), outbox rows after: \
             {depth}",
            took.as_secs_f64(),
            rows as f64 / took.as_secs_f64(),
        );
        let _ = stop.send(());
        daemon.await??;
        if let Some(keep) = std::env::var_os("PERF_KEEP_DB") {
            std::fs::copy(&settings_db, &keep)?;
            println!("state database kept at {}", Path::new(&keep).display());
        }
        return Ok(());
    }
    let _ = stop.send(());
    daemon.await??;
    Ok(())
}

/// Acts as if Spoki had acknowledged every queued write: the state learns the rows, the outbox
/// empties.
async fn acknowledge_everything(store: &spoki_sync::store::Store) -> anyhow::Result<()> {
    let mut tx = store.begin().await?;
    sqlx::query(
        "INSERT OR REPLACE INTO contact_state (phone, first_name, last_name, email, language, \
         custom_fields, acked_at) SELECT phone, first_name, last_name, email, language, \
         custom_fields, enqueued_at FROM outbox",
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM outbox").execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}

/// Posts a signed contacts webhook every 0.5 s until `name` is processed; returns the slowest
/// answer and how many were sent.
async fn webhooks_every_half_second(
    addr: std::net::SocketAddr,
    inbox: std::path::PathBuf,
) -> anyhow::Result<(Duration, u32)> {
    use base64::Engine as _;
    use hmac::{Hmac, Mac};
    let http = reqwest::Client::new();
    let mut slowest = Duration::ZERO;
    let mut sent = 0u32;
    while !is_processed(&inbox, "big.csv") {
        let id = format!("perf-{sent}");
        let body = serde_json::to_vec(&serde_json::json!({
            "contacts": [{"phone": format!("+39389{sent:07}"), "first_name": "Perf"}]
        }))?;
        let ts = chrono::Utc::now().timestamp();
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(WEBHOOK_KEY)?;
        mac.update(format!("{id}.{ts}.").as_bytes());
        mac.update(&body);
        let signature = format!(
            "v1,{}",
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
        );
        let at = Instant::now();
        let status = http
            .post(format!("http://{addr}/webhooks/contacts"))
            .header("webhook-id", &id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", signature)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?
            .status();
        anyhow::ensure!(status.as_u16() == 202, "webhook answered {status}");
        slowest = slowest.max(at.elapsed());
        sent += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok((slowest, sent))
}

fn is_processed(inbox: &Path, name: &str) -> bool {
    std::fs::read_dir(inbox.join("processed"))
        .map(|d| {
            d.flatten().any(|e| {
                e.file_name()
                    .to_string_lossy()
                    .ends_with(&format!("-{name}"))
            })
        })
        .unwrap_or(false)
}

fn csv_rows(path: &Path) -> std::io::Result<u64> {
    let bytes = std::fs::read(path)?;
    Ok(bytes
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        .saturating_sub(1) as u64)
}
