//! The write side against Spoki's guessed and single-source behaviours, end to end: the
//! simulator's write switches (other "already exists" wordings, creates that fail a few times,
//! `accepted: false`, trigger link styles, `reports/` gone, empty answers) and the daemon's
//! answers to them: custom fields decided by Spoki's list of fields, automation starts on
//! Spoki's host only, commands that say exactly what the user said, rejects paged through.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use spoki_sync::config::Settings;
use spoki_sync::outbound::batcher::BatcherSettings;
use spoki_sync::sim::writes::{DuplicateWording, TriggerLink, WriteSwitches};
use spoki_sync::sim::{AutomationStartBody, SimConfig};

use crate::helpers::*;

const WINDOW: Duration = Duration::from_millis(500);

async fn app_with(writes: WriteSwitches, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    app_with_sim(
        SimConfig {
            window: WINDOW,
            writes,
            ..SimConfig::default()
        },
        tweak,
    )
    .await
}

async fn app_with_sim(sim: SimConfig, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_with(sim, WINDOW, tweak).await
}

/// The value Spoki holds for `code` on the contact with `phone`.
fn field_value(app: &TestApp, phone: &str, code: &str) -> Option<String> {
    let contact = app.sim.contact_by_phone(phone)?;
    let visual = format!("%%{code}%%");
    contact["contactfield_set"]
        .as_array()?
        .iter()
        .find(|f| f["visual_code"] == visual.as_str())
        .and_then(|f| f["value"].as_str().map(str::to_owned))
}

async fn wait_field(app: &TestApp, phone: &str, code: &str, value: &str) {
    wait_until(
        Duration::from_secs(30),
        &format!("{phone} to hold {code} = {value}"),
        || async { field_value(app, phone, code).as_deref() == Some(value) },
    )
    .await;
}

async fn rejects_page(app: &TestApp, query: &str) -> Value {
    app.admin_req(Method::GET, &format!("/v1/rejects{query}"))
        .send()
        .await
        .expect("admin API answers")
        .json()
        .await
        .expect("JSON")
}

