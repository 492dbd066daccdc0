//! `spoki-sync demo`: the simulator and the daemon on loopback in a temporary folder, with
//! Spoki's per-minute limits scaled to a short window so the run takes seconds. A sample CSV
//! is dropped into the inbox; progress is shown; a summary of what reached the simulator is
//! printed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use crate::app::App;
use crate::config::Settings;
use crate::sim::{self, SimConfig};
use crate::sources::ingest::FileReport;
use crate::spoki::actions::Action;

const SAMPLE: &[u8] = include_bytes!("../../examples/contacts-demo.csv");
const SAMPLE_NAME: &str = "contacts-demo.csv";
/// One minute of Spoki's budget lasts this long in the demo.
const WINDOW: Duration = Duration::from_secs(2);

/// Settings for a daemon talking to a simulator whose minute lasts `window`.
pub fn scaled_settings(
    base_url: &str,
    api_key: &str,
    dir: &std::path::Path,
    window: Duration,
) -> anyhow::Result<Settings> {
    let window_ms = window.as_millis();
    let limits: Vec<String> = Action::ALL
        .iter()
        .map(|a| format!("{a} = \"{}/{}ms\"", a.default_limit().count, window_ms))
        .collect();
    let text = format!(
        r#"
        [spoki]
        base_url = "{base_url}"
        api_key = "{api_key}"
        timeout = "5s"
        [spoki.rate_limits]
        {limits}
        [storage]
        database = "{db}"
        [csv]
        inbox = "{inbox}"
        settle = "200ms"
        rescan_interval = "1s"
        [admin]
        token = "demo-admin-token"
        listen = "127.0.0.1:0"
        [webhooks]
        listen = "127.0.0.1:0"
        [batch]
        max_backoff = "2s"
        "#,
        limits = limits.join("\n        "),
        db = dir.join("spoki-sync.db").display(),
        inbox = dir.join("inbox").display(),
    );
    Ok(Settings::from_toml(&text)?)
}

pub async fn run() -> anyhow::Result<()> {
    let started = Instant::now();
    let dir = tempfile::tempdir().context("cannot create a temporary folder")?;
    println!("spoki-sync demo");
    println!("  working folder: {}", dir.path().display());
    println!(
        "  rate limits scaled down: Spoki's one-minute budgets last {}s here \
         (bulk sync: 1 request per {}s, create or update contact: 120 per {}s)",
        WINDOW.as_secs(),
        WINDOW.as_secs(),
        WINDOW.as_secs()
    );

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sim = sim::start(
        listener,
        SimConfig {
            window: WINDOW,
            ..SimConfig::default()
        },
    )
    .await?;
    println!("  simulator: {}", sim.base_url());

    let settings = scaled_settings(&sim.base_url(), "sim-api-key", dir.path(), WINDOW)?;
    let inbox = settings.csv.inbox.clone();
    let app = App::build(settings).await?;
    let store = app.store.clone();
    let stats = app.batcher.stats.clone();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn(app.run_until(async {
        let _ = stop_rx.await;
    }));

    // Dropped the way careful writers do: written under a temporary name, then renamed.
    let part = inbox.join(format!("{SAMPLE_NAME}.part"));
    std::fs::write(&part, SAMPLE)?;
    std::fs::rename(&part, inbox.join(SAMPLE_NAME))?;
    println!(
        "  dropped {SAMPLE_NAME} ({} bytes) into the inbox\n",
        SAMPLE.len()
    );

    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("  {msg:12} [{bar:40}] {pos}/{len} contacts acknowledged")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message("reading");
    let deadline = Instant::now() + Duration::from_secs(50);
    let report: FileReport = loop {
        if Instant::now() > deadline {
            anyhow::bail!("the demo did not finish in time");
        }
        let acked = stats
            .contacts_acknowledged
            .load(std::sync::atomic::Ordering::Relaxed);
        if let Some(report) = processed_report(&inbox)? {
            let to_send = report.accepted - report.unchanged;
            bar.set_length(to_send);
            bar.set_position(acked);
            bar.set_message("sending");
            if store.outbox_depth().await? == 0 && acked >= to_send {
                bar.set_message("done");
                bar.finish();
                break report;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    let _ = stop_tx.send(());
    daemon.await??;

    let requests = sim.requests();
    let mut by_endpoint: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for r in &requests {
        let e = by_endpoint
            .entry(format!("{} {} → {}", r.method, r.path, r.status))
            .or_default();
        e.0 += 1;
        if let serde_json::Value::Array(items) = &r.body {
            e.1 += items.len();
        } else if r.body.get("phone").is_some() {
            e.1 += 1;
        }
    }
    println!(
        "\nfile report: {} rows, {} contacts accepted, {} repeated phones, {} rows rejected",
        report.rows,
        report.accepted,
        report.duplicates,
        report.rejected.len()
    );
    for r in report.rejected.iter().take(5) {
        println!("  rejected line {}: {:?} ({})", r.line, r.phone, r.reason);
    }
    println!("\nwhat reached the simulator:");
    for (endpoint, (count, contacts)) in &by_endpoint {
        if *contacts > 0 {
            println!("  {count:3} × {endpoint} ({contacts} contacts)");
        } else {
            println!("  {count:3} × {endpoint}");
        }
    }
    let held = sim.contacts();
    println!(
        "\nthe simulator now holds {} contacts, custom fields {:?}",
        held.len(),
        sim.custom_field_codes()
    );
    if let Some(first) = held.first() {
        println!(
            "  e.g. {}",
            serde_json::to_string(first).unwrap_or_default()
        );
    }
    println!("\ndone in {:.1}s", started.elapsed().as_secs_f64());
    sim.shutdown();
    Ok(())
}

fn processed_report(inbox: &std::path::Path) -> anyhow::Result<Option<FileReport>> {
    let dir = inbox.join("processed");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(None);
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name.ends_with(".report.json") {
            let text = std::fs::read_to_string(e.path())?;
            return Ok(Some(serde_json::from_str(&text)?));
        }
    }
    Ok(None)
}
