//! Faults Spoki may throw at us (429 storms, 5xx, dropped connections) and `kill -9`: nothing
//! accepted is lost.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use spoki_sync::sim::{Faults, SimConfig};
use spoki_sync::store::Store;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_simulator_and_503s_lose_nothing() {
    // The simulator allows one bulk request per second; the daemon is configured for one per
    // 400 ms, so it meets 429s. Faults come in phases so that each kind surely happens: an
    // outage (every call 503) until one is seen, no faults until a 429 is seen, then 30% of all
    // calls fail with 503 until the end.
    let window = Duration::from_secs(1);
    let app = spawn_app_with(
        SimConfig {
            window,
            faults: Faults {
                error_503_rate: 1.0,
                ..Faults::default()
            },
            ..SimConfig::default()
        },
        window,
        |s| {
            s.spoki.rate_limits.insert(
                "bulk_sync_contacts".into(),
                spoki_sync::config::RateLimit::parse("1/400ms").expect("limit"),
            );
            s.batch.max_backoff = Duration::from_millis(800);
        },
    )
    .await;
    app.drop_file("storm.csv", &contacts_csv(4_000_000, 1234, ""));
    wait_report(&app.inbox, "processed", "storm.csv").await;
    for (status, next_rate) in [(503, 0.0), (429, 0.3)] {
        wait_until(
            Duration::from_secs(20),
            &format!("an HTTP {status}"),
            || {
                let seen = app.sim.requests().iter().any(|r| r.status == status);
                async move { seen }
            },
        )
        .await;
        app.sim.set_faults(Faults {
            error_503_rate: next_rate,
            ..Faults::default()
        });
    }
    app.wait_drained(Duration::from_secs(60)).await;
    assert_eq!(app.sim.contacts().len(), 1234, "every contact arrived");
    let requests = app.sim.requests();
    assert!(
        requests.iter().any(|r| r.status == 503),
        "faults were injected"
    );
    assert!(
        requests.iter().any(|r| r.status == 429),
        "the simulator was stricter"
    );
    for i in [4_000_000u64, 4_000_617, 4_001_233] {
        let phone = format!("+39333{i:07}");
        let c = app.sim.contact_by_phone(&phone).expect("contact present");
        assert_eq!(c["first_name"], format!("Nome{i}"));
    }
    assert!(app.store.rejects(10).await.expect("rejects").is_empty());
    app.stop().await;
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_binary(config: &std::path::Path) -> Daemon {
    Daemon(
        Command::new(env!("CARGO_BIN_EXE_spoki-sync"))
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(config.with_extension("log"))
                    .map(Stdio::from)
                    .unwrap_or_else(|_| Stdio::null()),
            )
            .spawn()
            .expect("start the daemon binary"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_backlog_then_restart_loses_nothing() {
    // Long enough that scheduling jitter on a loaded machine (the whole suite runs at once)
    // stays inside the spacing guard (5% of the interval).
    let window = Duration::from_millis(1500);
    let sim = start_sim(SimConfig {
        window,
        ..SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let window_ms = window.as_millis();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[spoki]
base_url = "{base}"
api_key = "sim-api-key"
timeout = "5s"
[spoki.rate_limits]
bulk_sync_contacts = "1/{window_ms}ms"
create_or_update_contact = "120/{window_ms}ms"
list_custom_fields = "5/{window_ms}ms"
create_custom_field = "5/{window_ms}ms"
[storage]
database = "{db}"
[csv]
inbox = "{inbox}"
settle = "100ms"
[admin]
token = "t"
listen = "127.0.0.1:0"
[webhooks]
listen = "127.0.0.1:0"
"#,
            base = sim.base_url(),
            db = dir.path().join("state.db").display(),
            inbox = dir.path().join("inbox").display(),
        ),
    )
    .expect("config");

    let total = 3000u64;
    let daemon = start_binary(&config);
    let inbox = dir.path().join("inbox");
    wait_until(Duration::from_secs(20), "the inbox", || {
        let ok = inbox.exists();
        async move { ok }
    })
    .await;
    let part = inbox.join("big.csv.part");
    std::fs::write(&part, contacts_csv(5_000_000, total, "")).expect("write");
    std::fs::rename(&part, inbox.join("big.csv")).expect("rename");

    wait_until(Duration::from_secs(20), "two bulk requests", || {
        let n = contact_writes(&sim.requests()).len();
        async move { n >= 2 }
    })
    .await;
    drop(daemon); // SIGKILL

    let before_restart = sim.contacts().len() as u64;
    assert!(before_restart < total, "killed before the backlog was done");
    let _daemon = start_binary(&config);
    wait_until(
        Duration::from_secs(40),
        "every contact in the simulator",
        || {
            let n = sim.contacts().len() as u64;
            async move { n == total }
        },
    )
    .await;
    let store = Store::open(&dir.path().join("state.db")).await.expect("db");
    wait_until(Duration::from_secs(10), "the outbox to drain", || {
        let store = store.clone();
        async move { store.outbox_depth().await.expect("depth") == 0 }
    })
    .await;
    let sent: u64 = contact_writes(&sim.requests())
        .iter()
        .map(|w| w.1 as u64)
        .sum();
    assert!(
        sent <= total + 500,
        "{sent} contacts sent for {total}: more than one batch repeated"
    );
    let throttled: Vec<_> = sim
        .requests()
        .into_iter()
        .filter(|r| r.status == 429)
        .map(|r| (r.seq, r.path, r.at_ms))
        .collect();
    let times: Vec<_> = sim
        .requests()
        .into_iter()
        .map(|r| (r.seq, r.status, r.at_ms))
        .collect();
    let log = std::fs::read_to_string(config.with_extension("log")).unwrap_or_default();
    assert!(
        throttled.is_empty(),
        "the restart kept the spacing: {throttled:?} {times:?}\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connections_lose_nothing() {
    // A third of the answers are cut while being written: Spoki applied the call, the daemon
    // sees a broken connection. Contact writes are upserts, so sending them again is harmless.
    let window = Duration::from_millis(500);
    let app = spawn_app_with(
        SimConfig {
            window,
            faults: Faults {
                drop_connection_rate: 0.3,
                ..Faults::default()
            },
            ..SimConfig::default()
        },
        window,
        |s| s.batch.max_backoff = Duration::from_millis(500),
    )
    .await;
    app.drop_file("cut.csv", &contacts_csv(6_000_000, 1234, ""));
    wait_report(&app.inbox, "processed", "cut.csv").await;
    app.wait_drained(Duration::from_secs(60)).await;
    assert_eq!(app.sim.contacts().len(), 1234, "every contact arrived");
    for i in [6_000_000u64, 6_000_617, 6_001_233] {
        let c = app
            .sim
            .contact_by_phone(&format!("+39333{i:07}"))
            .expect("contact present");
        assert_eq!(c["first_name"], format!("Nome{i}"));
    }
    assert!(app.store.rejects(10).await.expect("rejects").is_empty());
    // Reads through the same cuts: retried until answered.
    for _ in 0..5 {
        let record = app.run_command("list_tags", serde_json::json!({})).await;
        assert_eq!(record["status"], "succeeded", "{record}");
    }
    app.stop().await;
}
