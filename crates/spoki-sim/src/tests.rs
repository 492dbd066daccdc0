//! End-to-end tests of the simulator: a real server on a loopback port, driven with reqwest.

use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use super::limits::BUILTIN_LIMITS;
use super::{Faults, Pagination, ReadVariants, SimConfig, SimHandle, UnknownCustomField, start};

pub(super) const KEY: &str = "test-key";

pub(super) async fn spawn_sim(config: SimConfig) -> SimHandle {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    start(
        listener,
        SimConfig {
            api_key: KEY.to_owned(),
            ..config
        },
    )
    .await
    .expect("start the simulator")
}

/// Spoki's limits lifted, for tests about something else.
pub(super) fn relaxed() -> SimConfig {
    SimConfig {
        default_limit: 10_000,
        limit_overrides: BUILTIN_LIMITS
            .iter()
            .map(|(endpoint, _)| ((*endpoint).to_owned(), 10_000))
            .collect(),
        ..SimConfig::default()
    }
}

pub(super) struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub raw: String,
    pub json: Value,
}

pub(super) struct Api {
    client: Client,
    base: String,
    key: Option<String>,
}

impl Api {
    pub(super) fn new(sim: &SimHandle) -> Self {
        Self {
            client: Client::new(),
            base: sim.base_url(),
            key: Some(KEY.to_owned()),
        }
    }

    pub(super) fn with_key(sim: &SimHandle, key: Option<&str>) -> Self {
        Self {
            key: key.map(str::to_owned),
            ..Self::new(sim)
        }
    }

    /// Calls outside `/api/1/` (automation starts), without an API key.
    pub(super) fn root(sim: &SimHandle) -> Self {
        Self {
            client: Client::new(),
            base: format!("http://{}/", sim.addr()),
            key: None,
        }
    }

    pub(super) async fn send(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        let url = format!("{}{path}", self.base);
        let mut request = self.client.request(method, url);
        if let Some(key) = &self.key {
            request = request.header("X-Spoki-Api-Key", key);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the simulator answers");
        let status = response.status();
        let headers = response.headers().clone();
        let raw = response.text().await.expect("a readable body");
        let json = serde_json::from_str(&raw).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            raw,
            json,
        }
    }

    pub(super) async fn get(&self, path: &str) -> Answer {
        self.send(Method::GET, path, None).await
    }

    pub(super) async fn post(&self, path: &str, body: Value) -> Answer {
        self.send(Method::POST, path, Some(body)).await
    }

    pub(super) async fn patch(&self, path: &str, body: Value) -> Answer {
        self.send(Method::PATCH, path, Some(body)).await
    }

    pub(super) async fn delete(&self, path: &str) -> Answer {
        self.send(Method::DELETE, path, None).await
    }
}

pub(super) fn phone(n: usize) -> String {
    format!("+39333{n:07}")
}

#[tokio::test]
async fn auth_comes_first_and_a_401_uses_no_slot() {
    let sim = spawn_sim(SimConfig::default()).await;
    let batch = json!([{"phone": phone(1)}]);
    for key in [None, Some("wrong")] {
        let answer = Api::with_key(&sim, key)
            .post("contacts/sync_all/", batch.clone())
            .await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            answer.json,
            json!({"detail": "Invalid or inactive X-Spoki-Api-Key."})
        );
    }
    assert!(sim.contacts().is_empty());
    // sync_all allows one call per window: the 401s did not use it.
    let answer = Api::new(&sim).post("contacts/sync_all/", batch).await;
    assert_eq!(answer.status, StatusCode::OK);
    let statuses: Vec<u16> = sim.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![401, 401, 200]);
}

