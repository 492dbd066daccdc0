//! The daemon as a service: the real binary under systemd's protocols (sd_notify, watchdog),
//! signals (SIGHUP reload, SIGTERM drain), `check-config`, and the unit file.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use spoki_sync::sim::{SimConfig, SimHandle};

use crate::helpers::{contacts_csv, free_port, start_daemon as start, start_sim, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_spoki-sync");
const TOKEN: &str = "service-test-token";

/// A config file for the binary against `sim`, with `extra` TOML lines in `[spoki.rate_limits]`.
fn write_config(dir: &Path, sim: &SimHandle, admin_port: u16, limits: &str) -> PathBuf {
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[spoki]
base_url = "{base}"
api_key = "sim-api-key"
timeout = "5s"
[spoki.rate_limits]
bulk_sync_contacts = "1/1500ms"
{limits}
[storage]
database = "{db}"
[csv]
inbox = "{inbox}"
settle = "100ms"
[admin]
token = "{TOKEN}"
listen = "127.0.0.1:{admin_port}"
[webhooks]
listen = "127.0.0.1:0"
"#,
            base = sim.base_url(),
            db = dir.join("state.db").display(),
            inbox = dir.join("inbox").display(),
        ),
    )
    .expect("write config");
    path
}

async fn admin(port: u16, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
    let mut req = reqwest::Client::new()
        .request(method, format!("http://127.0.0.1:{port}{path}"))
        .bearer_auth(TOKEN);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("admin API answers");
    resp.json().await.unwrap_or(Value::Null)
}

