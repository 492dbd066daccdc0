//! Inputs that used to be accepted and then lost or stalled: contacts with only a phone, a
//! lone custom value whose field Spoki refuses, contacts held up by custom fields they do not
//! use, deliveries that bring too many new codes, and fields larger than Spoki takes.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use spoki_sync::config::Settings;
use spoki_sync::sim::SimConfig;

use crate::helpers::*;

const WHSEC_KEY: &[u8] = b"nothing-lost webhook key";

fn with_webhooks(s: &mut Settings) {
    s.mirror.poll_interval = Duration::from_millis(100);
    s.webhooks.secret = Some(whsec(WHSEC_KEY));
}

async fn app_with(sim: SimConfig, extra: impl FnOnce(&mut Settings)) -> TestApp {
    let window = sim.window;
    spawn_app_with(sim, window, |s| {
        with_webhooks(s);
        extra(s);
    })
    .await
}

fn sim(window: Duration) -> SimConfig {
    SimConfig {
        window,
        ..SimConfig::default()
    }
}

/// Posts a signed `/webhooks/contacts` delivery; returns the status and the JSON answer.
async fn deliver(app: &TestApp, id: &str, body: &Value) -> (u16, Value) {
    deliver_contacts(app, WHSEC_KEY, id, body).await
}

async fn spoki_knows(app: &TestApp, phone: &str) {
    wait_until(
        Duration::from_secs(30),
        &format!("Spoki to hold {phone}"),
        || async { app.sim.contact_by_phone(phone).is_some() },
    )
    .await;
}