#[tokio::test]
async fn sync_upserts_by_phone_and_changes_only_what_is_given() {
    let sim = spawn_sim(relaxed()).await;
    let api = Api::new(&sim);
    let field = api
        .post(
            "custom-fields/",
            json!({"label": "Order", "code": "ORDER_ID", "field_type": 1}),
        )
        .await;
    assert_eq!(field.status, StatusCode::CREATED);

    let first = api
        .post(
            "contacts/sync/",
            json!({"phone": phone(1), "first_name": "Mario", "last_name": "Rossi",
                   "email": "mario@example.it", "custom_fields": {"ORDER_ID": "1"}}),
        )
        .await;
    assert_eq!(first.status, StatusCode::OK);
    let id = first.json["id"].as_i64().expect("an integer id");
    assert_eq!(first.json["email"], "mario@example.it");
    assert_eq!(first.json["has_invalid_phone"], false);
    assert_eq!(first.json["tag_set"], json!([]));

    let second = api
        .post(
            "contacts/sync/",
            json!({"phone": phone(1), "custom_fields": {"ORDER_ID": "2", "NOT_A_FIELD": "x"}}),
        )
        .await;
    assert_eq!(second.status, StatusCode::OK);
    let c = &second.json;
    assert_eq!(c["id"], id);
    assert_eq!(
        (c["first_name"].as_str(), c["last_name"].as_str()),
        (Some("Mario"), Some("Rossi"))
    );
    assert_eq!(c["email"], "mario@example.it");
    let fields = c["contactfield_set"].as_array().expect("contactfield_set");
    assert_eq!(fields.len(), 1, "unknown codes are ignored by default");
    assert_eq!(fields[0]["value"], "2");
    assert_eq!(fields[0]["field"], field.json["id"]);
    assert_eq!(fields[0]["visual_code"], "%%ORDER_ID%%");
    assert_eq!(fields[0]["value_datetime"], Value::Null);
    assert_eq!(sim.contacts().len(), 1);
    assert_eq!(sim.custom_field_codes(), vec!["ORDER_ID"]);

    let patched = api
        .patch(
            &format!("contacts/{id}/"),
            json!({"first_name": "Luigi", "email": null, "is_blocked": true}),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK);
    assert_eq!(patched.json["first_name"], "Luigi");
    assert_eq!(patched.json["last_name"], "Rossi");
    assert_eq!(patched.json["email"], Value::Null);
    assert_eq!(patched.json["is_blocked"], true);
    assert_eq!(api.get(&format!("contacts/{id}/")).await.json, patched.json);
    assert_eq!(sim.contact_by_phone(&phone(1)), Some(patched.json.clone()));

    let no_phone = api.post("contacts/sync/", json!({"first_name": "X"})).await;
    assert_eq!(no_phone.status, StatusCode::BAD_REQUEST);
    assert_eq!(no_phone.json, json!({"phone": ["This field is required."]}));
    let national = api
        .post(
            "contacts/sync/",
            json!({"phone": "3331234567", "email": "nope@"}),
        )
        .await;
    assert_eq!(
        national.json,
        json!({"phone": ["Enter a valid phone number."], "email": ["Enter a valid email address."]})
    );
    let other = api.post("contacts/sync/", json!({"phone": phone(2)})).await;
    let taken = api
        .patch(
            &format!("contacts/{}/", other.json["id"]),
            json!({"phone": phone(1)}),
        )
        .await;
    assert_eq!(
        taken.json,
        json!({"phone": ["contact with this phone already exists."]})
    );

    let deleted = api.delete(&format!("contacts/{id}/")).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert!(deleted.raw.is_empty());
    let gone = api.get(&format!("contacts/{id}/")).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_eq!(gone.json, json!({"detail": "Not found."}));
    assert_eq!(api.get("contacts/abc/").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn sync_all_checks_the_whole_batch_before_writing() {
    let sim = spawn_sim(relaxed()).await;
    let api = Api::new(&sim);

    let wrapped = api
        .post(
            "contacts/sync_all/",
            json!({"contacts": [{"phone": phone(1)}]}),
        )
        .await;
    assert_eq!(wrapped.status, StatusCode::BAD_REQUEST);
    assert!(wrapped.json["detail"].is_string(), "{}", wrapped.json);
    assert_eq!(
        api.post("contacts/sync_all/", json!([])).await.status,
        StatusCode::BAD_REQUEST
    );
    let too_many: Vec<Value> = (0..501).map(|n| json!({"phone": phone(n)})).collect();
    let answer = api.post("contacts/sync_all/", Value::Array(too_many)).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        answer.json,
        json!({"detail": "Ensure this field has no more than 500 elements."})
    );

    let mixed = json!([
        {"phone": phone(1), "first_name": "Ok"},
        {"phone": "+39 333 1234567"},
        {"first_name": "No phone"},
        {"phone": phone(4), "email": "a@b"},
        "not an object"
    ]);
    let answer = api.post("contacts/sync_all/", mixed).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        answer.json,
        json!([
            {},
            {"phone": ["Enter a valid phone number."]},
            {"phone": ["This field is required."]},
            {"email": ["Enter a valid email address."]},
            {"non_field_errors": ["Invalid data. Expected a dictionary, but got str."]}
        ])
    );
    assert!(sim.contacts().is_empty(), "a rejected batch writes nothing");

    api.post(
        "contacts/sync/",
        json!({"phone": phone(0), "first_name": "Kept"}),
    )
    .await;
    let full: Vec<Value> = (0..500)
        .map(|n| json!({"phone": phone(n), "last_name": "L"}))
        .collect();
    let answer = api.post("contacts/sync_all/", Value::Array(full)).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json, json!({"created": 499, "updated": 1}));
    assert_eq!(sim.contacts().len(), 500);
    let kept = sim.contact_by_phone(&phone(0)).expect("stored");
    assert_eq!(
        (kept["first_name"].as_str(), kept["last_name"].as_str()),
        (Some("Kept"), Some("L"))
    );
}

