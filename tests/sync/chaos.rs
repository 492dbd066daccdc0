//! Fault injection: the real binary is SIGKILLed at random moments while CSV files, mirror
//! edits and contacts webhooks are in flight, and restarted each time. Afterwards:
//! - every accepted change reached the simulator (or the rejects),
//! - no field ever went back to an older value (checked on every request Spoki received),
//! - at most one batch was repeated per kill,
//! - Spoki never had to answer 429.
//!
//! Each field has one source, so its newest value is known: CSV files set `first_name`
//! (`F<run>`), mirror edits set `last_name` (`L<run>`), the contacts webhook sets `email`
//! (`e<run>@example.com`). CI runs 3 kills; `SPOKI_KILL_RUNS=20 cargo test --test sync chaos`
//! runs the full loop.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::Rng as _;
use serde_json::{Value, json};
use sha2::Sha256;
use spoki_sync::sim::{RecordedRequest, SimConfig};

use crate::helpers::{Daemon, ScaledConfig, free_port, start_daemon, start_sim, wait_until};

const KEY: &[u8] = b"chaos webhook key";
const SPOKI_SECRET: &str = "chaos-spoki-secret";
const TOKEN: &str = "chaos-token";
const POOL: u64 = 1000;

fn phone(i: u64) -> String {
    format!("+3933370{i:05}")
}

fn write_config(
    dir: &Path,
    base: &str,
    admin: u16,
    hooks: u16,
    window_ms: u128,
) -> std::path::PathBuf {
    ScaledConfig {
        base,
        admin,
        hooks,
        window_ms,
        token: TOKEN,
        webhook_key: KEY,
        webhooks_extra: &format!("spoki_secret = \"{SPOKI_SECRET}\""),
    }
    .write(dir)
}

