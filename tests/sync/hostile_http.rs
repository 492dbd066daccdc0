//! Hostile clients at both HTTP doors: a flood of half-sent requests, a flood of unsigned
//! webhooks, bodies too large or too slow, malformed query strings and paths, retried
//! commands, huge params and listings.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use spoki_sync::config::Secret;
use spoki_sync::sim::{SimConfig, SimHandle};

use crate::helpers::{Daemon, free_port, spawn_app, spawn_app_with, start_sim, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_spoki-sync");
const TOKEN: &str = "hostile-test-token";
const KEY: &[u8] = b"hostile webhook key";

fn whsec() -> String {
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(KEY)
    )
}

/// A config for the real binary against `sim`, with fixed ports.
fn write_config(dir: &Path, sim: &SimHandle, admin: u16, hooks: u16) -> PathBuf {
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[spoki]
base_url = "{base}"
api_key = "sim-api-key"
timeout = "5s"
[storage]
database = "{db}"
[csv]
inbox = "{inbox}"
[admin]
token = "{TOKEN}"
listen = "127.0.0.1:{admin}"
[webhooks]
listen = "127.0.0.1:{hooks}"
secret = "{secret}"
"#,
            base = sim.base_url(),
            db = dir.join("state.db").display(),
            inbox = dir.join("inbox").display(),
            secret = whsec(),
        ),
    )
    .expect("write config");
    path
}

/// The real binary with at most 1024 descriptors (the usual soft limit), logging to a file.
fn start_limited(config: &Path) -> Daemon {
    let log = config.with_extension("log");
    let child = std::process::Command::new("sh")
        .args([
            "-c",
            "ulimit -n 1024 && exec \"$0\" \"$@\"",
            BIN,
            "run",
            "--config",
        ])
        .arg(config)
        .env("RUST_LOG", "info")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("start the daemon");
    Daemon { child, log }
}

async fn wait_healthy(admin: u16) {
    wait_until(Duration::from_secs(20), "the admin API", || async move {
        reqwest::get(format!("http://127.0.0.1:{admin}/healthz"))
            .await
            .is_ok()
    })
    .await;
}