#[tokio::test]
async fn list_sync_contacts_upserts_and_adds_members_once() {
    let sim = spawn_sim(relaxed()).await;
    let api = Api::new(&sim);
    let created = api.post("lists/", json!({"name": "Clienti"})).await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert_eq!(created.json["contacts_count"], 0);
    assert_eq!(created.json["color"], Value::Null);
    let list = created.json["id"].as_i64().expect("an integer id");
    let path = format!("lists/{list}/sync_contacts/");

    let bad = api
        .post(
            &path,
            json!({"contacts": [{"phone": phone(1)}, {"phone": "123"}]}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        bad.json,
        json!({"contacts": [{}, {"phone": ["Enter a valid phone number."]}]})
    );
    let bare = api.post(&path, json!([{"phone": phone(1)}])).await;
    assert_eq!(bare.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        api.post(&path, json!({})).await.json,
        json!({"contacts": ["This field is required."]})
    );
    assert!(sim.contacts().is_empty());

    let first = api
        .post(
            &path,
            json!({"contacts": [{"phone": phone(1)}, {"phone": phone(2)}]}),
        )
        .await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.json, json!({"created": 2, "updated": 0, "added": 2}));
    let again = api
        .post(
            &path,
            json!({"contacts": [{"phone": phone(1)}, {"phone": phone(3), "email": "c@x.it"}]}),
        )
        .await;
    assert_eq!(again.json, json!({"created": 1, "updated": 1, "added": 1}));
    assert_eq!(sim.list_members(list), vec![phone(1), phone(2), phone(3)]);
    assert_eq!(
        api.get(&format!("lists/{list}/")).await.json["contacts_count"],
        3
    );
    let member = sim.contact_by_phone(&phone(1)).expect("stored");
    assert_eq!(member["list_set"][0]["id"], list);

    let removed = api
        .post(
            &format!("lists/{list}/remove_contacts/"),
            json!({"phones": [phone(1)], "emails": ["c@x.it"]}),
        )
        .await;
    assert_eq!((removed.status, removed.json), (StatusCode::OK, json!({})));
    assert_eq!(sim.list_members(list), vec![phone(2)]);
    let cleared = api
        .post(&format!("lists/{list}/remove_all_contacts/"), json!({}))
        .await;
    assert_eq!(cleared.status, StatusCode::OK);
    assert!(sim.list_members(list).is_empty());
    assert_eq!(
        api.delete(&format!("lists/{list}/")).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(sim.contacts().len(), 3, "contacts survive their list");
    let unknown = api
        .post(&path, json!({"contacts": [{"phone": phone(9)}]}))
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);

    // No idempotency: the same create twice makes two lists.
    api.post("lists/", json!({"name": "Twice"})).await;
    api.post("lists/", json!({"name": "Twice"})).await;
    assert_eq!(api.get("lists/?search=twice").await.json["count"], 2);
}