async fn wait_admin(port: u16) {
    wait_until(Duration::from_secs(20), "the admin API", || async move {
        reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
            .await
            .is_ok()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_comes_once_listening_then_watchdog_pings_and_stopping() {
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port();
    let config = write_config(dir.path(), &sim, port, "");
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind notify socket");
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let daemon = start(
        &config,
        &[
            ("NOTIFY_SOCKET", socket_path.display().to_string()),
            ("WATCHDOG_USEC", "600000".to_owned()),
        ],
    );
    let recv = |socket: &UnixDatagram| {
        let mut buf = [0u8; 256];
        let n = socket.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let first = tokio::task::block_in_place(|| recv(&socket));
    assert!(first.starts_with("READY=1"), "{first}");
    // Ready means listening: the admin API answers at once.
    let health = reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
        .await
        .expect("admin API is up when READY=1 arrives");
    assert_eq!(health.status(), 200);
    let ping = tokio::task::block_in_place(|| recv(&socket));
    assert_eq!(ping, "WATCHDOG=1");
    daemon.signal("TERM");
    let mut stopping = false;
    for _ in 0..10 {
        let msg = tokio::task::block_in_place(|| recv(&socket));
        if msg == "STOPPING=1" {
            stopping = true;
            break;
        }
    }
    assert!(stopping, "STOPPING=1 on SIGTERM");
    let mut daemon = daemon;
    let status = tokio::task::block_in_place(|| daemon.child.wait()).expect("exit");
    assert!(status.success(), "{status:?}\n{}", daemon.log());
}

/// Gaps in ms between consecutive `GET /tags/` arrivals after `from`.
fn tag_gaps(sim: &SimHandle, from: usize) -> Vec<u64> {
    let times: Vec<u64> = sim
        .requests()
        .into_iter()
        .skip(from)
        .filter(|r| r.path == "/api/1/tags/")
        .map(|r| r.at_ms)
        .collect();
    times.windows(2).map(|w| w[1] - w[0]).collect()
}

async fn burst_of_tags(port: u16, sim: &SimHandle, n: usize) -> Vec<u64> {
    let from = sim.requests().len();
    let mut ids = Vec::new();
    for _ in 0..n {
        let answer = admin(
            port,
            reqwest::Method::POST,
            "/v1/commands",
            Some(json!({"action": "list_tags", "params": {}})),
        )
        .await;
        ids.push(answer["id"].as_str().expect("queued").to_owned());
    }
    for id in &ids {
        wait_until(Duration::from_secs(30), "the command", || async {
            admin(
                port,
                reqwest::Method::GET,
                &format!("/v1/commands/{id}"),
                None,
            )
            .await["status"]
                == "succeeded"
        })
        .await;
    }
    tag_gaps(sim, from)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_changes_the_pace_and_a_broken_file_keeps_the_old_one() {
    let sim = start_sim(SimConfig {
        window: Duration::from_secs(1),
        default_limit: 1000,
        ..SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port();
    let config = write_config(dir.path(), &sim, port, r#"list_tags = "1/2s""#);
    let daemon = start(&config, &[]);
    wait_admin(port).await;
    let slow = burst_of_tags(port, &sim, 3).await;
    assert!(slow.iter().all(|g| *g >= 1500), "1 per 2 s: {slow:?}");

    write_config(dir.path(), &sim, port, r#"list_tags = "50/1s""#);
    daemon.signal("HUP");
    wait_until(Duration::from_secs(10), "the reload", || async {
        daemon.log().contains("configuration reloaded")
    })
    .await;
    let fast = burst_of_tags(port, &sim, 4).await;
    let mean = fast.iter().sum::<u64>() / fast.len() as u64;
    assert!(mean < 1000, "50 per second after the reload: {fast:?}");

    // A broken file: refused, naming the key; the running limits stay.
    std::fs::write(
        &config,
        std::fs::read_to_string(&config)
            .expect("config")
            .replace(r#"list_tags = "50/1s""#, r#"list_tags = "often""#),
    )
    .expect("break config");
    daemon.signal("HUP");
    wait_until(Duration::from_secs(10), "the refusal", || async {
        daemon.log().contains("NOT reloaded")
    })
    .await;
    assert!(
        daemon.log().contains("spoki.rate_limits.list_tags"),
        "{}",
        daemon.log()
    );
    let still_fast = burst_of_tags(port, &sim, 4).await;
    let mean = still_fast.iter().sum::<u64>() / still_fast.len() as u64;
    assert!(mean < 1000, "the old limits stay: {still_fast:?}");
    // The same through the admin API.
    let refused = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/v1/reload"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("answer");
    assert_eq!(refused.status(), 400);
    let body: Value = refused.json().await.expect("json");
    assert!(
        body.to_string().contains("spoki.rate_limits.list_tags"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_backlog_exits_0_within_10_s_and_a_restart_finishes() {
    let sim = start_sim(SimConfig {
        window: Duration::from_millis(1500),
        ..SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port();
    let config = write_config(dir.path(), &sim, port, "");
    let mut daemon = start(&config, &[]);
    wait_admin(port).await;
    let inbox = dir.path().join("inbox");
    let total = 2200u64;
    std::fs::write(
        inbox.join("big.csv.part"),
        contacts_csv(5_000_000, total, ""),
    )
    .expect("csv");
    std::fs::rename(inbox.join("big.csv.part"), inbox.join("big.csv")).expect("rename");
    wait_until(
        Duration::from_secs(30),
        "the first bulk request",
        || async {
            sim.requests()
                .iter()
                .any(|r| r.path.ends_with("/contacts/sync_all/") && r.status == 200)
        },
    )
    .await;
    let asked = Instant::now();
    daemon.signal("TERM");
    let status = tokio::task::block_in_place(|| daemon.child.wait()).expect("exit");
    let took = asked.elapsed();
    assert!(status.success(), "exit 0: {status:?}\n{}", daemon.log());
    assert!(
        took < Duration::from_secs(10),
        "a stop must end within 10 s, took {took:?}"
    );
    assert!((sim.contacts().len() as u64) < total, "stopped mid-backlog");
    let _daemon = start(&config, &[]);
    wait_until(
        Duration::from_secs(60),
        "every contact in Spoki",
        || async { sim.contacts().len() as u64 == total },
    )
    .await;
}

#[test]
fn check_config_names_each_bad_key_and_exits_78() {
    let dir = tempfile::tempdir().expect("dir");
    let good = format!(
        "[spoki]\napi_key = \"k\"\n[admin]\ntoken = \"t\"\n[storage]\ndatabase = \"{}\"\n\
         [csv]\ninbox = \"{}\"\n",
        dir.path().join("db.sqlite").display(),
        dir.path().join("inbox").display()
    );
    let run = |text: &str| {
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).expect("write");
        Command::new(BIN)
            .args(["check-config", "--config"])
            .arg(&path)
            .output()
            .expect("run check-config")
    };
    let ok = run(&good);
    assert!(ok.status.success(), "{ok:?}");
    let cases = [
        ("[spoki]\ntimeout = \"soon\"\n", "spoki.timeout"),
        ("[spoki]\nbase_url = \"ftp://x\"\n", "spoki.base_url"),
        (
            "[spoki.rate_limits]\nbulk_sync_contacts = \"fast\"\n",
            "spoki.rate_limits.bulk_sync_contacts",
        ),
        (
            "[spoki.rate_limits]\nno_such_action = \"1/1s\"\n",
            "spoki.rate_limits.no_such_action",
        ),
        ("[csv]\ndefault_region = \"XX\"\n", "csv.default_region"),
        (
            "[mirror]\nmax_delete_share = \"150%\"\n",
            "mirror.max_delete_share",
        ),
        (
            "[mirror]\nconflict_winner = \"both\"\n",
            "mirror.conflict_winner",
        ),
        ("[admin]\nlisten = \"localhost\"\n", "admin.listen"),
        ("[webhooks]\nsecret = \"plain\"\n", "webhooks.secret"),
        (
            "[storage]\ndatabase = \"/proc/no/such/db.sqlite\"\n",
            "storage.database",
        ),
        ("[csv]\ninbox = \"/proc/inbox\"\n", "csv.inbox"),
        ("[surprise]\nkey = 1\n", "surprise"),
    ];
    for (bad, key) in cases {
        // The broken section replaces the good one of the same name, or is added.
        let text = merge_toml(&good, bad);
        let out = run(&text);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{key}: {stderr}");
        assert!(stderr.contains(key), "{key} not named: {stderr}");
    }
    // Several bad keys at once: every one is named.
    let out = run(&merge_toml(
        &good,
        "[spoki]\ntimeout = \"soon\"\n[admin]\nlisten = \"nowhere\"\n",
    ));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78));
    assert!(
        stderr.contains("spoki.timeout") && stderr.contains("admin.listen"),
        "{stderr}"
    );
}

/// `good` with the keys of `bad` set on top (same sections merged).
fn merge_toml(good: &str, bad: &str) -> String {
    let mut table: toml_edit_like::Table = toml_edit_like::parse(good);
    for (section, entries) in toml_edit_like::parse(bad) {
        table.entry(section).or_default().extend(entries);
    }
    toml_edit_like::render(&table)
}

/// Just enough TOML (sections of `key = value` lines) for these tests.
mod toml_edit_like {
    use std::collections::BTreeMap;

    pub type Table = BTreeMap<String, BTreeMap<String, String>>;

    pub fn parse(text: &str) -> Table {
        let mut out = Table::new();
        let mut section = String::new();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.to_owned();
                out.entry(section.clone()).or_default();
            } else if let Some((k, v)) = line.split_once('=') {
                out.entry(section.clone())
                    .or_default()
                    .insert(k.trim().to_owned(), v.trim().to_owned());
            }
        }
        out
    }

    pub fn render(t: &Table) -> String {
        let mut s = String::new();
        for (section, entries) in t {
            s.push_str(&format!("[{section}]\n"));
            for (k, v) in entries {
                s.push_str(&format!("{k} = {v}\n"));
            }
        }
        s
    }
}

#[test]
fn the_unit_file_passes_systemd_analyze_verify() {
    let Ok(found) = Command::new("systemd-analyze").arg("--version").output() else {
        println!("SKIPPED: systemd-analyze is not installed here");
        return;
    };
    assert!(found.status.success());
    let dir = tempfile::tempdir().expect("dir");
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/spoki-sync.service"),
    )
    .expect("unit file");
    // verify checks that the binaries exist: point it at the one just built.
    let copy = dir.path().join("spoki-sync.service");
    std::fs::write(&copy, unit.replace("/usr/local/bin/spoki-sync", BIN)).expect("copy");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("systemd-analyze verify");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=yes"])
        .arg(&copy)
        .output()
        .expect("systemd-analyze security");
    let text = String::from_utf8_lossy(&security.stdout);
    if let Some(line) = text.lines().find(|l| l.contains("Overall exposure level")) {
        println!("{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_reads_credentials_and_online_checks_the_key() {
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "[spoki]\nbase_url = \"{}\"\n[storage]\ndatabase = \"{}\"\n[csv]\ninbox = \"{}\"\n",
            sim.base_url(),
            dir.path().join("db.sqlite").display(),
            dir.path().join("inbox").display()
        ),
    )
    .expect("config");
    let creds = dir.path().join("creds");
    std::fs::create_dir(&creds).expect("creds dir");
    let check = |online: bool, with_creds: bool| {
        let mut cmd = Command::new(BIN);
        cmd.args(["check-config", "--config"]).arg(&config);
        if online {
            cmd.arg("--online");
        }
        cmd.env_remove("SPOKI_SYNC__SPOKI__API_KEY")
            .env_remove("SPOKI_SYNC__ADMIN__TOKEN");
        if with_creds {
            cmd.env("CREDENTIALS_DIRECTORY", &creds);
        } else {
            cmd.env_remove("CREDENTIALS_DIRECTORY");
        }
        cmd.output().expect("check-config")
    };
    let out = tokio::task::block_in_place(|| check(false, false));
    assert_eq!(out.status.code(), Some(78), "no secrets anywhere");
    assert!(String::from_utf8_lossy(&out.stderr).contains("spoki.api_key"));
    std::fs::write(creds.join("spoki_api_key"), "sim-api-key\n").expect("cred");
    std::fs::write(creds.join("admin_token"), "t0k3n").expect("cred");
    let out = tokio::task::block_in_place(|| check(true, true));
    assert!(out.status.success(), "{out:?}");
    std::fs::write(creds.join("spoki_api_key"), "wrong-key").expect("cred");
    let out = tokio::task::block_in_place(|| check(true, true));
    assert_eq!(out.status.code(), Some(78), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("spoki.api_key"), "{stderr}");
    assert!(!stderr.contains("wrong-key"), "the key is never printed");
    // Offline, a wrong key is not noticed.
    let out = tokio::task::block_in_place(|| check(false, true));
    assert!(out.status.success(), "{out:?}");
}