async fn rejects(app: &TestApp) -> Vec<Value> {
    let answer: Value = app
        .admin_req(Method::GET, "/v1/rejects?limit=1000")
        .send()
        .await
        .expect("admin API answers")
        .json()
        .await
        .expect("JSON");
    answer["rejects"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts_with_only_a_phone_are_created_from_every_source() {
    let app = app_with(sim(Duration::from_millis(500)), |_| {}).await;

    // A CSV with nothing but phones.
    app.drop_file("phones.csv", b"phone\n+393381000001\n+393381000002\n");
    let report = wait_report(&app.inbox, "processed", "phones.csv").await;
    assert_eq!(report["accepted"], 2, "{report}");
    assert_eq!(
        report["unchanged"], 0,
        "new contacts are not unchanged: {report}"
    );

    // A contacts webhook with nothing but a phone.
    let (status, answer) = deliver(
        &app,
        "msg_phone_only",
        &json!({"contacts": [{"phone": "+393381000003"}]}),
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["queued"], 1, "{answer}");
    assert_eq!(answer["unchanged"], 0, "{answer}");

    // Another program inserting a mirror row with nothing but a phone.
    let pool = app.other_program().await;
    sqlx::query("INSERT INTO contacts (phone) VALUES ('+393381000004')")
        .execute(&pool)
        .await
        .expect("insert");
    pool.close().await;

    for phone in [
        "+393381000001",
        "+393381000002",
        "+393381000003",
        "+393381000004",
    ] {
        spoki_knows(&app, phone).await;
    }
    app.wait_drained(Duration::from_secs(30)).await;

    // Once Spoki acknowledged them, the same phones again cost nothing.
    let writes_before = contact_writes(&app.sim.requests()).len();
    app.drop_file("again.csv", b"phone\n+393381000001\n+393381000002\n");
    let again = wait_report(&app.inbox, "processed", "again.csv").await;
    assert_eq!(again["unchanged"], 2, "{again}");
    let (status, answer) = deliver(
        &app,
        "msg_phone_only_again",
        &json!({"contacts": [{"phone": "+393381000003"}]}),
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(answer["unchanged"], 1, "{answer}");
    app.wait_drained(Duration::from_secs(10)).await;
    assert_eq!(contact_writes(&app.sim.requests()).len(), writes_before);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_whose_custom_field_spoki_refuses_is_reported_not_dropped_silently() {
    let app = app_with(sim(Duration::from_millis(500)), |_| {}).await;
    // ACCOUNT_NAME is one of Spoki's reserved codes: creating it is refused.
    app.drop_file("reserved.csv", b"phone;Account Name\n+393381000011;Acme\n");
    wait_report(&app.inbox, "processed", "reserved.csv").await;
    spoki_knows(&app, "+393381000011").await;
    let named = |r: &Value| {
        r["phone"] == "+393381000011"
            && r["reason"]
                .as_str()
                .is_some_and(|t| t.contains("ACCOUNT_NAME"))
    };
    wait_until(
        Duration::from_secs(20),
        "a reject naming the code",
        || async { rejects(&app).await.iter().any(named) },
    )
    .await;
    let found = rejects(&app).await.into_iter().find(|r| named(r));
    let reject = found.expect("reject");
    assert!(
        reject["key"]
            .as_str()
            .is_some_and(|k| k.starts_with("reserved.csv:")),
        "{reject}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts_without_new_codes_do_not_wait_for_custom_field_creation() {
    let app = app_with(sim(Duration::from_millis(500)), |_| {}).await;
    // Spoki refuses every custom-field creation for now (always over its limit).
    app.sim.set_limit("POST /custom-fields/", 0);
    app.drop_file(
        "new-codes.csv",
        b"phone;Colore;Taglia;Reparto\n+393381000021;rosso;M;moda\n",
    );
    wait_report(&app.inbox, "processed", "new-codes.csv").await;
    // Unrelated contacts go on meanwhile, by every route.
    app.drop_file("plain.csv", &contacts_csv(2_000_000, 3, ""));
    wait_report(&app.inbox, "processed", "plain.csv").await;
    let (status, _) = deliver(
        &app,
        "msg_plain",
        &json!({"contacts": [{"phone": "+393381000022", "first_name": "Ugo"}]}),
    )
    .await;
    assert_eq!(status, 202);
    for phone in ["+393332000000", "+393332000002", "+393381000022"] {
        spoki_knows(&app, phone).await;
    }
    assert!(
        app.sim.contact_by_phone("+393381000021").is_none(),
        "the contact that carries the new codes waits for them"
    );
    assert!(app.sim.custom_field_codes().is_empty());

    // Once Spoki takes creations again, the waiting contact follows with its values.
    app.sim.set_limit("POST /custom-fields/", 100);
    wait_until(Duration::from_secs(30), "the waiting contact", || async {
        app.sim.contact_by_phone("+393381000021").is_some_and(|c| {
            c["contactfield_set"]
                .as_array()
                .is_some_and(|f| f.len() == 3)
        })
    })
    .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inputs_with_too_many_new_codes_are_refused_with_the_reason() {
    let app = app_with(sim(Duration::from_millis(500)), |s| {
        s.csv.max_new_custom_fields = 5;
    })
    .await;
    let header: Vec<String> = (0..6).map(|i| format!("Extra {i}")).collect();
    let csv = format!(
        "phone;{}\n+393381000031;{}\n",
        header.join(";"),
        ["x"; 6].join(";")
    );
    app.drop_file("wide.csv", csv.as_bytes());
    let report = wait_report(&app.inbox, "failed", "wide.csv").await;
    let error = report["error"].as_str().expect("error");
    assert!(error.contains("csv.max_new_custom_fields"), "{error}");

    let fields: serde_json::Map<String, Value> =
        (0..6).map(|i| (format!("key_{i}"), json!("v"))).collect();
    let (status, answer) = deliver(
        &app,
        "msg_wide",
        &json!({"contacts": [{"phone": "+393381000032", "custom_fields": fields}]}),
    )
    .await;
    assert_eq!(status, 422, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .is_some_and(|e| e.contains("csv.max_new_custom_fields")),
        "{answer}"
    );
    // Nothing of either was queued, no creation asked for; a sane delivery still goes.
    assert_eq!(app.store.outbox_depth().await.expect("depth"), 0);
    let (status, _) = deliver(
        &app,
        "msg_narrow",
        &json!({"contacts": [{"phone": "+393381000033", "custom_fields": {"key_0": "v"}}]}),
    )
    .await;
    assert_eq!(status, 202);
    spoki_knows(&app, "+393381000033").await;
    assert_eq!(app.sim.custom_field_codes(), vec!["KEY_0".to_owned()]);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_fields_are_rejected_at_the_door_and_a_413_is_final() {
    let mut config = sim(Duration::from_millis(500));
    // Spoki (its web server) takes bodies of at most 8 KiB here.
    config.body_limit = 8 * 1024;
    let app = app_with(config, |_| {}).await;

    // At the door: a name longer than any Spoki takes.
    let long_name = "N".repeat(300);
    let csv = format!("phone;nome\n+393381000041;{long_name}\n+393381000042;Lia\n");
    app.drop_file("long.csv", csv.as_bytes());
    let report = wait_report(&app.inbox, "processed", "long.csv").await;
    assert_eq!(report["accepted"], 1, "{report}");
    let reason = report["rejected"][0]["reason"].as_str().expect("reason");
    assert!(reason.contains("first_name is longer than"), "{reason}");

    // Within our bounds, but more than this Spoki takes in one request: a 413, final for the
    // contact; the others of the batch still arrive.
    let big: Vec<String> = (0..10).map(|_| "v".repeat(990)).collect();
    let header: Vec<String> = (0..10).map(|i| format!("F{i}")).collect();
    let mut csv = format!("phone;{}\n", header.join(";"));
    csv.push_str(&format!("+393381000043;{}\n", big.join(";")));
    csv.push_str("+393381000044;a;b\n");
    app.drop_file("big.csv", csv.as_bytes());
    wait_report(&app.inbox, "processed", "big.csv").await;
    spoki_knows(&app, "+393381000044").await;
    app.wait_drained(Duration::from_secs(30)).await;
    assert!(app.sim.contact_by_phone("+393381000043").is_none());
    let refused = rejects(&app).await;
    assert!(
        refused.iter().any(|r| r["phone"] == "+393381000043"
            && r["reason"].as_str().is_some_and(|t| t.contains("413"))),
        "{refused:?}"
    );
    app.stop().await;
}