/// Posts a signed contacts delivery until the daemon answers 2xx (a real sender retries too).
async fn deliver(hooks: u16, id: &str, body: &[u8]) {
    let http = reqwest::Client::new();
    loop {
        let ts = chrono::Utc::now().timestamp();
        let mut mac = Hmac::<Sha256>::new_from_slice(KEY).expect("key");
        mac.update(format!("{id}.{ts}.").as_bytes());
        mac.update(body);
        let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        let sent = http
            .post(format!("http://127.0.0.1:{hooks}/webhooks/contacts"))
            .header("webhook-id", id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", format!("v1,{sig}"))
            .header("content-type", "application/json")
            .body(body.to_vec())
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        if sent.is_ok_and(|r| r.status().is_success()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn mirror_pool(db: &Path) -> sqlx::SqlitePool {
    let opts = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(db)
        .busy_timeout(Duration::from_secs(30));
    sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(opts)
        .await
        .expect("mirror")
}

/// Each contact item Spoki received, in order: (phone, field, value).
fn written(requests: &[RecordedRequest]) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for r in requests
        .iter()
        .filter(|r| r.status == 200 && r.method == "POST")
    {
        let items: Vec<&Value> = if r.path.ends_with("/contacts/sync_all/") {
            r.body
                .as_array()
                .map(|a| a.iter().collect())
                .unwrap_or_default()
        } else if r.path.ends_with("/contacts/sync/") {
            vec![&r.body]
        } else {
            continue;
        };
        for item in items {
            let Some(p) = item["phone"].as_str() else {
                continue;
            };
            for field in ["first_name", "last_name", "email"] {
                if let Some(v) = item[field].as_str() {
                    out.push((p.to_owned(), field.to_owned(), v.to_owned()));
                }
            }
        }
    }
    out
}

/// The run a value was written in: `F007` → 7, `e7@…` → 7.
fn run_of(value: &str) -> Option<u32> {
    let digits: String = value
        .chars()
        .skip(1)
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_kills_during_csv_mirror_and_webhook_traffic_lose_nothing() {
    let runs: u32 = std::env::var("SPOKI_KILL_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let window = Duration::from_millis(1500);
    // Slow answers keep requests in flight longer, and one write in ten is answered only after
    // the client gave up (the write happened): kills land in those windows too.
    let sim = start_sim(SimConfig {
        window,
        faults: spoki_sync::sim::Faults {
            latency_ms: 150,
            drop_after_write_rate: 0.1,
            late_answer_delay_ms: 3500,
            ..spoki_sync::sim::Faults::default()
        },
        ..SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().expect("dir");
    let (admin, hooks) = (free_port(), free_port());
    sim.set_event_webhook(
        Some(format!("http://127.0.0.1:{hooks}/webhooks/spoki")),
        SPOKI_SECRET,
    );
    let config = write_config(
        dir.path(),
        &sim.base_url(),
        admin,
        hooks,
        window.as_millis(),
    );
    let inbox = dir.path().join("inbox");
    let db = dir.path().join("state.db");
    let mut daemon: Daemon = start_daemon(&config, &[]);
    wait_until(Duration::from_secs(20), "the inbox", || {
        let ok = inbox.exists();
        async move { ok }
    })
    .await;

    // Newest accepted value per (phone, field).
    let mut expected: HashMap<(String, &'static str), String> = HashMap::new();
    let mut accepted_changes = 0u64;
    let mut rng = rand::rng();
    for run in 0..runs {
        // CSV: 600 contacts get first_name F<run>, plus two bad rows.
        let mut csv = String::from("telefono;nome\n");
        for k in 0..600u64 {
            let i = (u64::from(run) * 137 + k * 7) % POOL;
            csv.push_str(&format!("{};F{run:03}\n", phone(i)));
            expected.insert((phone(i), "first_name"), format!("F{run:03}"));
        }
        csv.push_str("12;Bad\nnot a phone;Bad\n");
        accepted_changes += 600;
        let name = format!("run{run:03}.csv");
        std::fs::write(inbox.join(format!("{name}.part")), csv).expect("csv");
        std::fs::rename(inbox.join(format!("{name}.part")), inbox.join(&name)).expect("rename");

        // Mirror: rows already there get last_name L<run>; a few new rows are inserted.
        let pool = mirror_pool(&db).await;
        let present: Vec<(String,)> =
            sqlx::query_as("SELECT phone FROM contacts ORDER BY random() LIMIT 40")
                .fetch_all(&pool)
                .await
                .unwrap_or_default();
        for (p,) in &present {
            let done = sqlx::query("UPDATE contacts SET last_name = ? WHERE phone = ?")
                .bind(format!("L{run:03}"))
                .bind(p)
                .execute(&pool)
                .await
                .map(|r| r.rows_affected())
                .unwrap_or(0);
            if done == 1 {
                expected.insert((p.clone(), "last_name"), format!("L{run:03}"));
                accepted_changes += 1;
            }
        }
        for k in 0..5u64 {
            let p = format!("+3933371{:05}", u64::from(run) * 10 + k);
            let done =
                sqlx::query("INSERT OR IGNORE INTO contacts (phone, last_name) VALUES (?, ?)")
                    .bind(&p)
                    .bind(format!("L{run:03}"))
                    .execute(&pool)
                    .await
                    .map(|r| r.rows_affected())
                    .unwrap_or(0);
            if done == 1 {
                expected.insert((p, "last_name"), format!("L{run:03}"));
                accepted_changes += 1;
            }
        }
        pool.close().await;

        // Contacts webhook: 20 contacts get email e<run>@example.com.
        let contacts: Vec<Value> = (0..20u64)
            .map(|k| {
                let i = (u64::from(run) * 53 + k * 11) % POOL;
                json!({"phone": phone(i), "email": format!("e{run:03}@example.com")})
            })
            .collect();
        let body = serde_json::to_vec(&json!({ "contacts": contacts })).expect("json");
        let hook = tokio::spawn(async move {
            deliver(hooks, &format!("run-{run}"), &body).await;
        });

        // Kill at a random moment, restart at once.
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..3000))).await;
        daemon.signal("KILL");
        let _ = tokio::task::block_in_place(|| daemon.child.wait());
        daemon = start_daemon(&config, &[]);
        hook.await.expect("webhook task");
        for k in 0..20u64 {
            let i = (u64::from(run) * 53 + k * 11) % POOL;
            expected.insert((phone(i), "email"), format!("e{run:03}@example.com"));
        }
        accepted_changes += 20;
        // The next file waits until this one is accepted (moved to processed/), so files are
        // accepted in order.
        wait_until(
            Duration::from_secs(60),
            &format!("{name} processed"),
            || {
                let done = std::fs::read_dir(inbox.join("processed"))
                    .map(|d| {
                        d.flatten().any(|e| {
                            e.file_name()
                                .to_string_lossy()
                                .ends_with(&format!("-{name}"))
                        })
                    })
                    .unwrap_or(false);
                async move { done }
            },
        )
        .await;
    }

    // Everything accepted reaches Spoki with its newest value.
    wait_until(
        Duration::from_secs(120),
        "every newest value in Spoki",
        || {
            let ok = expected.iter().all(|((p, field), v)| {
                sim.contact_by_phone(p)
                    .is_some_and(|c| c[*field] == v.as_str())
            });
            async move { ok }
        },
    )
    .await;

    // No field ever went back: per (phone, field) the run numbers written never decrease.
    let requests = sim.requests();
    let mut last: BTreeMap<(String, String), u32> = BTreeMap::new();
    for (p, field, value) in written(&requests) {
        let Some(run) = run_of(&value) else { continue };
        let before = last.insert((p.clone(), field.clone()), run);
        assert!(
            before.is_none_or(|b| b <= run),
            "{p} {field} went back from run {before:?} to {run}"
        );
    }
    // At most one batch repeated per kill (merged changes only lower the count).
    let contact_items: u64 = requests
        .iter()
        .filter(|r| r.status == 200 && r.method == "POST")
        .map(|r| {
            if r.path.ends_with("/contacts/sync_all/") {
                r.body.as_array().map_or(0, |a| a.len() as u64)
            } else if r.path.ends_with("/contacts/sync/") {
                1
            } else {
                0
            }
        })
        .sum();
    assert!(contact_items > 0);
    assert!(
        contact_items <= accepted_changes + 500 * u64::from(runs),
        "{contact_items} contacts sent for {accepted_changes} changes and {runs} kills"
    );
    // The bad rows became rejects.
    let store = spoki_sync::store::Store::open(&db).await.expect("db");
    let rejects = store.rejects(1000).await.expect("rejects");
    assert!(
        rejects.iter().filter(|r| r.source == "csv").count() >= 2 * runs as usize,
        "{} rejects",
        rejects.len()
    );
    let timeline: Vec<(u64, String, u16)> = requests
        .iter()
        .filter(|r| r.method != "GET")
        .map(|r| (r.at_ms, r.path.clone(), r.status))
        .collect();
    assert_eq!(
        sim.throttled_count(),
        0,
        "no rate limit exceeded: {timeline:?}"
    );
}

/// A small tmpfs mounted for the test, unmounted when dropped.
struct TinyDisk(std::path::PathBuf);

impl TinyDisk {
    fn mount(at: &Path, size: &str) -> Result<TinyDisk, String> {
        std::fs::create_dir_all(at).map_err(|e| e.to_string())?;
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(TinyDisk(at.to_path_buf()))
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        }
    }
}

impl Drop for TinyDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .args(["-l"])
            .arg(&self.0)
            .status();
    }
}

/// Fills the file system holding `dir` with one file; returns its path.
fn fill(dir: &Path) -> std::path::PathBuf {
    use std::io::Write as _;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).expect("filler");
    let chunk = vec![0u8; 16 * 1024];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
    path
}

/// A daemon configuration whose database sits on a 4 MB tmpfs; `None` (with SKIPPED
/// printed) where a tmpfs cannot be mounted. The disk is unmounted before the folder goes.
struct DiskSetup {
    disk: TinyDisk,
    dir: tempfile::TempDir,
    sim: spoki_sync::sim::SimHandle,
    admin: u16,
    hooks: u16,
    config: std::path::PathBuf,
}

async fn on_tiny_disk(window: Duration) -> Option<DiskSetup> {
    let dir = tempfile::tempdir().expect("dir");
    let disk = match TinyDisk::mount(&dir.path().join("disk"), "4m") {
        Ok(d) => d,
        Err(why) => {
            println!("SKIPPED: cannot mount a small tmpfs here ({why})");
            return None;
        }
    };
    let sim = start_sim(SimConfig {
        window,
        ..SimConfig::default()
    })
    .await;
    let (admin, hooks) = (free_port(), free_port());
    let config = write_config(
        dir.path(),
        &sim.base_url(),
        admin,
        hooks,
        window.as_millis(),
    );
    // The database goes on the small disk, the inbox stays on the big one.
    let text = std::fs::read_to_string(&config).expect("config").replace(
        &format!("database = \"{}\"", dir.path().join("state.db").display()),
        &format!("database = \"{}\"", disk.0.join("state.db").display()),
    );
    std::fs::write(&config, text).expect("config");
    Some(DiskSetup {
        disk,
        dir,
        sim,
        admin,
        hooks,
        config,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stops_input_and_everything_arrives_once_space_returns() {
    let Some(setup) = on_tiny_disk(Duration::from_millis(1000)).await else {
        return;
    };
    let DiskSetup {
        disk,
        dir,
        sim,
        admin,
        hooks,
        config,
    } = &setup;
    let (admin, hooks) = (*admin, *hooks);
    let daemon = start_daemon(config, &[]);
    let inbox = dir.path().join("inbox");
    wait_until(Duration::from_secs(20), "the daemon", || async move {
        reqwest::get(format!("http://127.0.0.1:{admin}/healthz"))
            .await
            .is_ok()
    })
    .await;

    let filler = fill(&disk.0);
    let mut csv = String::from("telefono;nome\n");
    for i in 0..2000u64 {
        csv.push_str(&format!("+39333720{i:04};Disk{i}\n"));
    }
    std::fs::write(inbox.join("full.csv.part"), &csv).expect("csv");
    std::fs::rename(inbox.join("full.csv.part"), inbox.join("full.csv")).expect("rename");
    wait_until(Duration::from_secs(20), "the clear error", || {
        let seen = daemon.log().contains("cannot be written");
        async move { seen }
    })
    .await;
    // Nothing was taken: the file waits in the inbox, Spoki has none of it.
    assert!(
        inbox.join("full.csv").exists(),
        "the file stays in the inbox"
    );
    assert!(
        !inbox
            .join("failed")
            .read_dir()
            .is_ok_and(|mut d| d.next().is_some())
    );
    assert!(sim.contact_by_phone("+393337200000").is_none());
    // A webhook is refused with 503 rather than accepted and lost.
    let body = br#"{"contacts":[{"phone":"+393337299999"}]}"#;
    let ts = chrono::Utc::now().timestamp();
    let mut mac = Hmac::<Sha256>::new_from_slice(KEY).expect("key");
    mac.update(format!("disk-1.{ts}.").as_bytes());
    mac.update(body);
    let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    let answer = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{hooks}/webhooks/contacts"))
        .header("webhook-id", "disk-1")
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", format!("v1,{sig}"))
        .body(body.to_vec())
        .send()
        .await
        .expect("answer");
    assert_eq!(answer.status(), 503);

    // Space returns: everything goes through.
    std::fs::remove_file(filler).expect("free space");
    wait_until(
        Duration::from_secs(60),
        "all 2,000 contacts in Spoki",
        || {
            let n = sim.contacts().len();
            async move { n == 2000 }
        },
    )
    .await;
    assert!(!inbox.join("full.csv").exists());
    drop(daemon);
}

fn remount(at: &Path, mode: &str) {
    let ok = std::process::Command::new("mount")
        .args(["-o", &format!("remount,{mode}")])
        .arg(at)
        .status()
        .expect("mount")
        .success();
    assert!(ok, "remount {mode}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_database_is_refused_clearly_and_works_once_writable() {
    let Some(setup) = on_tiny_disk(Duration::from_millis(1000)).await else {
        return;
    };
    let DiskSetup {
        disk,
        config,
        admin,
        ..
    } = &setup;
    let admin = *admin;
    let db = disk.0.join("state.db");
    let run_once = |expect_up: bool| {
        let mut daemon = start_daemon(config, &[]);
        if expect_up {
            // Up to 60 s: a loaded machine can be slow to start the binary.
            let up = daemon.wait_healthy(admin, Duration::from_secs(60));
            daemon.signal("TERM");
            let status = daemon.child.wait().expect("exit");
            (up, status, daemon.log())
        } else {
            let status = daemon.child.wait().expect("exit");
            (false, status, daemon.log())
        }
    };
    // Create the database, then make its disk read-only.
    let (up, status, log) = tokio::task::block_in_place(|| run_once(true));
    assert!(up && status.success(), "{log}");
    remount(&disk.0, "ro");
    // Refused at start, with a clear error naming the database (systemd restarts it).
    let (_, status, log) = tokio::task::block_in_place(|| run_once(false));
    assert!(!status.success(), "must not run on a read-only database");
    assert!(log.contains("cannot open the database"), "{log}");
    assert!(log.contains(&db.display().to_string()), "{log}");
    // Writable again: it runs.
    remount(&disk.0, "rw");
    let (up, status, log) = tokio::task::block_in_place(|| run_once(true));
    assert!(up && status.success(), "{log}");
}
