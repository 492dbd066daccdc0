//! Measures a full pull of N contacts (default 100,000) from the simulator into an empty
//! mirror, and whether the push direction keeps moving meanwhile: a one-contact CSV is dropped
//! as the pull starts and its delivery time is printed.
//!
//! Run: `cargo run --release --example pull_bench -- [N]`
//!
//! Spoki's limits are lifted here (a 50 ms "minute") so the figure is the daemon's own cost;
//! the same number of requests under Spoki's real 120/min is printed for comparison.

mod common;

use std::time::{Duration, Instant};

use serde_json::json;
use spoki_sync::app::App;
use spoki_sync::cli::demo::scaled_settings;
use spoki_sync::sim::{self, SimConfig};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let window = Duration::from_millis(50);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sim = sim::start(
        listener,
        SimConfig {
            window,
            ..SimConfig::default()
        },
    )
    .await?;
    let seeding = Instant::now();
    for i in 0..n {
        sim.ui_upsert_contact(
            &format!("+39333{i:07}"),
            json!({"first_name": format!("Nome{i}"), "custom_fields": {"CITTA": "Roma"}}),
        );
    }
    println!(
        "seeded {n} contacts in {:.1} s",
        seeding.elapsed().as_secs_f64()
    );

    let dir = tempfile::tempdir()?;
    let mut settings = scaled_settings(&sim.base_url(), "sim-api-key", dir.path(), window)?;
    settings.mirror.pull_interval = Duration::ZERO;
    settings.csv.settle = Duration::from_millis(50);
    let inbox = settings.csv.inbox.clone();
    let app = App::build(settings).await?;
    let store = app.store.clone();
    let mirror = app.mirror.clone();
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn(app.run_until(async {
        let _ = rx.await;
    }));

    let before = sim.requests().len();
    let started = Instant::now();
    mirror.pull_now.notify_one();
    std::fs::write(
        inbox.join("during-pull.csv"),
        "phone;nome\n+39 347 1234567;Push\n",
    )?;
    let mut push_latency = None;
    loop {
        if push_latency.is_none() && sim.contact_by_phone("+393471234567").is_some() {
            push_latency = Some(started.elapsed());
        }
        if store.status_counts().await?.last_pull_at.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let pull = started.elapsed();
    let requests = sim
        .requests()
        .iter()
        .skip(before)
        .filter(|r| r.path == "/api/1/contacts/" && r.method == "GET")
        .count();
    while push_latency.is_none() {
        if sim.contact_by_phone("+393471234567").is_some() {
            push_latency = Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (rows,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM contacts")
        .fetch_one(store.pool())
        .await?;
    println!(
        "pull: {rows} mirror rows from {n} contacts in {:.2} s, {requests} requests \
         ({:.0} contacts/s), peak RSS {:.0} MiB",
        pull.as_secs_f64(),
        n as f64 / pull.as_secs_f64(),
        common::peak_rss_mib()
    );
    println!(
        "under Spoki's 120/min for GET contacts/: {requests} requests take at least {:.1} min",
        (requests.saturating_sub(1)) as f64 / 120.0
    );
    println!(
        "a CSV dropped as the pull started reached Spoki after {:.2} s",
        push_latency.map_or(f64::NAN, |d| d.as_secs_f64())
    );
    let _ = stop.send(());
    daemon.await??;
    Ok(())
}
