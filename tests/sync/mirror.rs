//! Both directions: the SQLite mirror edited by another program, Spoki's changes coming back
//! by pull and by webhook, the field-level merge, and the contacts webhook.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use spoki_sync::config::{ConflictWinner, Secret, Settings};
use spoki_sync::sim::{SimConfig, Tamper};

use crate::helpers::{TestApp, spawn_app_with, wait_until};

const SPOKI_SECRET: &str = "spoki-webhook-secret";
const WHSEC_KEY: &[u8] = b"contacts webhook key bytes";

fn tweak(s: &mut Settings) {
    s.mirror.poll_interval = Duration::from_millis(100);
    s.webhooks.spoki_secret = Some(Secret::new(SPOKI_SECRET));
    s.webhooks.secret = Some(crate::helpers::whsec(WHSEC_KEY));
}

async fn app_with(extra: impl FnOnce(&mut Settings)) -> TestApp {
    crate::helpers::spawn_app_tweaked(|s| {
        tweak(s);
        extra(s);
    })
    .await
}

async fn spoki_has(app: &TestApp, phone: &str, key: &str, value: &str) {
    wait_until(
        Duration::from_secs(20),
        &format!("Spoki to hold {key}={value} for {phone}"),
        || async {
            app.sim.contact_by_phone(phone).is_some_and(|c| {
                if let Some(code) = key.strip_prefix("cf:") {
                    c["contactfield_set"].as_array().is_some_and(|set| {
                        set.iter().any(|f| {
                            f["visual_code"] == format!("%%{code}%%") && f["value"] == value
                        })
                    })
                } else {
                    c[key] == value
                }
            })
        },
    )
    .await;
}

async fn mirror_has(app: &TestApp, phone: &str, check: impl Fn(&Value) -> bool, what: &str) {
    wait_until(Duration::from_secs(20), what, || async {
        mirror_json(app, phone).await.is_some_and(|row| check(&row))
    })
    .await;
}

type MirrorRow = (
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
);

/// The mirror row as JSON (fields and custom fields), read like another program would.
async fn mirror_json(app: &TestApp, phone: &str) -> Option<Value> {
    let pool = app.other_program().await;
    let row: Option<MirrorRow> = sqlx::query_as(
        "SELECT spoki_id, first_name, last_name, email, custom_fields FROM contacts \
             WHERE phone = ?",
    )
    .bind(phone)
    .fetch_optional(&pool)
    .await
    .expect("read the mirror");
    pool.close().await;
    row.map(|(id, first, last, email, custom)| {
        json!({
            "spoki_id": id,
            "first_name": first,
            "last_name": last,
            "email": email,
            "custom_fields": serde_json::from_str::<Value>(&custom).unwrap_or(Value::Null),
        })
    })
}

async fn exec(app: &TestApp, sql: &str) {
    let pool = app.other_program().await;
    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&pool)
        .await
        .expect(sql);
    pool.close().await;
}

/// Contact-writing requests Spoki received.
fn writes(app: &TestApp) -> usize {
    app.sim
        .requests()
        .iter()
        .filter(|r| r.method != "GET")
        .count()
}

#[tokio::test]
async fn another_programs_edits_reach_spoki() {
    let app = app_with(|_| {}).await;
    exec(
        &app,
        "INSERT INTO contacts (phone, first_name, custom_fields) \
         VALUES ('+393331000001', 'Anna', '{\"CITTA\": \"Roma\"}')",
    )
    .await;
    spoki_has(&app, "+393331000001", "first_name", "Anna").await;
    spoki_has(&app, "+393331000001", "cf:CITTA", "Roma").await;
    // Several edits between two polls: the last one wins.
    exec(
        &app,
        "UPDATE contacts SET first_name = 'Anna Maria' WHERE phone = '+393331000001'",
    )
    .await;
    exec(
        &app,
        "UPDATE contacts SET first_name = 'Annamaria', last_name = 'Rossi' \
         WHERE phone = '+393331000001'",
    )
    .await;
    spoki_has(&app, "+393331000001", "first_name", "Annamaria").await;
    spoki_has(&app, "+393331000001", "last_name", "Rossi").await;
    // The daemon learnt Spoki's id and nothing echoes back.
    mirror_has(
        &app,
        "+393331000001",
        |r| r["spoki_id"].is_i64(),
        "spoki_id in the mirror",
    )
    .await;
    // A bad row is rejected with a reason, not sent.
    exec(
        &app,
        "INSERT INTO contacts (phone, first_name) VALUES ('333 12', 'Nope')",
    )
    .await;
    wait_until(Duration::from_secs(10), "the reject", || async {
        app.store
            .rejects(10)
            .await
            .expect("rejects")
            .iter()
            .any(|r| r.source == "mirror" && r.phone == "333 12")
    })
    .await;
    // Without propagation a deleted row stays in Spoki.
    exec(&app, "DELETE FROM contacts WHERE phone = '+393331000001'").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(app.sim.contact_by_phone("+393331000001").is_some());
    assert_eq!(app.store.mirror_backlog().await.expect("backlog"), 0);

    // Edits made while the daemon is stopped arrive after it starts.
    exec(
        &app,
        "INSERT INTO contacts (phone, first_name) VALUES ('+393331000002', 'Bruno')",
    )
    .await;
    spoki_has(&app, "+393331000002", "first_name", "Bruno").await;
    let mut app = app;
    app.halt().await;
    exec(
        &app,
        "UPDATE contacts SET first_name = 'Bruno Maria' WHERE phone = '+393331000002'",
    )
    .await;
    let app = app.relaunch().await;
    spoki_has(&app, "+393331000002", "first_name", "Bruno Maria").await;
    app.stop().await;
}

