//! The write-side switches (`writes.rs`), each off by default and answering as documented
//! when on.

use serde_json::{Value, json};

use super::writes::{DuplicateWording, TriggerLink, WriteSwitches};
use super::{SimConfig, SimHandle};

async fn sim(writes: WriteSwitches) -> SimHandle {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    super::start(
        listener,
        SimConfig {
            writes,
            ..SimConfig::default()
        },
    )
    .await
    .expect("start")
}

async fn call(
    sim: &SimHandle,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .request(method, format!("{}{path}", sim.base_url()))
        .header("X-Spoki-Api-Key", "sim-api-key");
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("answer");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_duplicate_code_is_refused_in_the_chosen_words() {
    for (wording, key) in [
        (DuplicateWording::English, "code"),
        (DuplicateWording::Italian, "code"),
        (DuplicateWording::BareCode, "code"),
        (DuplicateWording::Detail, "detail"),
    ] {
        let sim = sim(WriteSwitches {
            duplicate_wording: wording,
            ..WriteSwitches::default()
        })
        .await;
        sim.create_custom_field("CITTA");
        let body = json!({"label": "Città", "code": "CITTA", "field_type": 1});
        let (status, answer) =
            call(&sim, reqwest::Method::POST, "custom-fields/", Some(body)).await;
        assert_eq!(status, 400, "{wording:?}");
        assert!(answer.get(key).is_some(), "{wording:?}: {answer}");
        sim.shutdown();
    }
}

#[tokio::test]
async fn creates_fail_as_told_then_work() {
    let sim = sim(WriteSwitches {
        custom_field_create_failures: [401, 503].into(),
        ..WriteSwitches::default()
    })
    .await;
    let body = json!({"label": "Colore", "code": "COLORE", "field_type": 1, "example": "rosso"});
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let (status, _) = call(
            &sim,
            reqwest::Method::POST,
            "custom-fields/",
            Some(body.clone()),
        )
        .await;
        statuses.push(status);
    }
    assert_eq!(statuses, [401, 503, 201]);
    assert_eq!(sim.custom_field_codes(), ["COLORE"]);
    sim.shutdown();
}

#[tokio::test]
async fn trigger_links_reports_and_empty_bodies() {
    let sim = sim(WriteSwitches {
        trigger_link: TriggerLink::Missing,
        reports_gone: Some(404),
        empty_write_bodies: true,
        ..WriteSwitches::default()
    })
    .await;
    let automation = sim.fixtures().automation_id;
    let (_, found) = call(
        &sim,
        reqwest::Method::GET,
        &format!("automations/{automation}/"),
        None,
    )
    .await;
    assert!(found["webhook_set"][0].get("link").is_none(), "{found}");
    assert!(found["webhook_set"][0]["uuid"].is_string(), "{found}");
    let query = "?granularity=Day&start_date=2026-01-01&end_date=2026-01-02";
    let (gone, _) = call(
        &sim,
        reqwest::Method::GET,
        &format!("reports/{query}"),
        None,
    )
    .await;
    assert_eq!(gone, 404);
    let (ok, report) = call(
        &sim,
        reqwest::Method::GET,
        &format!("reports/detailed/{query}"),
        None,
    )
    .await;
    assert_eq!(ok, 200, "{report}");
    let (created, body) = call(
        &sim,
        reqwest::Method::POST,
        "lists/",
        Some(json!({"name": "x"})),
    )
    .await;
    assert_eq!((created, body), (201, Value::Null));
    let (channel, _) = call(
        &sim,
        reqwest::Method::POST,
        "channel/",
        Some(json!({"platform": 1})),
    )
    .await;
    assert_eq!(channel, 201);
    sim.shutdown();
}