fn creates_of(app: &TestApp) -> Vec<Value> {
    app.sim
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path == "/api/1/custom-fields/")
        .map(|r| r.body)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_refused_with_401_403_or_5xx_is_retried_with_an_example_until_it_works() {
    let writes = WriteSwitches {
        custom_field_create_failures: [401, 403, 503].into(),
        ..WriteSwitches::default()
    };
    let app = app_with(writes, |_| {}).await;
    app.drop_file(
        "colours.csv",
        "phone;Colore\n+393381200001;rosso\n+393381200002;verde\n".as_bytes(),
    );
    wait_report(&app.inbox, "processed", "colours.csv").await;
    wait_field(&app, "+393381200001", "COLORE", "rosso").await;
    wait_field(&app, "+393381200002", "COLORE", "verde").await;
    let creates = creates_of(&app);
    assert_eq!(
        creates.len(),
        4,
        "three refusals, then the create: {creates:?}"
    );
    let last = creates.last().expect("a create");
    assert_eq!(last["code"], "COLORE");
    assert_eq!(last["field_type"], 1);
    assert_eq!(
        last["example"], "rosso",
        "the first value seen is the example"
    );
    let rejects = rejects_page(&app, "").await;
    assert_eq!(rejects["rejects"], json!([]), "nothing stripped: {rejects}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn already_exists_in_any_words_is_decided_by_listing_the_fields_again() {
    for (n, wording) in [
        DuplicateWording::Italian,
        DuplicateWording::BareCode,
        DuplicateWording::Detail,
    ]
    .into_iter()
    .enumerate()
    {
        let writes = WriteSwitches {
            duplicate_wording: wording,
            ..WriteSwitches::default()
        };
        let app = app_with(writes, |_| {}).await;
        // A first code makes the daemon list Spoki's fields once.
        let first = format!("phone;Reparto\n+3933812001{n}0;moda\n");
        app.drop_file("first.csv", first.as_bytes());
        wait_field(&app, &format!("+3933812001{n}0"), "REPARTO", "moda").await;
        // Someone creates TAGLIA in Spoki meanwhile: the daemon's create now hears "exists"
        // in words it cannot read.
        app.sim.create_custom_field("TAGLIA");
        let phone = format!("+3933812001{n}1");
        app.drop_file(
            "second.csv",
            format!("phone;Taglia\n{phone};M\n").as_bytes(),
        );
        wait_field(&app, &phone, "TAGLIA", "M").await;
        assert!(
            creates_of(&app).iter().any(|b| b["code"] == "TAGLIA"),
            "{wording:?}: the create was tried and refused"
        );
        let rejects = rejects_page(&app, "").await;
        assert_eq!(rejects["rejects"], json!([]), "{wording:?}: {rejects}");
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_spoki_will_not_create_is_reported_per_file_and_tried_again_after_a_reload() {
    let writes = WriteSwitches {
        custom_field_create_failures: [400].into(),
        ..WriteSwitches::default()
    };
    let app = app_with(writes, |_| {}).await;
    app.drop_file("a.csv", b"phone;Reparto\n+393381300001;moda\n");
    wait_report(&app.inbox, "processed", "a.csv").await;
    // The contact goes without the value, and a reject says why: never silently.
    wait_until(
        Duration::from_secs(30),
        "a reject naming REPARTO",
        || async {
            rejects_page(&app, "").await["rejects"]
                .as_array()
                .is_some_and(|r| {
                    r.iter().any(|r| {
                        r["phone"] == "+393381300001"
                            && r["reason"].as_str().is_some_and(|t| t.contains("REPARTO"))
                    })
                })
        },
    )
    .await;
    let status: Value = app
        .admin_req(Method::GET, "/v1/status")
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("JSON");
    assert!(status["rejected"].as_i64().unwrap_or(0) >= 1, "{status}");
    let refused = &status["custom_fields_refused"][0];
    assert_eq!(refused["code"], "REPARTO", "{status}");
    assert!(
        refused["reason"]
            .as_str()
            .is_some_and(|r| r.contains("400")),
        "{status}"
    );

    // A later file's report names the column and why.
    app.drop_file("b.csv", b"phone;Reparto\n+393381300002;sport\n");
    let report = wait_report(&app.inbox, "processed", "b.csv").await;
    assert_eq!(report["ignored_columns"], json!(["Reparto"]), "{report}");
    let why = report["ignored_reasons"]["Reparto"].as_str().unwrap_or("");
    assert!(why.contains("400"), "{report}");

    // A reload tries the refused code again; Spoki takes it now.
    app.batcher
        .update_settings(BatcherSettings::from_settings(&app.settings));
    wait_until(Duration::from_secs(30), "REPARTO created", || async {
        app.sim.custom_field_codes().contains(&"REPARTO".to_owned())
    })
    .await;
    app.drop_file("c.csv", b"phone;Reparto\n+393381300003;casa\n");
    let report = wait_report(&app.inbox, "processed", "c.csv").await;
    assert!(report.get("ignored_columns").is_none(), "{report}");
    wait_field(&app, "+393381300003", "REPARTO", "casa").await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_creation_off_codes_spoki_has_are_sent_and_only_missing_ones_are_left_out() {
    let app = app_with(WriteSwitches::default(), |s| {
        s.csv.create_custom_fields = false;
    })
    .await;
    app.sim.create_custom_field("CITTA");
    app.drop_file(
        "mixed.csv",
        "phone;Città;Colore\n+393381400001;Roma;blu\n".as_bytes(),
    );
    let report = wait_report(&app.inbox, "processed", "mixed.csv").await;
    assert_eq!(report["ignored_columns"], json!(["Colore"]), "{report}");
    assert!(
        report["ignored_reasons"]["Colore"]
            .as_str()
            .is_some_and(|r| r.contains("csv.create_custom_fields")),
        "{report}"
    );
    wait_field(&app, "+393381400001", "CITTA", "Roma").await;
    assert_eq!(app.sim.custom_field_codes(), vec!["CITTA".to_owned()]);
    assert!(
        creates_of(&app).is_empty(),
        "nothing created with creation off"
    );
    app.stop().await;
}

/// Runs a command and waits for its end.
async fn finished(app: &TestApp, action: &str, params: Value) -> Value {
    app.run_command(action, params).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_automation_start_spoki_does_not_accept_is_a_failure_with_its_answer() {
    let app = app_with_sim(
        SimConfig {
            window: WINDOW,
            automation_start_body: AutomationStartBody::NotAccepted,
            ..SimConfig::default()
        },
        |_| {},
    )
    .await;
    let automation = app.sim.fixtures().automation_id;
    let record = finished(
        &app,
        "start_automation",
        json!({"automation": automation, "phone": "+393381500001"}),
    )
    .await;
    assert_eq!(record["status"], "failed", "{record}");
    assert!(
        record["error"].to_string().contains("did not accept"),
        "{record}"
    );
    assert_eq!(record["error"]["answer"]["accepted"], false, "{record}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_link_elsewhere_gets_no_secret_and_a_relative_one_works() {
    let elsewhere = WriteSwitches {
        trigger_link: TriggerLink::Elsewhere("http://127.0.0.1:9".to_owned()),
        ..WriteSwitches::default()
    };
    let app = app_with(elsewhere, |_| {}).await;
    let automation = app.sim.fixtures().automation_id;
    let record = finished(
        &app,
        "start_automation",
        json!({"automation": automation, "phone": "+393381500002"}),
    )
    .await;
    assert_eq!(record["status"], "failed", "{record}");
    let error = record["error"].to_string();
    assert!(
        error.contains("127.0.0.1") && error.contains("not sent there"),
        "{error}"
    );
    assert!(app.sim.automation_runs().is_empty());

    app.sim.set_writes(WriteSwitches {
        trigger_link: TriggerLink::Relative,
        ..WriteSwitches::default()
    });
    // A second automation: the first's (refused) trigger is not kept.
    let (other, uuid, _) = app.sim.seed_automation("Relative", true);
    for phone in ["+393381500003", "+393381500004"] {
        let record = finished(
            &app,
            "start_automation",
            json!({"automation": other, "phone": phone, "custom_fields": {"ORDER_ID": "A-1"}}),
        )
        .await;
        assert_eq!(record["status"], "succeeded", "{record}");
    }
    let runs = app.sim.automation_runs();
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert!(runs.iter().all(|(u, _)| u == &uuid));
    // The trigger is kept per automation: one lookup for both starts.
    let lookups = app
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path == format!("/api/1/automations/{other}/"))
        .count();
    assert_eq!(lookups, 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_say_exactly_what_the_user_said() {
    let app = app_with(WriteSwitches::default(), |_| {}).await;
    let record = finished(
        &app,
        "create_or_update_contact",
        json!({"phone": "+393381600001", "email": "anna@example.com"}),
    )
    .await;
    assert_eq!(record["status"], "succeeded", "{record}");
    let id = record["result"]["id"].as_i64().expect("contact id");
    // An explicit null clears the e-mail.
    let record = finished(&app, "update_contact", json!({"id": id, "email": null})).await;
    assert_eq!(record["status"], "succeeded", "{record}");
    let contact = app.sim.contact_by_phone("+393381600001").expect("contact");
    assert_eq!(contact["email"], Value::Null, "{contact}");
    let patch = app
        .sim
        .requests()
        .into_iter()
        .rfind(|r| r.method == "PATCH")
        .expect("the PATCH");
    assert_eq!(patch.body, json!({"email": null}));

    // Single-source rules are Spoki's to apply: the command is queued and Spoki answers.
    for (action, params) in [
        (
            "create_custom_field",
            json!({"label": "Second phone", "code": "2ND_PHONE", "field_type": 1}),
        ),
        ("add_service_user", json!({"role": "Boss", "name": "bot"})),
    ] {
        let (status, _) = app.submit(action, params.clone()).await;
        assert_eq!(status, 202, "{action} {params}");
    }
    // What Spoki refuses for sure is refused before anything is queued.
    for (action, params) in [
        ("list_tags", json!({"page": 0})),
        (
            "create_ticket",
            json!({"contact_phone": "+39333", "title": "x", "status": "Open"}),
        ),
    ] {
        let (status, answer) = app.submit(action, params).await;
        assert_eq!(status, 400, "{action}: {answer}");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_routes_use_their_documented_replacements() {
    let writes = WriteSwitches {
        reports_gone: Some(410),
        ..WriteSwitches::default()
    };
    let app = app_with(writes, |_| {}).await;
    let account = app.sim.fixtures().account_id;
    for _ in 0..2 {
        let record = finished(
            &app,
            "create_account_onboarding_link",
            json!({"id": account}),
        )
        .await;
        assert_eq!(record["status"], "succeeded", "{record}");
        assert!(record["result"]["redirect_url"].is_string(), "{record}");
    }
    let paths: Vec<String> = app.sim.requests().into_iter().map(|r| r.path).collect();
    let count = |p: &str| paths.iter().filter(|x| x.as_str() == p).count();
    assert_eq!(count("/api/1/channel/"), 2, "{paths:?}");
    assert_eq!(
        count(&format!("/api/1/accounts/{account}/onboarding/")),
        1,
        "the removed route is tried once, then no more: {paths:?}"
    );
    assert_eq!(count("/api/1/partners/onboarding/"), 0);

    let record = finished(
        &app,
        "list_reports",
        json!({"granularity": "Month", "start_date": "2026-01-01", "end_date": "2026-02-01"}),
    )
    .await;
    assert_eq!(record["status"], "succeeded", "{record}");
    let detailed = app
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.path == "/api/1/reports/detailed/")
        .count();
    assert_eq!(detailed, 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_answered_with_empty_bodies_still_count() {
    let writes = WriteSwitches {
        empty_write_bodies: true,
        ..WriteSwitches::default()
    };
    let app = app_with(writes, |_| {}).await;
    app.drop_file("empty.csv", b"phone;Colore\n+393381700001;rosso\n");
    wait_report(&app.inbox, "processed", "empty.csv").await;
    wait_field(&app, "+393381700001", "COLORE", "rosso").await;
    app.wait_drained(Duration::from_secs(30)).await;
    let record = finished(&app, "create_contact_list", json!({"name": "Empty"})).await;
    assert_eq!(record["status"], "succeeded", "{record}");
    assert_eq!(record["result"], Value::Null);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejects_are_paged_newest_first_with_a_cursor_and_filters() {
    let app = app_with(WriteSwitches::default(), |_| {}).await;
    app.drop_file("bad.csv", b"phone\nnope1\nnope2\nnope3\nnope4\nnope5\n");
    wait_report(&app.inbox, "processed", "bad.csv").await;
    app.drop_file("other.csv", b"phone\nzzz\n");
    wait_report(&app.inbox, "processed", "other.csv").await;

    let mut seen = Vec::new();
    let mut query = "?limit=2&file=bad.csv".to_owned();
    loop {
        let page = rejects_page(&app, &query).await;
        let items = page["rejects"].as_array().cloned().unwrap_or_default();
        seen.extend(
            items
                .iter()
                .map(|r| r["key"].as_str().unwrap_or("").to_owned()),
        );
        match page["next"].as_str() {
            Some(next) => {
                assert_eq!(items.len(), 2);
                query = next.trim_start_matches("/v1/rejects").to_owned();
            }
            None => break,
        }
    }
    assert_eq!(
        seen,
        [
            "bad.csv:6",
            "bad.csv:5",
            "bad.csv:4",
            "bad.csv:3",
            "bad.csv:2"
        ],
        "every reject of the file once, newest first"
    );

    // The CLI shows the same pages.
    let config = app.dir().join("cli.toml");
    std::fs::write(
        &config,
        format!(
            "[admin]\nlisten = \"{}\"\ntoken = \"{ADMIN_TOKEN}\"\n",
            app.admin
        ),
    )
    .expect("write config");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_spoki-sync"))
        .args([
            "rejects", "--limit", "3", "--source", "csv", "--json", "--config",
        ])
        .arg(&config)
        .output()
        .await
        .expect("run the binary");
    assert!(out.status.success(), "{out:?}");
    let page: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(page["rejects"][0]["key"], "other.csv:2", "{page}");
    let before = page["next_before"].as_i64().expect("a cursor");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_spoki-sync"))
        .args(["rejects", "--before", &before.to_string(), "--config"])
        .arg(&config)
        .output()
        .await
        .expect("run the binary");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("bad.csv:3") && text.contains("bad.csv:2"),
        "{text}"
    );
    assert!(!text.contains("other.csv"), "{text}");
    app.stop().await;
}