#[tokio::test]
async fn deletes_propagate_when_asked_and_mass_deletes_wait_for_confirmation() {
    let app = app_with(|s| {
        s.mirror.propagate_deletes = true;
        s.mirror.max_delete_share = 0.5;
    })
    .await;
    for i in 1..=4 {
        exec(
            &app,
            &format!("INSERT INTO contacts (phone, first_name) VALUES ('+39333200000{i}', 'C{i}')"),
        )
        .await;
    }
    for i in 1..=4 {
        spoki_has(
            &app,
            &format!("+39333200000{i}"),
            "first_name",
            &format!("C{i}"),
        )
        .await;
        mirror_has(
            &app,
            &format!("+39333200000{i}"),
            |r| r["spoki_id"].is_i64(),
            "acknowledged",
        )
        .await;
    }
    // One of four (25%) is under the 50% guard: deleted in Spoki.
    exec(&app, "DELETE FROM contacts WHERE phone = '+393332000001'").await;
    wait_until(Duration::from_secs(20), "the deletion in Spoki", || async {
        app.sim.contact_by_phone("+393332000001").is_none()
    })
    .await;
    // Three at once is too many: held, reported, and carried out only once confirmed.
    exec(&app, "DELETE FROM contacts WHERE phone != '+393332000002'").await;
    wait_until(
        Duration::from_secs(20),
        "the held deletions in status",
        || async {
            let status: Value = app
                .admin_req(Method::GET, "/v1/status")
                .send()
                .await
                .expect("status")
                .json()
                .await
                .expect("json");
            status["deletes_held"]["to_spoki"] == 2
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(app.sim.contact_by_phone("+393332000003").is_some(), "held");
    let confirmed: Value = app
        .admin_req(Method::POST, "/v1/sync/deletes/confirm")
        .send()
        .await
        .expect("confirm")
        .json()
        .await
        .expect("json");
    assert_eq!(confirmed["confirmed"], 2);
    wait_until(
        Duration::from_secs(20),
        "the confirmed deletions",
        || async {
            app.sim.contact_by_phone("+393332000003").is_none()
                && app.sim.contact_by_phone("+393332000004").is_none()
        },
    )
    .await;
    assert!(app.sim.contact_by_phone("+393332000002").is_some());
    app.stop().await;
}

#[tokio::test]
async fn spoki_changes_arrive_by_webhook_and_by_pull() {
    let app = app_with(|_| {}).await;
    app.point_spoki_webhooks_here(SPOKI_SECRET);
    app.sim.ui_upsert_contact(
        "+393333000001",
        json!({"first_name": "Carla", "custom_fields": {"CITTA": "Bari"}}),
    );
    mirror_has(
        &app,
        "+393333000001",
        |r| r["first_name"] == "Carla" && r["custom_fields"]["CITTA"] == "Bari",
        "the webhook's contact in the mirror",
    )
    .await;
    // Bad signature, stale timestamp: refused, nothing changes.
    for tamper in [Tamper::BadSignature, Tamper::StaleTimestamp] {
        app.sim.set_webhook_tamper(tamper.clone(), Some(1));
        app.sim
            .ui_upsert_contact("+393333000001", json!({"first_name": "Intruder"}));
        wait_until(Duration::from_secs(10), "the delivery", || async {
            app.sim.webhooks_in_flight() == 0
        })
        .await;
        let last = app
            .sim
            .webhook_deliveries()
            .last()
            .cloned()
            .expect("delivery");
        assert_eq!(last.status, Some(401), "{tamper:?}");
        let row = mirror_json(&app, "+393333000001").await.expect("row");
        assert_eq!(row["first_name"], "Carla", "{tamper:?} changed the mirror");
        // Put Spoki back as the mirror has it, with no webhook, for the next round.
        app.sim.set_event_webhook(None, SPOKI_SECRET);
        app.sim
            .ui_upsert_contact("+393333000001", json!({"first_name": "Carla"}));
        app.point_spoki_webhooks_here(SPOKI_SECRET);
    }
    // A replayed event_uuid is acknowledged and applied once.
    app.sim.set_webhook_tamper(Tamper::Replay, Some(1));
    app.sim
        .ui_upsert_contact("+393333000001", json!({"last_name": "Neri"}));
    mirror_has(
        &app,
        "+393333000001",
        |r| r["last_name"] == "Neri",
        "the event after the replay",
    )
    .await;
    wait_until(Duration::from_secs(10), "deliveries", || async {
        app.sim.webhooks_in_flight() == 0
    })
    .await;
    let replays: Vec<_> = app
        .sim
        .webhook_deliveries()
        .into_iter()
        .filter(|d| d.tamper == Tamper::Replay)
        .collect();
    assert!(!replays.is_empty());
    assert!(replays.iter().all(|d| d.status == Some(200)));

    // With webhooks off, the pull brings changes, creations and deletions.
    app.sim.set_event_webhook(None, SPOKI_SECRET);
    app.sim
        .ui_upsert_contact("+393333000002", json!({"first_name": "Dario"}));
    app.sim
        .ui_upsert_contact("+393333000001", json!({"email": "carla@example.com"}));
    let pulled = app
        .admin_req(Method::POST, "/v1/sync/pull")
        .send()
        .await
        .expect("pull");
    assert_eq!(pulled.status(), 202);
    mirror_has(
        &app,
        "+393333000002",
        |r| r["first_name"] == "Dario" && r["spoki_id"].is_i64(),
        "the pulled contact",
    )
    .await;
    mirror_has(
        &app,
        "+393333000001",
        |r| r["email"] == "carla@example.com" && r["first_name"] == "Carla",
        "the pulled change",
    )
    .await;
    app.sim.ui_delete_contact("+393333000002");
    pull_and_settle(&app).await;
    // One of two contacts is more than the 10% guard: held until confirmed.
    assert!(mirror_json(&app, "+393333000002").await.is_some(), "held");
    let held = app.store.held_deletes().await.expect("held");
    assert_eq!(held, vec![("to_mirror".to_owned(), 1)]);
    app.admin_req(Method::POST, "/v1/sync/deletes/confirm")
        .send()
        .await
        .expect("confirm");
    wait_until(
        Duration::from_secs(20),
        "the deletion in the mirror",
        || async { mirror_json(&app, "+393333000002").await.is_none() },
    )
    .await;
    app.stop().await;
}

/// Both sides agree on a contact; then each side changes something.
async fn agreed_contact(app: &TestApp, phone: &str) {
    exec(
        app,
        &format!(
            "INSERT INTO contacts (phone, first_name, last_name, custom_fields) \
             VALUES ('{phone}', 'Elena', 'Sala', '{{\"CITTA\": \"Como\"}}')"
        ),
    )
    .await;
    mirror_has(app, phone, |r| r["spoki_id"].is_i64(), "acknowledged").await;
    spoki_has(app, phone, "cf:CITTA", "Como").await;
}

async fn pull_and_settle(app: &TestApp) {
    let before = app
        .store
        .status_counts()
        .await
        .expect("status")
        .last_pull_at;
    app.admin_req(Method::POST, "/v1/sync/pull")
        .send()
        .await
        .expect("pull");
    wait_until(Duration::from_secs(20), "the pull", || async {
        app.store
            .status_counts()
            .await
            .expect("status")
            .last_pull_at
            != before
    })
    .await;
    app.wait_drained(Duration::from_secs(20)).await;
}

#[tokio::test]
async fn different_fields_merge_and_the_same_field_goes_to_the_winner() {
    for winner in [ConflictWinner::Mirror, ConflictWinner::Spoki] {
        let app = app_with(|s| s.mirror.conflict_winner = winner).await;
        let phone = "+393334000001";
        agreed_contact(&app, phone).await;
        // Let the poller finish with the insert before editing.
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Different fields: first_name in Spoki, last_name in the mirror.
        app.sim
            .ui_upsert_contact(phone, json!({"first_name": "Elena Maria"}));
        exec(
            &app,
            &format!("UPDATE contacts SET last_name = 'Sala Rossi' WHERE phone = '{phone}'"),
        )
        .await;
        spoki_has(&app, phone, "last_name", "Sala Rossi").await;
        pull_and_settle(&app).await;
        let row = mirror_json(&app, phone).await.expect("row");
        assert_eq!(row["first_name"], "Elena Maria", "{winner:?}");
        assert_eq!(row["last_name"], "Sala Rossi", "{winner:?}");
        spoki_has(&app, phone, "first_name", "Elena Maria").await;

        // The same field on both sides before either reached the other. The poller is
        // slowed right down so the mirror's edit waits in the journal while Spoki's edit
        // arrives by webhook and meets it.
        let mut app = app;
        app.halt().await;
        app.settings.mirror.poll_interval = Duration::from_secs(3600);
        let app = app.relaunch().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        exec(
            &app,
            &format!(
                "UPDATE contacts SET custom_fields = '{{\"CITTA\": \"Varese\"}}' \
                 WHERE phone = '{phone}'"
            ),
        )
        .await;
        app.point_spoki_webhooks_here(SPOKI_SECRET);
        app.sim
            .ui_upsert_contact(phone, json!({"custom_fields": {"CITTA": "Lecco"}}));
        let expected = match winner {
            ConflictWinner::Mirror => "Varese",
            ConflictWinner::Spoki => "Lecco",
        };
        mirror_has(
            &app,
            phone,
            |r| r["custom_fields"]["CITTA"] == expected,
            "the winner's value in the mirror",
        )
        .await;
        spoki_has(&app, phone, "cf:CITTA", expected).await;
        app.wait_drained(Duration::from_secs(20)).await;
        let metrics = app.metrics_text().await;
        let winner_label = match winner {
            ConflictWinner::Mirror => "mirror",
            ConflictWinner::Spoki => "spoki",
        };
        assert!(
            metrics.contains(&format!(
                "spoki_sync_merge_conflicts_total{{winner=\"{winner_label}\"}}"
            )),
            "the conflict is counted: {metrics}"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn a_second_cycle_with_no_edits_writes_nothing_either_way() {
    let app = app_with(|_| {}).await;
    app.point_spoki_webhooks_here(SPOKI_SECRET);
    agreed_contact(&app, "+393335000001").await;
    app.sim
        .ui_upsert_contact("+393335000002", json!({"first_name": "Fabio"}));
    app.drop_file("c.csv", b"phone;nome\n+39 333 5000003;Gina\n");
    spoki_has(&app, "+393335000003", "first_name", "Gina").await;
    pull_and_settle(&app).await;
    wait_until(Duration::from_secs(10), "webhooks", || async {
        app.sim.webhooks_in_flight() == 0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let writes_before = writes(&app);
    let pool = app.other_program().await;
    let (mirror_before,): (String,) =
        sqlx::query_as("SELECT group_concat(phone || updated_at) FROM contacts")
            .fetch_one(&pool)
            .await
            .expect("mirror");
    pull_and_settle(&app).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (mirror_after,): (String,) =
        sqlx::query_as("SELECT group_concat(phone || updated_at) FROM contacts")
            .fetch_one(&pool)
            .await
            .expect("mirror");
    pool.close().await;
    assert_eq!(writes(&app), writes_before, "no write to Spoki");
    assert_eq!(mirror_after, mirror_before, "no write to the mirror");
    assert_eq!(app.store.mirror_backlog().await.expect("backlog"), 0);
    app.stop().await;
}

fn sign(id: &str, ts: i64, body: &[u8], key: &[u8]) -> String {
    crate::helpers::standard_signature(key, id, ts, body)
}

async fn deliver(app: &TestApp, id: &str, ts: i64, body: &[u8], signature: &str) -> u16 {
    app.http
        .post(format!("http://{}/webhooks/contacts", app.webhooks))
        .header("webhook-id", id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", signature)
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await
        .expect("answer")
        .status()
        .as_u16()
}

#[tokio::test]
async fn the_contacts_webhook_checks_signatures_and_applies_each_id_once() {
    let app = app_with(|_| {}).await;
    let now = chrono::Utc::now().timestamp();
    let body = serde_json::to_vec(&json!({
        "contacts": [
            {"phone": "+39 333 600 0001", "first_name": "Ivo", "custom_fields": {"Città": "Pisa"}},
            {"phone": "12", "first_name": "Bad"}
        ]
    }))
    .expect("json");
    // Valid.
    let sig = sign("msg_1", now, &body, WHSEC_KEY);
    assert_eq!(deliver(&app, "msg_1", now, &body, &sig).await, 202);
    spoki_has(&app, "+393336000001", "first_name", "Ivo").await;
    spoki_has(&app, "+393336000001", "cf:CITTA", "Pisa").await;
    let rejects = app.store.rejects(10).await.expect("rejects");
    assert!(
        rejects
            .iter()
            .any(|r| r.source == "webhook" && r.key == "msg_1#1")
    );
    // Replayed: acknowledged, nothing applied twice.
    let depth = app.store.rejects(100).await.expect("rejects").len();
    assert_eq!(deliver(&app, "msg_1", now, &body, &sig).await, 200);
    assert_eq!(app.store.rejects(100).await.expect("rejects").len(), depth);
    // Tampered body, wrong key, stale timestamp, missing signature: 401.
    let tampered =
        serde_json::to_vec(&json!({"contacts": [{"phone": "+393336000009"}]})).expect("json");
    assert_eq!(deliver(&app, "msg_2", now, &tampered, &sig).await, 401);
    let wrong = sign("msg_3", now, &body, b"another key");
    assert_eq!(deliver(&app, "msg_3", now, &body, &wrong).await, 401);
    let stale_ts = now - 400;
    let stale = sign("msg_4", stale_ts, &body, WHSEC_KEY);
    assert_eq!(deliver(&app, "msg_4", stale_ts, &body, &stale).await, 401);
    assert_eq!(deliver(&app, "msg_5", now, &body, "").await, 401);
    // Malformed body, correctly signed: 400.
    let malformed = b"{\"contacts\": 42}";
    let sig = sign("msg_6", now, malformed, WHSEC_KEY);
    assert_eq!(deliver(&app, "msg_6", now, malformed, &sig).await, 400);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(app.sim.contact_by_phone("+393336000009").is_none());
    for id in ["msg_2", "msg_3", "msg_4", "msg_5", "msg_6"] {
        assert!(
            !app.store.delivery_seen("contacts", id).await.expect("seen"),
            "{id} stored"
        );
    }
    // A list delivery adds the contacts to the list.
    let list = app.sim.create_list("Webhook list");
    let body =
        serde_json::to_vec(&json!({"contacts": [{"phone": "+393336000002"}], "list_id": list}))
            .expect("json");
    let sig = sign("msg_7", now, &body, WHSEC_KEY);
    assert_eq!(deliver(&app, "msg_7", now, &body, &sig).await, 202);
    wait_until(Duration::from_secs(20), "the list member", || async {
        app.sim.list_members(list) == vec!["+393336000002".to_owned()]
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn a_long_pull_does_not_hold_up_the_push() {
    let window = Duration::from_millis(1000);
    let app = spawn_app_with(
        SimConfig {
            window,
            ..SimConfig::default()
        },
        window,
        |s| {
            tweak(s);
            // Two pages a second: 2,000 contacts in 10 pages take over 4 s.
            s.spoki.rate_limits.insert(
                "list_contacts".to_owned(),
                spoki_sync::config::RateLimit::parse("2/1s").expect("limit"),
            );
        },
    )
    .await;
    app.sim.set_limit("GET /contacts/", 2);
    for i in 0..2000 {
        app.sim
            .ui_upsert_contact(&format!("+39333{i:07}"), json!({"first_name": "P"}));
    }
    app.admin_req(Method::POST, "/v1/sync/pull")
        .send()
        .await
        .expect("pull");
    wait_until(Duration::from_secs(10), "the pull to begin", || async {
        app.sim
            .requests()
            .iter()
            .any(|r| r.path == "/api/1/contacts/")
    })
    .await;
    app.drop_file("during.csv", b"phone;nome\n+39 347 7654321;Durante\n");
    spoki_has(&app, "+393477654321", "first_name", "Durante").await;
    assert!(
        app.store
            .status_counts()
            .await
            .expect("status")
            .last_pull_at
            .is_none(),
        "the CSV's contact reached Spoki while the pull was still running"
    );
    wait_until(Duration::from_secs(30), "the pull to finish", || async {
        app.store
            .status_counts()
            .await
            .expect("status")
            .last_pull_at
            .is_some()
    })
    .await;
    let (rows,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM contacts")
        .fetch_one(app.store.pool())
        .await
        .expect("count");
    assert_eq!(rows, 2001);
    app.stop().await;
}
