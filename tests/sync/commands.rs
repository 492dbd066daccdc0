//! The command queue and the admin API: validation, auth, limits, retries and restarts.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use spoki_sync::sim::{Faults, SimConfig};

use crate::helpers::{ADMIN_TOKEN, spawn_app, spawn_app_with, wait_until};

#[tokio::test]
async fn invalid_commands_get_400_naming_the_field_and_nothing_is_queued() {
    let app = spawn_app(Duration::from_millis(500)).await;
    let contacts: Vec<Value> = (0..501)
        .map(|i| json!({"phone": format!("+39333{:07}", i)}))
        .collect();
    let cases = [
        ("no_such_action", json!({}), "action"),
        (
            "create_ticket",
            json!({"title": "Broken", "status": "Open"}),
            "contact_phone",
        ),
        (
            "create_or_update_contact",
            json!({"phone": "333 1234567"}),
            "phone",
        ),
        (
            "bulk_sync_contacts",
            json!({ "contacts": contacts }),
            "contacts",
        ),
        ("retrieve_contact", json!({"id": "seven"}), "id"),
        (
            "create_ticket",
            json!({"contact_phone": "+393331234567", "title": "x", "status": "Solved"}),
            "status",
        ),
        (
            "list_reports",
            json!({"granularity": "Week", "start_date": "2026-01-01", "end_date": "2026-01-31"}),
            "granularity",
        ),
    ];
    for (action, params, field) in cases {
        let (status, answer) = app.submit(action, params).await;
        assert_eq!(status, 400, "{action}: {answer}");
        let message = answer["error"].as_str().expect("error text");
        assert!(message.starts_with("invalid command"), "{message}");
        assert_eq!(answer["field"], field, "{action}: {answer}");
    }
    // The missing field is named in the message.
    let (_, answer) = app
        .submit(
            "create_ticket",
            json!({"title": "Broken", "status": "Open"}),
        )
        .await;
    assert!(
        answer["error"]
            .as_str()
            .is_some_and(|m| m.contains("contact_phone")),
        "{answer}"
    );
    // A body that is not a command at all.
    let resp = app
        .admin_req(Method::POST, "/v1/commands")
        .body("not json")
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status(), 400);

    let listed: Value = app
        .admin_req(Method::GET, "/v1/commands")
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .expect("json");
    assert_eq!(listed["commands"], json!([]));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        app.sim.requests().is_empty(),
        "nothing may reach Spoki: {:?}",
        app.sim.requests()
    );
    app.stop().await;
}