#[tokio::test]
async fn throttled_calls_get_429_with_retry_after_and_leave_no_trace() {
    let sim = spawn_sim(SimConfig {
        window: Duration::from_secs(1),
        ..SimConfig::default()
    })
    .await;
    let api = Api::new(&sim);
    let ok = api
        .post("contacts/sync_all/", json!([{"phone": phone(1)}]))
        .await;
    assert_eq!(ok.status, StatusCode::OK);

    let refused = api
        .post("contacts/sync_all/", json!([{"phone": phone(2)}]))
        .await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.headers["retry-after"], "1");
    let wait_ms: u64 = refused.headers["x-sim-retry-after-ms"]
        .to_str()
        .ok()
        .and_then(|v| v.parse().ok())
        .expect("a millisecond count");
    assert!((1..=1000).contains(&wait_ms), "{wait_ms}");
    assert_eq!(
        refused.json,
        json!({"detail": "Request was throttled. Expected available in 1 seconds."})
    );
    assert!(sim.contact_by_phone(&phone(2)).is_none(), "no side effect");
    assert_eq!(sim.throttled_count(), 1);
    // Other endpoints have budgets of their own.
    assert_eq!(api.get("contacts/").await.status, StatusCode::OK);

    tokio::time::sleep(Duration::from_millis(wait_ms + 50)).await;
    // Had the 429 taken a slot, this would be refused again.
    let later = api
        .post("contacts/sync_all/", json!([{"phone": phone(2)}]))
        .await;
    assert_eq!(later.status, StatusCode::OK);

    // One budget for every list.
    let (a, b) = (sim.create_list("A"), sim.create_list("B"));
    let body = json!({"contacts": [{"phone": phone(3)}]});
    assert_eq!(
        api.post(&format!("lists/{a}/sync_contacts/"), body.clone())
            .await
            .status,
        StatusCode::OK
    );
    let other_list = api.post(&format!("lists/{b}/sync_contacts/"), body).await;
    assert_eq!(other_list.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(sim.list_members(b).is_empty());

    // Limits change at runtime.
    sim.set_limit("GET /contacts/{id}/", 0);
    assert_eq!(
        api.get("contacts/1/").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    sim.set_limit("GET /contacts/{id}/", 5);
    assert_eq!(api.get("contacts/1/").await.status, StatusCode::OK);
    assert_eq!(sim.throttled_count(), 3);
}

#[tokio::test]
async fn read_variants_change_the_shape_of_list_answers_and_write_bodies() {
    let sim = spawn_sim(relaxed()).await;
    let api = Api::new(&sim);
    let all: Vec<Value> = (0..20).map(|n| json!({"phone": phone(n)})).collect();
    api.post("contacts/sync_all/", Value::Array(all)).await;
    let base = sim.base_url();

    sim.set_read_variants(ReadVariants {
        pagination: Pagination::Cursor,
        relative_next: true,
        odd_records: true,
        ..ReadVariants::default()
    });
    let first = api.get("contacts/?page=2&page_size=200").await;
    assert!(
        first.json.get("count").is_none(),
        "a cursor page has no count"
    );
    let results = first.json["results"].as_array().expect("results");
    assert_eq!(results.len(), 15 + 5, "a fixed page plus the odd records");
    assert!(results[0]["phone"].is_null());
    assert!(
        results[5].get("brand_new_field").is_some(),
        "quirky real contacts"
    );
    let next = first.json["next"].as_str().expect("next");
    assert!(next.starts_with("/api/1/contacts/?cursor="), "{next}");
    let second = api.get(next.trim_start_matches("/api/1/")).await;
    assert_eq!(second.json["results"].as_array().map(Vec::len), Some(5));
    assert_eq!(second.json["next"], Value::Null);

    sim.set_read_variants(ReadVariants {
        pagination: Pagination::LimitOffset,
        invalid_page_from: Some(2),
        ..ReadVariants::default()
    });
    let first = api.get("contacts/?limit=8").await;
    assert_eq!(first.json["results"].as_array().map(Vec::len), Some(8));
    assert_eq!(
        first.json["next"],
        format!("{base}contacts/?limit=8&offset=8")
    );
    let gone = api.get("contacts/?limit=8&offset=8").await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_eq!(gone.json, json!({"detail": "Invalid page."}));

    sim.set_read_variants(ReadVariants {
        bare_arrays: true,
        empty_write_bodies: true,
        ..ReadVariants::default()
    });
    let bare = api.get("contacts/").await;
    assert_eq!(bare.json.as_array().map(Vec::len), Some(20));
    let wrote = api
        .post("contacts/sync/", json!({"phone": phone(30)}))
        .await;
    assert_eq!(wrote.status, StatusCode::OK);
    assert_eq!(wrote.raw, "");
}

#[tokio::test]
async fn pagination_envelope_links_and_invalid_pages() {
    let sim = spawn_sim(SimConfig {
        page_size_max: 25,
        ..relaxed()
    })
    .await;
    let api = Api::new(&sim);
    let all: Vec<Value> = (0..40).map(|n| json!({"phone": phone(n)})).collect();
    api.post("contacts/sync_all/", Value::Array(all)).await;
    let base = sim.base_url();

    let first = api.get("contacts/").await;
    assert_eq!(first.json["count"], 40);
    assert_eq!(first.json["results"].as_array().map(Vec::len), Some(15));
    assert_eq!(first.json["previous"], Value::Null);
    assert_eq!(first.json["next"], format!("{base}contacts/?page=2"));

    let next = first.json["next"].as_str().expect("a next link");
    let second = api.get(next.trim_start_matches(base.as_str())).await;
    assert_eq!(second.json["previous"], format!("{base}contacts/"));
    assert_eq!(second.json["results"][0]["phone"], phone(15));
    let third = api.get("contacts/?page=3").await;
    assert_eq!(third.json["results"].as_array().map(Vec::len), Some(10));
    assert_eq!(third.json["next"], Value::Null);

    for bad in ["contacts/?page=4", "contacts/?page=0", "contacts/?page=two"] {
        let answer = api.get(bad).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{bad}");
        assert_eq!(answer.json, json!({"detail": "Invalid page."}));
    }
    let capped = api.get("contacts/?page_size=500").await;
    assert_eq!(capped.json["results"].as_array().map(Vec::len), Some(25));
    assert_eq!(
        capped.json["next"],
        format!("{base}contacts/?page=2&page_size=500")
    );
    let empty = api.get("contacts/?first_name=Nobody").await;
    assert_eq!(
        empty.json,
        json!({"count": 0, "next": null, "previous": null, "results": []})
    );
}

#[tokio::test]
async fn phone_filter_needs_the_plus_percent_encoded() {
    let sim = spawn_sim(relaxed()).await;
    let api = Api::new(&sim);
    api.post(
        "contacts/sync/",
        json!({"phone": "+393331234567", "notes": "VIP"}),
    )
    .await;
    api.post(
        "contacts/sync/",
        json!({"phone": "+393339999999", "language": "en"}),
    )
    .await;
    let count = |answer: Answer| answer.json["count"].clone();
    assert_eq!(count(api.get("contacts/?phone=%2B393331234567").await), 1);
    assert_eq!(count(api.get("contacts/?phone=+393331234567").await), 0);
    assert_eq!(count(api.get("contacts/?phone=393331234567").await), 0);
    assert_eq!(
        count(api.get("contacts/?phone=").await),
        2,
        "an empty filter is ignored"
    );
    assert_eq!(count(api.get("contacts/?search=vip").await), 1);
    assert_eq!(count(api.get("contacts/?search=+3933").await), 2);
    assert_eq!(count(api.get("contacts/?language=en").await), 1);
    assert_eq!(count(api.get("contacts/?is_blocked=false").await), 2);
    assert_eq!(count(api.get("contacts/?status=Not+Declared").await), 2);
    assert_eq!(
        api.get("contacts/?status=Maybe").await.status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn a_503_fault_comes_before_any_side_effect() {
    let sim = spawn_sim(SimConfig::default()).await;
    let api = Api::new(&sim);
    sim.set_faults(Faults {
        error_503_rate: 1.0,
        ..Faults::default()
    });
    let answer = api
        .post("contacts/sync_all/", json!([{"phone": phone(1)}]))
        .await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.json, json!({"detail": "Service unavailable"}));
    assert!(sim.contacts().is_empty());
    let recorded = sim.requests();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].status, 503);
    assert_eq!(recorded[0].path, "/api/1/contacts/sync_all/");
    assert_eq!(recorded[0].body, json!([{"phone": phone(1)}]));

    // Faults can also be changed over HTTP, without the API key.
    let reset = Client::new()
        .post(format!("http://{}/_sim/faults", sim.addr()))
        .json(&json!({}))
        .send()
        .await
        .expect("the simulator answers");
    assert_eq!(reset.status(), StatusCode::OK);
    // The 503 used no slot of sync_all's one-per-window budget.
    let answer = api
        .post("contacts/sync_all/", json!([{"phone": phone(1)}]))
        .await;
    assert_eq!(answer.status, StatusCode::OK);
}

