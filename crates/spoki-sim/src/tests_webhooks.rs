//! End-to-end tests of the contact event webhooks and the UI hooks: a real simulator and a
//! small axum receiver, both on loopback ports. The receiver checks signatures itself, over
//! the raw bytes it got, with its own HMAC code.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use axum::routing::post;
use chrono::Utc;
use hmac::{Hmac, Mac};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::net::TcpListener;

use super::tests::{Api, phone, relaxed, spawn_sim};
use super::{SimConfig, SimHandle, Tamper};

const SECRET: &str = "whsec_test-secret";

/// One request the receiver got, as it came.
#[derive(Clone, Debug)]
struct Received {
    headers: HeaderMap,
    raw: Bytes,
    json: Value,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// (t, v2) of `X-Spoki-Signature`.
    fn signature(&self) -> (i64, String) {
        let header = self.header("x-spoki-signature");
        let mut t = None;
        let mut v2 = None;
        for part in header.split(',') {
            match part.split_once('=') {
                Some(("t", value)) => t = value.parse().ok(),
                Some(("v2", value)) => v2 = Some(value.to_owned()),
                _ => panic!("unexpected signature part {part:?} in {header:?}"),
            }
        }
        (t.expect("a t= part"), v2.expect("a v2= part"))
    }

    /// Whether `v2` is the HMAC-SHA256 of "<t>.<raw body>" under `secret`.
    fn verifies(&self, secret: &str) -> bool {
        let (t, v2) = self.signature();
        let Ok(expected) = (0..v2.len())
            .step_by(2)
            .map(|i| {
                v2.get(i..i + 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
            })
            .collect::<Option<Vec<u8>>>()
            .ok_or(())
        else {
            return false;
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key");
        mac.update(format!("{t}.").as_bytes());
        mac.update(&self.raw);
        mac.verify_slice(&expected).is_ok()
    }

    fn event(&self) -> &str {
        self.json["event"].as_str().unwrap_or("")
    }

    fn uuid(&self) -> &str {
        self.json["event_uuid"].as_str().unwrap_or("")
    }

    fn phone(&self) -> &str {
        self.json["data"]["phone"].as_str().unwrap_or("")
    }
}

/// A webhook receiver recording what it gets; it answers the queued statuses first, then 200.
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Received>>>,
    statuses: Arc<Mutex<VecDeque<u16>>>,
}

impl Receiver {
    async fn spawn() -> (Self, String) {
        let receiver = Self::default();
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(receiver.clone());
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let url = format!(
            "http://{}/hook",
            listener.local_addr().expect("a local address")
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        (receiver, url)
    }

    fn got(&self) -> Vec<Received> {
        self.got.lock().expect("receiver lock").clone()
    }

    fn answer_next(&self, statuses: &[u16]) {
        self.statuses
            .lock()
            .expect("receiver lock")
            .extend(statuses.iter().copied());
    }

    /// (event, phone) of everything received, in order.
    fn summary(&self) -> Vec<(String, String)> {
        self.got()
            .iter()
            .map(|r| (r.event().to_owned(), r.phone().to_owned()))
            .collect()
    }
}

async fn receive(State(receiver): State<Receiver>, headers: HeaderMap, raw: Bytes) -> AxumStatus {
    let json = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    receiver
        .got
        .lock()
        .expect("receiver lock")
        .push(Received { headers, raw, json });
    let status = receiver
        .statuses
        .lock()
        .expect("receiver lock")
        .pop_front()
        .unwrap_or(200);
    AxumStatus::from_u16(status).expect("a status")
}

/// A simulator posting its events to a new receiver, retrying 20 ms apart.
async fn sim_with_receiver() -> (SimHandle, Receiver) {
    let (receiver, url) = Receiver::spawn().await;
    let sim = spawn_sim(SimConfig {
        event_webhook: Some((url, SECRET.to_owned())),
        event_webhook_retry_pause: Duration::from_millis(20),
        ..relaxed()
    })
    .await;
    (sim, receiver)
}

/// Waits until every queued event was delivered or given up.
async fn settle(sim: &SimHandle) {
    for _ in 0..1000 {
        if sim.webhooks_in_flight() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{} deliveries still in flight", sim.webhooks_in_flight());
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(event, phone)| ((*event).to_owned(), (*phone).to_owned()))
        .collect()
}

fn contact_id(answer: &Value) -> i64 {
    answer["id"].as_i64().expect("an integer id")
}

#[tokio::test]
async fn every_api_change_is_posted_signed_and_in_order() {
    let (sim, receiver) = sim_with_receiver().await;
    let api = Api::new(&sim);
    let field = sim.create_custom_field("ORDER_ID");
    let (p1, p2, p3, p4, p5, p6) = (phone(1), phone(2), phone(3), phone(4), phone(5), phone(6));

    let created = api
        .post(
            "contacts/sync/",
            json!({"phone": p1, "first_name": "Mario"}),
        )
        .await;
    let id1 = contact_id(&created.json);
    // Nothing changes: no event.
    api.post(
        "contacts/sync/",
        json!({"phone": p1, "first_name": "Mario"}),
    )
    .await;
    api.post(
        "contacts/sync/",
        json!({"phone": p1, "custom_fields": {"ORDER_ID": "7"}}),
    )
    .await;
    let patched = api
        .patch(&format!("contacts/{id1}/"), json!({"last_name": "Rossi"}))
        .await;
    assert_eq!(patched.status, StatusCode::OK);
    api.patch(&format!("contacts/{id1}/"), json!({"last_name": "Rossi"}))
        .await;
    let bulk = api
        .post(
            "contacts/sync_all/",
            json!([{"phone": p2}, {"phone": p3}, {"phone": p1, "first_name": "Mario"}]),
        )
        .await;
    assert_eq!(bulk.status, StatusCode::OK);
    let list = sim.create_list("VIP");
    let synced = api
        .post(
            &format!("lists/{list}/sync_contacts/"),
            json!({"contacts": [{"phone": p4}, {"phone": p2, "email": "b@example.it"}]}),
        )
        .await;
    assert_eq!(synced.status, StatusCode::OK);
    let fx = sim.fixtures();
    let started = Api::root(&sim)
        .post(
            &format!("wh/ap/{}/", fx.automation_uuid),
            json!({"secret": fx.automation_secret, "phone": p5}),
        )
        .await;
    assert_eq!(started.status, StatusCode::OK);
    let ticket = api
        .post(
            "tickets/",
            json!({"contact_phone": p6, "title": "Help", "status": "Open"}),
        )
        .await;
    assert_eq!(ticket.status, StatusCode::CREATED);
    // A ticket for a known contact changes no contact.
    api.post(
        "tickets/",
        json!({"contact_phone": p6, "title": "Again", "status": "Open"}),
    )
    .await;
    // Refused calls change nothing.
    assert_eq!(
        api.post("contacts/sync/", json!({"phone": "393331"}))
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        api.delete("contacts/999/").await.status,
        StatusCode::NOT_FOUND
    );
    // Deleting a custom field updates the contacts that had a value for it.
    assert_eq!(
        api.delete(&format!("custom-fields/{field}/")).await.status,
        StatusCode::NO_CONTENT
    );
    let before_delete = api.get(&format!("contacts/{id1}/")).await.json;
    assert_eq!(
        api.delete(&format!("contacts/{id1}/")).await.status,
        StatusCode::NO_CONTENT
    );
    settle(&sim).await;

    assert_eq!(
        receiver.summary(),
        pairs(&[
            ("contact.created", &p1),
            ("contact.updated", &p1),
            ("contact.updated", &p1),
            ("contact.created", &p2),
            ("contact.created", &p3),
            ("contact.created", &p4),
            ("contact.updated", &p2),
            ("contact.created", &p5),
            ("contact.created", &p6),
            ("contact.updated", &p1),
            ("contact.deleted", &p1),
        ])
    );
    let got = receiver.got();
    let now = Utc::now().timestamp();
    let mut uuids = std::collections::HashSet::new();
    for request in &got {
        assert!(request.verifies(SECRET), "signature of {:?}", request.json);
        assert!(!request.verifies("another secret"));
        let (t, v2) = request.signature();
        assert!((now - t).abs() < 60, "fresh t");
        assert_eq!(v2.len(), 64);
        assert!(v2.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')));
        assert_eq!(request.header("content-type"), "application/json");
        assert_eq!(request.header("x-spoki-account"), "1001");
        let envelope = request.json.as_object().expect("an object");
        let mut keys: Vec<&str> = envelope.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            vec!["data", "event", "event_uuid", "timestamp", "version"]
        );
        assert_eq!(request.json["version"], 2);
        let timestamp = request.json["timestamp"].as_i64().expect("unix seconds");
        assert!((now - timestamp).abs() < 60);
        let uuid = uuid::Uuid::parse_str(request.uuid()).expect("a uuid");
        assert_eq!(uuid.get_version_num(), 4);
        assert!(uuids.insert(request.uuid().to_owned()), "unique event_uuid");
    }
    // The data is the contact as GET contacts/{id}/ shows it after the change.
    assert_eq!(got[0].json["data"], created.json);
    assert_eq!(got[1].json["data"]["contactfield_set"][0]["value"], "7");
    assert_eq!(got[2].json["data"], patched.json);
    assert_eq!(got[5].json["data"]["list_set"][0]["id"], list);
    assert_eq!(got[6].json["data"]["email"], "b@example.it");
    assert_eq!(got[8].json["data"]["id"], ticket.json["contact"]["id"]);
    assert_eq!(
        got[8].json["data"]["status"], "Not Declared",
        "the full contact"
    );
    assert_eq!(got[9].json["data"]["contactfield_set"], json!([]));
    assert_eq!(got[10].json["data"], before_delete);
    assert_eq!(got[10].json["data"]["id"], id1);

    let deliveries = sim.webhook_deliveries();
    assert_eq!(deliveries.len(), got.len());
    for (delivery, request) in deliveries.iter().zip(&got) {
        assert_eq!(delivery.event, request.event());
        assert_eq!(delivery.event_uuid, request.uuid());
        assert_eq!(delivery.body, request.json);
        assert_eq!(
            (delivery.attempt, delivery.status, &delivery.tamper),
            (1, Some(200), &Tamper::None)
        );
    }
}

#[tokio::test]
async fn ui_hooks_fire_events_but_are_no_api_calls() {
    let (receiver, url) = Receiver::spawn().await;
    // Strict limits: the UI hooks must not be throttled nor use a slot.
    let sim = spawn_sim(SimConfig::default()).await;
    assert_eq!(SimConfig::default().event_webhook, None);
    assert_eq!(
        SimConfig::default().event_webhook_retry_pause,
        Duration::from_millis(500)
    );
    // No webhook yet: changes send nothing.
    let early = sim.ui_upsert_contact(&phone(9), json!({"first_name": "Early"}));
    assert!(early > 0);
    settle(&sim).await;
    assert!(sim.webhook_deliveries().is_empty());

    sim.set_event_webhook(Some(url), SECRET);
    let (p1, p2) = (phone(1), phone(2));
    let id = sim.ui_upsert_contact(
        &p1,
        json!({"first_name": "Anna", "last_name": "Bianchi", "email": "anna@example.it",
               "language": "it", "custom_fields": {"PLATE": "AB123CD"}}),
    );
    assert_eq!(
        sim.ui_upsert_contact(&p1, json!({"first_name": "Anna"})),
        id,
        "nothing changes"
    );
    assert_eq!(sim.ui_upsert_contact(&p1, json!({"language": "en"})), id);
    for _ in 0..3 {
        sim.ui_upsert_contact(&p2, Value::Null);
    }
    assert_eq!(
        sim.ui_upsert_contact("3331234567", json!({})),
        0,
        "not E.164"
    );
    assert!(sim.ui_delete_contact(&p1));
    assert!(!sim.ui_delete_contact(&p1));

    // The same over HTTP.
    let client = Client::new();
    let root = format!("http://{}", sim.addr());
    let upserted = client
        .post(format!("{root}/_sim/ui/contacts"))
        .json(&json!({"phone": p2, "last_name": "Verdi"}))
        .send()
        .await
        .expect("an answer");
    assert_eq!(upserted.status(), StatusCode::OK);
    let upserted: Value = upserted.json().await.expect("a contact");
    assert_eq!(upserted["last_name"], "Verdi");
    let refused = client
        .post(format!("{root}/_sim/ui/contacts"))
        .json(&json!({"phone": p2, "email": "not an e-mail"}))
        .send()
        .await
        .expect("an answer");
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let deleted = client
        .delete(format!("{root}/_sim/ui/contacts/%2B393330000002"))
        .send()
        .await
        .expect("an answer");
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let missing = client
        .delete(format!("{root}/_sim/ui/contacts/%2B393330000002"))
        .send()
        .await
        .expect("an answer");
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    settle(&sim).await;

    assert_eq!(
        receiver.summary(),
        pairs(&[
            ("contact.created", &p1),
            ("contact.updated", &p1),
            ("contact.created", &p2),
            ("contact.deleted", &p1),
            ("contact.updated", &p2),
            ("contact.deleted", &p2),
        ])
    );
    let got = receiver.got();
    assert!(got.iter().all(|r| r.verifies(SECRET)));
    let data = &got[0].json["data"];
    assert_eq!(data["id"], id);
    assert_eq!(
        (&data["first_name"], &data["last_name"], &data["email"]),
        (&json!("Anna"), &json!("Bianchi"), &json!("anna@example.it"))
    );
    assert_eq!(data["contactfield_set"][0]["visual_code"], "%%PLATE%%");
    assert_eq!(data["contactfield_set"][0]["value"], "AB123CD");
    assert_eq!(got[1].json["data"]["language"], "en");
    assert_eq!(got[3].json["data"]["id"], id);
    assert_eq!(got[4].json["data"], upserted);
    assert_eq!(sim.custom_field_codes(), vec!["PLATE"]);

    assert!(sim.requests().is_empty(), "UI edits are not API calls");
    assert_eq!(sim.throttled_count(), 0);
    let over_http: Vec<Value> = client
        .get(format!("{root}/_sim/webhook-deliveries"))
        .send()
        .await
        .expect("an answer")
        .json()
        .await
        .expect("a JSON array");
    assert_eq!(over_http.len(), 6);
    assert_eq!(over_http[0]["event"], "contact.created");
    assert_eq!(over_http[0]["attempt"], 1);
    assert_eq!(over_http[0]["status"], 200);
    assert_eq!(over_http[0]["tamper"], "None");
    assert_eq!(over_http[0]["event_uuid"], got[0].uuid());

    // Turned off again: nothing more is sent.
    sim.set_event_webhook(None, "");
    sim.ui_upsert_contact(&phone(3), json!({}));
    settle(&sim).await;
    assert_eq!(receiver.got().len(), 6);
}

#[tokio::test]
async fn failed_deliveries_are_retried_three_times_in_order() {
    let (sim, receiver) = sim_with_receiver().await;
    receiver.answer_next(&[500, 200, 500, 503, 404]);
    sim.ui_upsert_contact(&phone(1), json!({}));
    sim.ui_upsert_contact(&phone(2), json!({}));
    sim.ui_upsert_contact(&phone(3), json!({}));
    settle(&sim).await;

    let got = receiver.got();
    assert_eq!(
        receiver.summary(),
        pairs(&[
            ("contact.created", &phone(1)),
            ("contact.created", &phone(1)),
            ("contact.created", &phone(2)),
            ("contact.created", &phone(2)),
            ("contact.created", &phone(2)),
            ("contact.created", &phone(3)),
        ])
    );
    assert_eq!(got[0].raw, got[1].raw, "a retry sends the same body");
    assert!(got.iter().all(|r| r.verifies(SECRET)));
    let attempts: Vec<(u32, Option<u16>)> = sim
        .webhook_deliveries()
        .iter()
        .map(|d| (d.attempt, d.status))
        .collect();
    assert_eq!(
        attempts,
        vec![
            (1, Some(500)),
            (2, Some(200)),
            (1, Some(500)),
            (2, Some(503)),
            (3, Some(404)),
            (1, Some(200)),
        ]
    );

    // Nobody listening: three attempts, each a connection error.
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/hook", closed.local_addr().expect("an address"));
    drop(closed);
    sim.set_event_webhook(Some(url), SECRET);
    sim.ui_upsert_contact(&phone(4), json!({}));
    settle(&sim).await;
    let last: Vec<(u32, Option<u16>)> = sim.webhook_deliveries()[6..]
        .iter()
        .map(|d| (d.attempt, d.status))
        .collect();
    assert_eq!(last, vec![(1, None), (2, None), (3, None)]);
}

#[tokio::test]
async fn tamper_modes_spoil_the_next_deliveries() {
    let (sim, receiver) = sim_with_receiver().await;
    let upsert = |n: usize| sim.ui_upsert_contact(&phone(n), json!({}));

    sim.set_webhook_tamper(Tamper::BadSignature, Some(1));
    upsert(1);
    upsert(2);
    sim.set_webhook_tamper(Tamper::StaleTimestamp, Some(1));
    upsert(3);
    upsert(4);
    settle(&sim).await;
    let got = receiver.got();
    assert_eq!(got.len(), 4);
    assert!(!got[0].verifies(SECRET), "bad signature");
    assert_eq!(got[0].signature().1.len(), 64);
    assert!(got[1].verifies(SECRET), "only the next one");
    let now = Utc::now().timestamp();
    let (stale_t, _) = got[2].signature();
    assert!(((now - 1000) - stale_t).abs() < 30, "t is 1000 s old");
    assert!(got[2].verifies(SECRET), "correctly signed for that t");
    assert!(
        got[2].json["timestamp"]
            .as_i64()
            .is_some_and(|ts| (now - ts).abs() < 30)
    );
    assert!((now - got[3].signature().0).abs() < 30);

    // Replay: the last delivered request again, byte for byte, then the new event.
    sim.set_webhook_tamper(Tamper::Replay, Some(1));
    upsert(5);
    upsert(6);
    settle(&sim).await;
    let got = receiver.got();
    assert_eq!(got.len(), 7);
    assert_eq!(got[4].uuid(), got[3].uuid(), "the event_uuid repeats");
    assert_eq!(got[4].raw, got[3].raw);
    assert_eq!(
        got[4].header("x-spoki-signature"),
        got[3].header("x-spoki-signature")
    );
    assert_eq!(got[5].phone(), phone(5));
    assert_eq!(got[6].phone(), phone(6));
    let mut uuids: Vec<&str> = got[5..].iter().map(Received::uuid).collect();
    uuids.dedup();
    assert_eq!(uuids.len(), 2);

    // Until reset, set over HTTP.
    let client = Client::new();
    let answer = client
        .post(format!("http://{}/_sim/webhook-tamper", sim.addr()))
        .json(&json!({"tamper": "BadSignature", "count": null}))
        .send()
        .await
        .expect("an answer");
    assert_eq!(answer.status(), StatusCode::OK);
    upsert(7);
    upsert(8);
    upsert(9);
    sim.set_webhook_tamper(Tamper::None, None);
    upsert(10);
    settle(&sim).await;
    let got = receiver.got();
    let verified: Vec<bool> = got[7..].iter().map(|r| r.verifies(SECRET)).collect();
    assert_eq!(verified, vec![false, false, false, true]);

    let tampers: Vec<Tamper> = sim
        .webhook_deliveries()
        .into_iter()
        .map(|d| d.tamper)
        .collect();
    use Tamper::{BadSignature as Bad, None as Clean, Replay, StaleTimestamp as Stale};
    assert_eq!(
        tampers,
        vec![
            Bad, Clean, Stale, Clean, Replay, Clean, Clean, Bad, Bad, Bad, Clean
        ]
    );
}

#[tokio::test]
async fn a_replay_with_nothing_delivered_yet_repeats_the_event_itself() {
    let (sim, receiver) = sim_with_receiver().await;
    sim.set_webhook_tamper(Tamper::Replay, Some(1));
    sim.ui_upsert_contact(&phone(1), json!({}));
    settle(&sim).await;
    let got = receiver.got();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].raw, got[1].raw);
    assert_eq!(got[0].uuid(), got[1].uuid());
    assert!(got.iter().all(|r| r.verifies(SECRET)));
    let tampers: Vec<Tamper> = sim
        .webhook_deliveries()
        .into_iter()
        .map(|d| d.tamper)
        .collect();
    assert_eq!(tampers, vec![Tamper::None, Tamper::Replay]);
}