#[tokio::test]
async fn every_route_but_healthz_needs_the_token() {
    let app = spawn_app(Duration::from_millis(500)).await;
    let routes = [
        (Method::GET, "/metrics"),
        (Method::GET, "/v1/status"),
        (Method::POST, "/v1/commands"),
        (Method::GET, "/v1/commands"),
        (Method::GET, "/v1/commands/some-id"),
        (Method::GET, "/v1/rejects"),
        (Method::POST, "/v1/sync/pull"),
        (Method::GET, "/no/such/route"),
    ];
    for (method, path) in routes {
        let url = format!("http://{}{path}", app.admin);
        let none = app
            .http
            .request(method.clone(), &url)
            .send()
            .await
            .expect("answer");
        assert_eq!(none.status(), 401, "{method} {path} without a token");
        let body: Value = none.json().await.expect("JSON error");
        assert!(body["error"].is_string(), "{body}");
        let wrong = app
            .http
            .request(method.clone(), &url)
            .bearer_auth("not-the-token")
            .send()
            .await
            .expect("answer");
        assert_eq!(wrong.status(), 401, "{method} {path} with a wrong token");
        let text = wrong.text().await.expect("body");
        assert!(!text.contains(ADMIN_TOKEN), "the answer leaks the token");
    }
    let health = app
        .http
        .get(format!("http://{}/healthz", app.admin))
        .send()
        .await
        .expect("answer");
    assert_eq!(health.status(), 200);
    assert_eq!(
        health.json::<Value>().await.expect("json"),
        json!({"status": "ok"})
    );
    let status = app
        .admin_req(Method::GET, "/v1/status")
        .send()
        .await
        .expect("answer");
    assert_eq!(status.status(), 200);
    let status: Value = status.json().await.expect("json");
    for key in [
        "outbox_pending",
        "commands_pending",
        "rejected",
        "files_processed",
        "files_failed",
        "last_push_at",
        "last_pull_at",
    ] {
        assert!(status.get(key).is_some(), "status lacks {key}: {status}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_burst_never_exceeds_the_limit_and_all_succeed() {
    // Long enough that scheduling jitter on a loaded test machine stays well inside the 5%
    // spacing guard.
    let window = Duration::from_millis(2000);
    let app = spawn_app(window).await;
    let mut ids = Vec::new();
    for _ in 0..20 {
        let (status, answer) = app.submit("list_lists", json!({})).await;
        assert_eq!(status, 202, "{answer}");
        ids.push(answer["id"].as_str().expect("id").to_owned());
    }
    for id in &ids {
        let record = app.wait_command(id, Duration::from_secs(30)).await;
        assert_eq!(record["status"], "succeeded", "{record}");
        assert!(record["result"]["results"].is_array(), "{record}");
    }
    let times: Vec<u64> = app
        .sim
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path == "/api/1/lists/")
        .map(|r| r.at_ms)
        .collect();
    // Six requests in a row must span a whole window (5 per window). Measured on arrival at
    // the simulator, so a request held up on a loaded machine can make two arrive closer than
    // they left: 300 ms of such jitter is tolerated. If it made Spoki answer 429, the command
    // was retried after Retry-After and still succeeded (checked above).
    let tolerance = 300;
    for w in times.windows(6) {
        assert!(
            w[5] - w[0] + tolerance >= window.as_millis() as u64,
            "six requests within one window: {times:?}"
        );
    }
    assert!(times.len() >= 20, "{times:?}");

    // Spoki refusing for good fails the command at once, with Spoki's body.
    let contact = app
        .run_command(
            "create_or_update_contact",
            json!({"phone": "+393331234567"}),
        )
        .await;
    let contact_id = contact["result"]["id"].as_i64().expect("contact id");
    let record = app
        .run_command(
            "add_contact_operator",
            json!({"id": contact_id, "email": "nobody@example.com"}),
        )
        .await;
    assert_eq!(record["status"], "failed", "{record}");
    assert_eq!(record["attempts"], 1, "{record}");
    assert_eq!(record["error"]["code"], "spoki::3004", "{record}");
    app.stop().await;
}

#[tokio::test]
async fn server_errors_are_retried_and_a_maybe_applied_create_is_not_repeated() {
    let window = Duration::from_millis(500);
    let app = spawn_app_with(
        SimConfig {
            window,
            ..SimConfig::default()
        },
        window,
        |s| s.spoki.timeout = Duration::from_millis(400),
    )
    .await;
    // Reads through a flaky Spoki: retried until they succeed.
    app.sim.set_faults(Faults {
        error_503_rate: 0.5,
        ..Faults::default()
    });
    let mut ids = Vec::new();
    for _ in 0..6 {
        let (_, answer) = app.submit("list_tags", json!({})).await;
        ids.push(answer["id"].as_str().expect("id").to_owned());
    }
    for id in &ids {
        let record = app.wait_command(id, Duration::from_secs(60)).await;
        assert_eq!(record["status"], "succeeded", "{record}");
    }
    // A create whose answer never arrives (Spoki applied it): failed, not sent twice.
    app.sim.set_faults(Faults {
        drop_after_write_rate: 1.0,
        late_answer_delay_ms: 1500,
        ..Faults::default()
    });
    let record = app
        .run_command("create_contact_list", json!({"name": "Once only"}))
        .await;
    assert_eq!(record["status"], "failed", "{record}");
    assert!(
        record["error"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("not repeated")),
        "{record}"
    );
    let creates = app
        .sim
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/api/1/lists/")
        .count();
    assert_eq!(creates, 1);
    app.stop().await;
}

#[tokio::test]
async fn commands_queued_before_a_restart_run_after_it() {
    let window = Duration::from_millis(500);
    let app = spawn_app(window).await;
    // Spoki is down: the commands stay queued, retrying.
    app.sim.set_faults(Faults {
        error_503_rate: 1.0,
        ..Faults::default()
    });
    let mut ids = Vec::new();
    for name in ["Alpha", "Beta", "Gamma"] {
        let (status, answer) = app
            .submit(
                "create_or_update_contact",
                json!({"phone": "+393330000001", "first_name": name}),
            )
            .await;
        assert_eq!(status, 202);
        ids.push(answer["id"].as_str().expect("id").to_owned());
    }
    wait_until(Duration::from_secs(10), "a first attempt", || async {
        app.sim.requests().iter().any(|r| r.status == 503)
    })
    .await;
    let app = app.restart().await;
    app.sim.set_faults(Faults::default());
    for id in &ids {
        let record = app.wait_command(id, Duration::from_secs(60)).await;
        assert_eq!(record["status"], "succeeded", "{record}");
    }
    // Same action, queued order kept: the last name wins.
    let contact = app.sim.contact_by_phone("+393330000001").expect("contact");
    assert_eq!(contact["first_name"], "Gamma");
    app.stop().await;
}

#[tokio::test]
async fn metrics_count_requests_by_action_and_status() {
    let app = spawn_app(Duration::from_millis(500)).await;
    app.run_command("list_tags", json!({})).await;
    let text = app.metrics_text().await;
    let samples = parse_prometheus(&text);
    let requests = samples
        .get(r#"spoki_sync_spoki_requests_total{action="list_tags",status="200"}"#)
        .copied()
        .unwrap_or(0.0);
    assert!(requests >= 1.0, "{text}");
    assert!(
        samples.contains_key(r#"spoki_sync_command_queue_depth{status="queued"}"#),
        "{text}"
    );
    assert!(
        samples.contains_key(r#"spoki_sync_outbox_depth{state="pending"}"#),
        "{text}"
    );
    app.run_command("list_tags", json!({})).await;
    let again = parse_prometheus(&app.metrics_text().await);
    let after = again
        .get(r#"spoki_sync_spoki_requests_total{action="list_tags",status="200"}"#)
        .copied()
        .unwrap_or(0.0);
    assert!(
        after > requests,
        "the counter moves: {requests} then {after}"
    );
    // A contact from the inbox moves the push metrics.
    app.drop_file("m.csv", b"phone;nome\n+39 333 9990001;Metric\n");
    crate::helpers::wait_report(&app.inbox, "processed", "m.csv").await;
    app.wait_drained(Duration::from_secs(20)).await;
    let pushed = parse_prometheus(&app.metrics_text().await);
    let sent: f64 = pushed
        .iter()
        .filter(|(k, _)| k.starts_with("spoki_sync_contacts_sent_total{"))
        .map(|(_, v)| v)
        .sum();
    assert!(sent >= 1.0, "{pushed:?}");
    assert!(
        pushed
            .get("spoki_sync_last_push_timestamp_seconds")
            .is_some_and(|t| *t > 1.0e9),
        "{pushed:?}"
    );
    assert!(
        pushed
            .keys()
            .any(|k| k.starts_with("spoki_sync_batch_fill_contacts")),
        "{pushed:?}"
    );
    app.stop().await;
}

/// Prometheus text → sample name with labels → value; panics on a malformed line.
fn parse_prometheus(text: &str) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, value) = line.rsplit_once(' ').expect("`name value`");
        let value: f64 = value.parse().expect("a number");
        out.insert(name.to_owned(), value);
    }
    out
}

#[tokio::test]
async fn the_cli_queues_waits_and_shows_status() {
    let app = spawn_app(Duration::from_millis(500)).await;
    let config = app.dir().join("cli.toml");
    std::fs::write(
        &config,
        format!(
            "[admin]\nlisten = \"{}\"\ntoken = \"{ADMIN_TOKEN}\"\n",
            app.admin
        ),
    )
    .expect("write config");
    let bin = env!("CARGO_BIN_EXE_spoki-sync");
    let run = |args: Vec<String>| {
        let config = config.clone();
        async move {
            tokio::process::Command::new(bin)
                .args(&args)
                .arg("--config")
                .arg(&config)
                .output()
                .await
                .expect("run the binary")
        }
    };
    let out = run(vec![
        "cmd".into(),
        "create_contact_list".into(),
        "--params".into(),
        r#"{"name": "From the CLI"}"#.into(),
        "--wait".into(),
        "--json".into(),
    ])
    .await;
    assert!(out.status.success(), "{out:?}");
    let record: Value = serde_json::from_slice(&out.stdout).expect("JSON record");
    assert_eq!(record["status"], "succeeded");
    assert_eq!(record["result"]["name"], "From the CLI");

    let out = run(vec![
        "cmd".into(),
        "create_ticket".into(),
        "--params".into(),
        r#"{"title": "x"}"#.into(),
    ])
    .await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("contact_phone"));

    let out = run(vec!["status".into()]).await;
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("1 succeeded"), "{text}");
    let out = run(vec!["status".into(), "--json".into()]).await;
    let status: Value = serde_json::from_slice(&out.stdout).expect("JSON status");
    assert_eq!(status["commands"]["succeeded"], 1);
    app.stop().await;
}

#[tokio::test]
async fn a_contact_changed_by_a_command_is_not_judged_unchanged_later() {
    let app = spawn_app(Duration::from_millis(500)).await;
    app.drop_file("first.csv", b"phone;nome\n+39 333 5550001;Anna\n");
    crate::helpers::wait_report(&app.inbox.join(""), "processed", "first.csv").await;
    app.wait_drained(Duration::from_secs(20)).await;
    let record = app
        .run_command(
            "create_or_update_contact",
            json!({"phone": "+393335550001", "first_name": "Bea"}),
        )
        .await;
    assert_eq!(record["status"], "succeeded", "{record}");
    // The same file again: Spoki now holds "Bea", so "Anna" must be sent.
    app.drop_file("again.csv", b"phone;nome\n+39 333 5550001;Anna\n");
    let report = crate::helpers::wait_report(&app.inbox.join(""), "processed", "again.csv").await;
    assert_eq!(report["unchanged"], 0, "{report}");
    wait_until(
        Duration::from_secs(20),
        "Spoki to hold Anna again",
        || async {
            app.sim
                .contact_by_phone("+393335550001")
                .is_some_and(|c| c["first_name"] == "Anna")
        },
    )
    .await;
    app.stop().await;
}