#[tokio::test]
async fn a_late_answer_still_applies_the_write() {
    let sim = spawn_sim(SimConfig::default()).await;
    sim.set_faults(Faults {
        drop_after_write_rate: 1.0,
        late_answer_delay_ms: 1500,
        ..Faults::default()
    });
    let client = Client::builder()
        .timeout(Duration::from_millis(200))
        .build()
        .expect("a client");
    let error = client
        .post(format!("{}contacts/sync/", sim.base_url()))
        .header("X-Spoki-Api-Key", KEY)
        .json(&json!({"phone": phone(1)}))
        .send()
        .await
        .expect_err("the answer comes after the timeout");
    assert!(error.is_timeout());
    assert!(sim.contact_by_phone(&phone(1)).is_some());
    assert_eq!(sim.requests()[0].status, 200);
}

#[tokio::test]
async fn custom_fields_are_validated_like_spoki() {
    let sim = spawn_sim(relaxed()).await;
    let api = Api::new(&sim);
    let cases = [
        (
            json!({"label": "L", "code": "order id", "field_type": 1}),
            "code",
        ),
        (
            json!({"label": "L", "code": "EMAIL", "field_type": 1}),
            "code",
        ),
        (
            json!({"label": "L", "code": "OK", "field_type": 9}),
            "field_type",
        ),
        (json!({"code": "OK", "field_type": 1}), "label"),
        (json!({"label": "L", "field_type": 1}), "code"),
    ];
    for (body, field) in cases {
        let answer = api.post("custom-fields/", body.clone()).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{body}");
        assert!(
            answer.json[field][0].is_string(),
            "{body} → {}",
            answer.json
        );
    }
    assert_eq!(
        api.post(
            "custom-fields/",
            json!({"label": "L", "code": "OK", "field_type": 9})
        )
        .await
        .json,
        json!({"field_type": ["\"9\" is not a valid choice."]})
    );
    assert!(sim.custom_field_codes().is_empty());

    let created = api
        .post(
            "custom-fields/",
            json!({"label": "Order", "code": "ORDER_ID", "field_type": 1, "example": "A1"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let id = created.json["id"].as_i64().expect("an integer id");
    assert_eq!(
        created.json,
        json!({"id": id, "label": "Order", "code": "ORDER_ID", "field_type": 1, "example": "A1"})
    );
    let duplicate = api
        .post(
            "custom-fields/",
            json!({"label": "Again", "code": "ORDER_ID", "field_type": 1}),
        )
        .await;
    assert_eq!(
        duplicate.json,
        json!({"code": ["custom field with this code already exists."]})
    );

    let patched = api
        .patch(
            &format!("custom-fields/{id}/"),
            json!({"label": "Ordine", "code": "OTHER", "field_type": 2}),
        )
        .await;
    assert_eq!(patched.json["label"], "Ordine");
    assert_eq!(
        (
            patched.json["code"].as_str(),
            patched.json["field_type"].as_i64()
        ),
        (Some("ORDER_ID"), Some(1))
    );
    let listed = api.get("custom-fields/?search=ordine").await;
    assert_eq!(listed.json["count"], 1);

    api.post(
        "contacts/sync/",
        json!({"phone": phone(1), "custom_fields": {"ORDER_ID": "7"}}),
    )
    .await;
    assert_eq!(
        api.delete(&format!("custom-fields/{id}/")).await.status,
        StatusCode::NO_CONTENT
    );
    assert!(sim.custom_field_codes().is_empty());
    let contact = sim.contact_by_phone(&phone(1)).expect("stored");
    assert_eq!(contact["contactfield_set"], json!([]));
}

#[tokio::test]
async fn unknown_custom_field_codes_can_be_rejected_or_created() {
    let reject = spawn_sim(SimConfig {
        unknown_custom_field: UnknownCustomField::Reject,
        ..relaxed()
    })
    .await;
    let answer = Api::new(&reject)
        .post(
            "contacts/sync/",
            json!({"phone": phone(1), "custom_fields": {"NOPE": "x"}}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(
        answer.json["custom_fields"]["NOPE"][0].is_string(),
        "{}",
        answer.json
    );
    assert!(reject.contacts().is_empty());

    let create = spawn_sim(SimConfig {
        unknown_custom_field: UnknownCustomField::Create,
        ..relaxed()
    })
    .await;
    let answer = Api::new(&create)
        .post(
            "contacts/sync/",
            json!({"phone": phone(1), "custom_fields": {"CITTA": "Roma"}}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(create.custom_field_codes(), vec!["CITTA"]);
    assert_eq!(answer.json["contactfield_set"][0]["value"], "Roma");
}

#[tokio::test]
async fn operators_must_be_known() {
    let sim = spawn_sim(relaxed()).await;
    let api = Api::new(&sim);
    let id = api
        .post("contacts/sync/", json!({"phone": phone(1)}))
        .await
        .json["id"]
        .clone();
    let known = api
        .post(
            &format!("contacts/{id}/add_operator/"),
            json!({"email": "operator@example.com"}),
        )
        .await;
    assert_eq!(known.status, StatusCode::OK);
    let unknown = api
        .post(
            &format!("contacts/{id}/remove_operator/"),
            json!({"email": "stranger@example.com"}),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        unknown.json,
        json!({"code": "spoki::3004", "detail": "No operator found with this email"})
    );
    let no_contact = api
        .post(
            "contacts/999/add_operator/",
            json!({"email": "operator@example.com"}),
        )
        .await;
    assert_eq!(no_contact.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn unknown_paths_methods_and_bodies() {
    let sim = spawn_sim(relaxed()).await;
    let api = Api::new(&sim);
    for path in ["contacts", "tagz/", "contacts/1/nothing/"] {
        let answer = api.get(path).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(answer.json, json!({"detail": "Not found."}));
    }
    let put = api.send(Method::PUT, "contacts/1/", Some(json!({}))).await;
    assert_eq!(put.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(put.headers["allow"], "GET, PATCH, DELETE");
    assert_eq!(
        api.get("contacts/sync/").await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );

    let client = Client::new();
    let raw = |body: &'static str, content_type: &'static str| {
        client
            .post(format!("{}contacts/sync/", sim.base_url()))
            .header("X-Spoki-Api-Key", KEY)
            .header("Content-Type", content_type)
            .body(body)
            .send()
    };
    let malformed = raw("{\"phone\": ", "application/json")
        .await
        .expect("an answer");
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
    let detail: Value = malformed.json().await.expect("a JSON body");
    assert!(
        detail["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("JSON parse error - ")),
        "{detail}"
    );
    let text = raw("phone=+39", "text/plain").await.expect("an answer");
    assert_eq!(text.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let recorded = sim.requests();
    assert_eq!(
        recorded.iter().rev().nth(1).map(|r| r.body.clone()),
        Some(Value::Null)
    );
    assert!(
        recorded
            .windows(2)
            .all(|w| w[0].seq < w[1].seq && w[0].at_ms <= w[1].at_ms)
    );
}

#[tokio::test]
async fn introspection_routes_need_no_key() {
    let sim = spawn_sim(relaxed()).await;
    Api::new(&sim)
        .post("contacts/sync/", json!({"phone": phone(1)}))
        .await;
    Api::with_key(&sim, None).get("contacts/").await;
    let client = Client::new();
    let get = |path: &'static str| {
        let url = format!("http://{}{path}", sim.addr());
        let client = client.clone();
        async move {
            let response = client.get(url).send().await.expect("an answer");
            assert_eq!(response.status(), StatusCode::OK);
            response.json::<Value>().await.expect("a JSON body")
        }
    };
    assert_eq!(
        get("/_sim/stats").await,
        json!({"throttled": 0, "requests": 2, "contacts": 1})
    );
    assert_eq!(get("/_sim/contacts").await[0]["phone"], phone(1));
    let requests = get("/_sim/requests").await;
    assert_eq!(requests[1]["status"], 401);
    assert_eq!(requests[1]["query"], "");
}

#[tokio::test]
async fn shutdown_stops_serving() {
    let sim = spawn_sim(SimConfig::default()).await;
    assert_eq!(Api::new(&sim).get("contacts/").await.status, StatusCode::OK);
    sim.shutdown();
    let client = Client::new();
    let mut refused = false;
    for _ in 0..50 {
        if client
            .get(format!("{}contacts/", sim.base_url()))
            .send()
            .await
            .is_err()
        {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "still serving after shutdown");
}
