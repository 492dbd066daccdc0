//! `spoki-sync demo`: the simulator and the daemon on loopback in a temporary folder, with
//! Spoki's per-minute limits scaled to a short window so the run takes seconds. A sample CSV
//! is dropped into the inbox; progress is shown (a bar on a terminal, plain lines when
//! piped); a summary of the file's report and of what reached the simulator, in time order, is
//! printed. The working folder is removed at exit unless `--keep` is given.

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

/// The demo's output: on a terminal a progress bar, piped plain lines only.
struct Out {
    terminal: bool,
}

/// `spoki-sync demo [--keep]`: `keep` leaves the working folder (database, inbox, reports)
/// in place instead of removing it at exit.
pub async fn run(keep: bool) -> anyhow::Result<()> {
    use std::io::IsTerminal as _;
    let started = Instant::now();
    let out = Out {
        terminal: std::io::stderr().is_terminal(),
    };
    let dir = tempfile::Builder::new()
        .prefix("spoki-sync-demo-")
        .tempdir()
        .context("cannot create a temporary folder")?;
    println!("spoki-sync demo");
    if keep {
        println!("  working folder: {} (kept: --keep)", dir.path().display());
    } else {
        println!(
            "  working folder: {} (removed at exit; `spoki-sync demo --keep` keeps it)",
            dir.path().display()
        );
    }
    println!(
        "  rate limits scaled down: Spoki's one-minute budgets last {}s here \
         (bulk sync: 1 request per {}s, create or update contact: 120 per {}s)",
        WINDOW.as_secs(),
        WINDOW.as_secs(),
        WINDOW.as_secs()
    );
    let (sim, report) = drive(dir.path(), &out).await?;
    print_summary(&report, &sim);
    sim.shutdown();
    if keep {
        let kept = dir.keep();
        println!(
            "\nkept {}: inbox/processed/ holds the file and its report",
            kept.display()
        );
    }
    println!("\ndone in {:.1}s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Starts the simulator and the daemon in `dir`, drops the sample and waits until every
/// accepted contact is acknowledged; the daemon is stopped before returning.
async fn drive(dir: &std::path::Path, out: &Out) -> anyhow::Result<(sim::SimHandle, FileReport)> {
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

    let settings = scaled_settings(&sim.base_url(), "sim-api-key", dir, WINDOW)?;
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
        "  dropped {SAMPLE_NAME} ({} bytes) into the inbox",
        SAMPLE.len()
    );

    let bar = progress_bar(out);
    let deadline = Instant::now() + Duration::from_secs(50);
    let mut announced = false;
    let report: FileReport = loop {
        if Instant::now() > deadline {
            anyhow::bail!("the demo did not finish in time");
        }
        let acked = stats
            .contacts_acknowledged
            .load(std::sync::atomic::Ordering::Relaxed);
        if let Some(report) = processed_report(&inbox)? {
            let to_send = report.accepted - report.unchanged;
            if !announced && bar.is_none() {
                println!("  sending {to_send} contacts");
                announced = true;
            }
            if let Some(bar) = &bar {
                bar.set_length(to_send);
                bar.set_position(acked);
                bar.set_message("sending");
            }
            if store.outbox_depth().await? == 0 && acked >= to_send {
                if let Some(bar) = &bar {
                    bar.set_message("done");
                    bar.finish();
                } else {
                    println!("  {acked} contacts acknowledged");
                }
                break report;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = stop_tx.send(());
    daemon.await??;
    Ok((sim, report))
}

/// A progress bar on a terminal; none when piped (it would leave blank lines).
fn progress_bar(out: &Out) -> Option<ProgressBar> {
    if !out.terminal {
        return None;
    }
    println!();
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("  {msg:12} [{bar:40}] {pos}/{len} contacts acknowledged")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message("reading");
    Some(bar)
}

/// How many rejected rows the summary lists before "and N more".
const REJECTS_SHOWN: usize = 5;

fn print_summary(report: &FileReport, sim: &sim::SimHandle) {
    println!(
        "\nfile report: {} rows, {} contacts accepted, {} repeated phones, {} rows rejected",
        report.rows,
        report.accepted,
        report.duplicates,
        report.rejected.len()
    );
    for r in report.rejected.iter().take(REJECTS_SHOWN) {
        println!("  rejected line {}: {:?} ({})", r.line, r.phone, r.reason);
    }
    if report.rejected.len() > REJECTS_SHOWN {
        println!(
            "  and {} more (all of them in the report, and in GET /v1/rejects)",
            report.rejected.len() - REJECTS_SHOWN
        );
    }
    println!("\nwhat reached the simulator, in order:");
    for line in request_runs(&sim.requests()) {
        println!("  {line}");
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
}

/// The requests in arrival order, runs of the same endpoint and answer folded into one line:
/// `3 × POST /api/1/contacts/sync_all/ → 200 (1234 contacts)`.
fn request_runs(requests: &[sim::RecordedRequest]) -> Vec<String> {
    let mut runs: Vec<(String, usize, usize)> = Vec::new();
    let mut ordered: Vec<&sim::RecordedRequest> = requests.iter().collect();
    ordered.sort_by_key(|r| r.seq);
    for r in ordered {
        let endpoint = format!("{} {} → {}", r.method, r.path, r.status);
        let contacts = match &r.body {
            serde_json::Value::Array(items) => items.len(),
            body if body.get("phone").is_some() => 1,
            _ => 0,
        };
        match runs.last_mut() {
            Some((last, count, n)) if *last == endpoint => {
                *count += 1;
                *n += contacts;
            }
            _ => runs.push((endpoint, 1, contacts)),
        }
    }
    runs.into_iter()
        .map(|(endpoint, count, contacts)| {
            if contacts > 0 {
                format!("{count:3} × {endpoint} ({contacts} contacts)")
            } else {
                format!("{count:3} × {endpoint}")
            }
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn request(
        seq: u64,
        method: &str,
        path: &str,
        body: serde_json::Value,
    ) -> sim::RecordedRequest {
        sim::RecordedRequest {
            seq,
            method: method.to_owned(),
            path: path.to_owned(),
            query: String::new(),
            body,
            status: 200,
            at_ms: seq,
        }
    }

    #[test]
    fn requests_are_shown_in_arrival_order_with_runs_folded() {
        let reqs = vec![
            request(
                3,
                "POST",
                "/api/1/contacts/sync_all/",
                serde_json::json!([{}, {}]),
            ),
            request(
                1,
                "POST",
                "/api/1/custom-fields/",
                serde_json::json!({"code": "X"}),
            ),
            request(
                2,
                "POST",
                "/api/1/contacts/sync_all/",
                serde_json::json!([{}]),
            ),
        ];
        let lines = request_runs(&reqs);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].contains("custom-fields"), "{lines:?}");
        assert!(
            lines[1].starts_with("  2 × POST /api/1/contacts/sync_all/"),
            "{lines:?}"
        );
        assert!(lines[1].ends_with("(3 contacts)"), "{lines:?}");
    }
}