/// The Standard Webhooks headers for `body`.
fn signed(req: reqwest::RequestBuilder, id: &str, body: &[u8]) -> reqwest::RequestBuilder {
    let ts = chrono::Utc::now().timestamp();
    let mut mac = Hmac::<Sha256>::new_from_slice(KEY).expect("key");
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(body);
    let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    req.header("webhook-id", id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", format!("v1,{sig}"))
        .body(body.to_vec())
}

/// The value of a Prometheus sample, 0 when absent.
fn sample(metrics: &str, name_and_labels: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_half_requests_on_the_webhook_port_leaves_the_admin_api_answering() {
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().expect("dir");
    let (admin, hooks) = (free_port(), free_port());
    let daemon = start_limited(&write_config(dir.path(), &sim, admin, hooks));
    wait_healthy(admin).await;

    // 1,100 clients that send half a request line and then nothing, kept open: more than
    // the daemon's 1024 descriptors.
    let flood: Vec<TcpStream> = tokio::task::spawn_blocking(move || {
        (0..1100)
            .map(|_| {
                let mut s = TcpStream::connect(("127.0.0.1", hooks)).expect("connect");
                s.write_all(b"POST /webhooks/cont").expect("half a request");
                s
            })
            .collect()
    })
    .await
    .expect("flood");
    // Let the daemon take what it takes.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let mut latencies = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let health = http
            .get(format!("http://127.0.0.1:{admin}/healthz"))
            .send()
            .await
            .expect("/healthz answers during the flood");
        assert_eq!(health.status(), 200);
        let status = http
            .get(format!("http://127.0.0.1:{admin}/v1/status"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("/v1/status answers during the flood");
        assert_eq!(status.status(), 200);
        latencies.push(t.elapsed());
    }
    latencies.sort();
    println!(
        "admin latency (healthz + status) under the flood: median {:?}, max {:?}",
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1]
    );
    let fds = std::fs::read_dir(format!("/proc/{}/fd", daemon.child.id()))
        .map(|d| d.count())
        .unwrap_or(0);
    println!("daemon descriptors during the flood: {fds}");

    // A properly signed webhook gets through once the header timeout frees slots.
    let body = br#"{"contacts":[{"phone":"+393331112233","first_name":"Flood"}]}"#;
    let answer = signed(
        reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .expect("client")
            .post(format!("http://127.0.0.1:{hooks}/webhooks/contacts")),
        "flood-1",
        body,
    )
    .send()
    .await
    .expect("the signed webhook is answered");
    assert_eq!(answer.status(), 202, "{:?}", answer.text().await);
    drop(flood);
    assert!(
        !daemon.log().contains("Too many open files"),
        "descriptors ran out:\n{}",
        daemon.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_unsigned_webhooks_give_a_few_log_lines_and_a_metric_of_1000() {
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().expect("dir");
    let (admin, hooks) = (free_port(), free_port());
    let daemon = start_limited(&write_config(dir.path(), &sim, admin, hooks));
    wait_healthy(admin).await;
    let http = reqwest::Client::new();
    for i in 0..1000 {
        let answer = http
            .post(format!("http://127.0.0.1:{hooks}/webhooks/contacts"))
            .body(format!(r#"{{"contacts":[{{"phone":"+39333{i:07}"}}]}}"#))
            .send()
            .await
            .expect("answered");
        assert_eq!(answer.status(), 401);
    }
    let metrics = http
        .get(format!("http://127.0.0.1:{admin}/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert_eq!(
        sample(
            &metrics,
            "spoki_sync_webhook_refused_total{reason=\"unsigned\"}"
        ),
        1000.0,
        "{metrics}"
    );
    let lines = daemon
        .log()
        .lines()
        .filter(|l| l.contains("webhook refused"))
        .count();
    assert!(
        (1..=5).contains(&lines),
        "{lines} log lines for 1,000 refusals:\n{}",
        daemon.log()
    );
}

/// Status and JSON body of a request; a body that is not JSON fails the test.
async fn json_answer(req: reqwest::RequestBuilder) -> (u16, Value) {
    let resp = req.send().await.expect("answered");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    let body: Value = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("{status}: body is not JSON: {text:?}"));
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_answer_is_json_on_both_listeners() {
    let app = spawn_app_with(SimConfig::default(), Duration::from_secs(1), |s| {
        s.webhooks.secret = Some(Secret::new(whsec()));
    })
    .await;
    let big = vec![b'x'; 3 * 1024 * 1024];
    let hooks = |path: &str| format!("http://{}{path}", app.webhooks);
    let cases: Vec<(&str, reqwest::RequestBuilder, u16)> = vec![
        (
            "admin: a body over the limit",
            app.admin_req(reqwest::Method::POST, "/v1/commands")
                .body(big.clone()),
            413,
        ),
        (
            "admin: a bad query string",
            app.admin_req(reqwest::Method::GET, "/v1/commands?limit=abc"),
            400,
        ),
        (
            "admin: a path that is not UTF-8",
            app.admin_req(reqwest::Method::GET, "/v1/commands/%FF%FE"),
            400,
        ),
        (
            "admin: an unknown route",
            app.admin_req(reqwest::Method::GET, "/v2/nothing"),
            404,
        ),
        (
            "admin: a wrong method",
            app.admin_req(reqwest::Method::DELETE, "/v1/status"),
            405,
        ),
        (
            "webhooks: a body over the limit",
            app.http.post(hooks("/webhooks/contacts")).body(big.clone()),
            413,
        ),
        (
            "webhooks: a wrong method",
            app.http.get(hooks("/webhooks/contacts")),
            405,
        ),
        (
            "webhooks: an unknown route",
            app.http.post(hooks("/nothing")),
            404,
        ),
    ];
    for (what, req, want) in cases {
        let (status, body) = json_answer(req).await;
        assert_eq!(status, want, "{what}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{what}: {body}"
        );
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_by_the_header_and_body_timeouts() {
    let app = spawn_app_with(SimConfig::default(), Duration::from_secs(1), |s| {
        s.webhooks.limits.header_timeout = Duration::from_secs(1);
        s.webhooks.limits.body_timeout = Duration::from_secs(1);
        s.webhooks.secret = Some(Secret::new(whsec()));
    })
    .await;
    let addr = app.webhooks;
    tokio::task::spawn_blocking(move || {
        // Half a request head: the daemon closes the connection.
        let mut half = TcpStream::connect(addr).expect("connect");
        half.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        half.write_all(b"POST /webhooks/contacts HTTP/1.1\r\nHost: x\r\n")
            .expect("write");
        let mut buf = Vec::new();
        let read = half.read_to_end(&mut buf);
        assert!(
            read.is_ok(),
            "closed by the daemon, not by our read timeout: {read:?}"
        );
        // A whole head, then a body that never comes: 408 in JSON.
        let mut slow = TcpStream::connect(addr).expect("connect");
        slow.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        slow.write_all(
            b"POST /webhooks/contacts HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"con",
        )
        .expect("write");
        let mut answer = String::new();
        let _ = slow.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("{\"error\":"), "{answer}");
    })
    .await
    .expect("slow clients");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_idempotency_key_returns_the_first_command_queued_once() {
    let app = spawn_app(Duration::from_secs(1)).await;
    let post = |key: &str, params: Value| {
        app.admin_req(reqwest::Method::POST, "/v1/commands")
            .header("Idempotency-Key", key)
            .json(&json!({"action": "list_tags", "params": params}))
    };
    let (s1, first) = json_answer(post("retry-1", json!({}))).await;
    let (s2, second) = json_answer(post("retry-1", json!({}))).await;
    assert_eq!((s1, s2), (202, 202), "{first} {second}");
    assert_eq!(first["id"], second["id"], "the first command is returned");
    let (s3, other) = json_answer(post("retry-1", json!({"page": 2}))).await;
    assert_eq!(s3, 422, "a key reused for other params: {other}");
    assert_eq!(other["id"], first["id"]);
    let (_, list) = json_answer(app.admin_req(reqwest::Method::GET, "/v1/commands")).await;
    let n = list["commands"].as_array().map_or(0, Vec::len);
    assert_eq!(n, 1, "queued once: {list}");
    // Without the header every POST queues its own.
    let (_, a) = app.submit("list_tags", json!({})).await;
    assert_ne!(a["id"], first["id"]);
    app.stop().await;
}

/// 500 contacts like a CRM export: names, e-mail, language, four custom fields, each field
/// value padded with `pad` more characters.
fn contacts(pad: usize) -> Value {
    let filler = "x".repeat(pad);
    Value::Array(
        (0..500)
            .map(|i| {
                json!({
                    "phone": format!("+39333{i:07}"),
                    "first_name": format!("Giovanna{i}"),
                    "last_name": format!("Bianchi-Esposito{i}"),
                    "email": format!("giovanna.bianchi{i}@example.com"),
                    "language": "it",
                    "custom_fields": {
                        "ORDER_ID": format!("A-2024-{i:06}"),
                        "CITTA": "Reggio nell'Emilia",
                        "CUSTOMER_SINCE": "2019-04-12",
                        "NOTE": format!("cliente fedele, preferisce WhatsApp{filler}"),
                    },
                })
            })
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn params_over_1_mib_are_refused_and_listings_stay_small_and_page() {
    let app = spawn_app(Duration::from_secs(1)).await;
    let realistic = json!({"contacts": contacts(0)});
    println!(
        "a realistic 500-contact bulk_sync_contacts: {} bytes of params",
        realistic.to_string().len()
    );
    let (status, _) = app.submit("bulk_sync_contacts", realistic).await;
    assert_eq!(status, 202);
    // About 1.2 MiB of params (under the 2 MiB body limit): refused, naming the limit.
    let (status, answer) = app
        .submit("bulk_sync_contacts", json!({"contacts": contacts(2000)}))
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .is_some_and(|e| e.contains("1 MiB")),
        "{answer}"
    );
    // Two commands of about 0.9 MiB each: the listing does not carry their params.
    let mut ids = Vec::new();
    for _ in 0..2 {
        let (status, answer) = app
            .submit("bulk_sync_contacts", json!({"contacts": contacts(1500)}))
            .await;
        assert_eq!(status, 202, "{answer}");
        ids.push(answer["id"].as_str().expect("id").to_owned());
    }
    let text = app
        .admin_req(reqwest::Method::GET, "/v1/commands")
        .send()
        .await
        .expect("listing")
        .text()
        .await
        .expect("text");
    assert!(text.len() < 64 * 1024, "listing of {} bytes", text.len());
    let list: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(list["commands"].as_array().map(Vec::len), Some(3));
    assert!(list["commands"][0].get("params").is_none());
    // Paging: newest first, then on from the last one seen.
    let (_, page1) = json_answer(app.admin_req(reqwest::Method::GET, "/v1/commands?limit=1")).await;
    assert_eq!(page1["commands"][0]["id"], ids[1].as_str());
    let (_, page2) = json_answer(app.admin_req(
        reqwest::Method::GET,
        &format!("/v1/commands?limit=1&before={}", ids[1]),
    ))
    .await;
    assert_eq!(page2["commands"][0]["id"], ids[0].as_str());
    // The command itself still has its params.
    let one = app.command(&ids[0]).await;
    assert_eq!(
        one["params"]["contacts"].as_array().map(Vec::len),
        Some(500)
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejects_page_with_before_and_filter_by_source_and_file() {
    let app = spawn_app(Duration::from_secs(1)).await;
    app.drop_file("a.csv", b"phone\n12\n34\n56\n+393331230001\n");
    crate::helpers::wait_report(&app.inbox, "processed", "a.csv").await;
    app.drop_file("b.csv", b"phone\n78\n");
    crate::helpers::wait_report(&app.inbox, "processed", "b.csv").await;
    let get = |q: String| {
        let req = app.admin_req(reqwest::Method::GET, &format!("/v1/rejects{q}"));
        async move {
            let (status, body) = json_answer(req).await;
            assert_eq!(status, 200, "{body}");
            body["rejects"].as_array().cloned().expect("rejects")
        }
    };
    let all = get(String::new()).await;
    assert_eq!(all.len(), 4, "{all:?}");
    let ids: Vec<i64> = all.iter().map(|r| r["id"].as_i64().expect("id")).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    let page = get(format!("?limit=2&before={}", ids[1])).await;
    let paged: Vec<i64> = page.iter().map(|r| r["id"].as_i64().expect("id")).collect();
    assert_eq!(paged, ids[2..4].to_vec());
    let of_a = get("?file=a.csv&source=csv".into()).await;
    assert_eq!(of_a.len(), 3, "{of_a:?}");
    assert!(
        of_a.iter()
            .all(|r| r["key"].as_str().is_some_and(|k| k.starts_with("a.csv:")))
    );
    assert!(get("?source=webhook".into()).await.is_empty());
    app.stop().await;
}
