//! End-to-end tests of the endpoints beyond contacts, lists and custom fields: the fixed world,
//! tags, templates, media, tickets, automations and their start URLs, campaigns, accounts,
//! reports, roles and invitations. Same style as `tests.rs`: a real server on loopback.

use std::time::Duration;

use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

use super::tests::{Api, KEY, phone, relaxed, spawn_sim};
use super::{AutomationStartBody, SimConfig};

fn id_of(answer: &Value) -> i64 {
    answer["id"].as_i64().expect("an integer id")
}

#[tokio::test]
async fn the_fixed_world_is_served() {
    let sim = spawn_sim(relaxed()).await;
    let api = Api::new(&sim);
    let fx = sim.fixtures();
    assert_eq!(fx.account_id, 1001);

    let tags = api.get("tags/").await;
    assert_eq!(tags.json["count"], 1);
    let tag = api.get(&format!("tags/{}/", fx.tag_id)).await;
    assert_eq!(tag.json, tags.json["results"][0]);
    let keys: Vec<&str> = tag
        .json
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    assert_eq!(keys, vec!["color", "id", "name", "order"]);

    let accounts = api.get("accounts/").await;
    assert_eq!(accounts.status, StatusCode::OK);
    let list = accounts.json.as_array().expect("a bare array");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["id"], 1001);
    assert!(list[0]["channels"].as_array().is_some_and(|c| c.len() >= 2));
    assert_eq!(api.get("accounts/1001/").await.json, list[0]);
    assert_eq!(api.get("accounts/7/").await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        api.get("agencies/").await.json,
        json!([{"id": 1, "account": 1001}])
    );
    assert_eq!(
        api.get("partners/").await.json,
        json!({"count": 0, "next": null, "previous": null, "results": []})
    );

    let template = api.get(&format!("templates/{}/", fx.template_id)).await;
    assert_eq!(template.json["is_approved"], true);
    assert_eq!(
        template.json["templatelocalization_set"][0]["status"],
        "APPROVED"
    );
    let media = api.get(&format!("media/{}/", fx.media_id)).await;
    assert_eq!(media.json["format_type"], "image");
    let automation = api.get(&format!("automations/{}/", fx.automation_id)).await;
    assert_eq!(automation.json["name"], "Welcome");
    assert_eq!(automation.json["is_active"], true);
    assert_eq!(
        automation.json["webhook_set"][0]["secret"],
        fx.automation_secret
    );
    let campaign = api.get(&format!("campaigns/{}/", fx.campaign_id)).await;
    assert_eq!(campaign.json["status"], "Draft");
    let role = api.get(&format!("roles/{}/", fx.admin_role_id)).await;
    assert_eq!(role.json["role"], "Administrator");
    assert_eq!(role.json["is_service_user"], false);
    let invitation = api.get(&format!("invitations/{}/", fx.invitation_id)).await;
    assert_eq!(invitation.json["status"], "Pending");
    assert!(sim.contacts().is_empty(), "no contact at start");

    let over_http: Value = Client::new()
        .get(format!("http://{}/_sim/fixtures", sim.addr()))
        .send()
        .await
        .expect("an answer")
        .json()
        .await
        .expect("a JSON body");
    assert_eq!(over_http["automation_uuid"], fx.automation_uuid);
    assert_eq!(over_http["invitation_id"], fx.invitation_id);
}

#[tokio::test]
async fn templates_move_between_draft_pending_and_approved() {
    let sim = spawn_sim(relaxed()).await;
    let api = Api::new(&sim);
    for (body, field) in [
        (json!({"category": "UTILITY"}), "name"),
        (json!({"name": "x"}), "category"),
        (json!({"name": "x", "category": "PROMO"}), "category"),
        (
            json!({"name": "x", "category": "UTILITY", "templatelocalization_set": [{"body": 1}]}),
            "templatelocalization_set",
        ),
    ] {
        let answer = api.post("templates/", body.clone()).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{body}");
        assert!(answer.json.get(field).is_some(), "{body} → {}", answer.json);
    }
    assert_eq!(
        api.post("templates/", json!({"name": "x", "category": "PROMO"}))
            .await
            .json,
        json!({"category": ["\"PROMO\" is not a valid choice."]})
    );

    let created = api
        .post(
            "templates/",
            json!({
                "name": "order_shipped",
                "category": "UTILITY",
                "subcategory": "CLASSIC",
                "templatelocalization_set": [{
                    "language": "it",
                    "body_template_component": {"component_type": "BODY", "format": "TEXT",
                        "text": "Ordine %%ORDER_ID%% spedito", "parameters": []},
                    "templatebuttoncomponent_set": [{"button_type": "quick_reply", "text": "Ok", "order": 1}]
                }]
            }),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let id = id_of(&created.json);
    let loc = &created.json["templatelocalization_set"][0];
    assert_eq!(loc["status"], "DRAFT");
    assert_eq!(loc["templatebuttoncomponent_set"][0]["text"], "Ok");
    assert_eq!(created.json["subcategory"], "CLASSIC");
    assert_eq!(created.json["is_approved"], false);
    assert_eq!(created.json["customfield_set"], json!(["ORDER_ID"]));

    // Clone is a GET that creates a new DRAFT.
    let clone = api.get(&format!("templates/{id}/clone/")).await;
    assert_eq!(clone.status, StatusCode::CREATED);
    let clone_id = id_of(&clone.json);
    assert_ne!(clone_id, id);
    assert_eq!(clone.json["name"], "order_shipped_copy");
    assert_eq!(clone.json["templatelocalization_set"][0]["status"], "DRAFT");
    assert_eq!(api.get("templates/?search=shipped").await.json["count"], 2);

    let submitted = api
        .post(&format!("templates/{id}/submit/"), json!({}))
        .await;
    assert_eq!(submitted.status, StatusCode::OK);
    assert_eq!(
        submitted.json["templatelocalization_set"][0]["status"],
        "PENDING"
    );
    let again = api
        .post(&format!("templates/{id}/submit/"), json!({}))
        .await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    assert!(sim.review_template(id, true));
    let approved = api.get(&format!("templates/{id}/")).await;
    assert_eq!(approved.json["is_approved"], true);
    let draft = api
        .post(&format!("templates/{id}/back_to_draft/"), json!({}))
        .await;
    assert_eq!(draft.status, StatusCode::OK);
    assert_eq!(draft.json["templatelocalization_set"][0]["status"], "DRAFT");

    let patched = api
        .patch(
            &format!("templates/{id}/"),
            json!({"name": "order_sent", "category": "MARKETING"}),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK);
    assert_eq!(patched.json["name"], "order_sent");
    assert_eq!(
        patched.json["templatelocalization_set"],
        draft.json["templatelocalization_set"]
    );

    // An automation's template needs force_delete.
    let automation = sim.fixtures().automation_id;
    sim.automation_uses_template(automation, id);
    let refused = api.delete(&format!("templates/{id}/")).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(refused.json["detail"].is_string());
    let forced = api
        .delete(&format!("templates/{id}/?force_delete=true"))
        .await;
    assert_eq!(forced.status, StatusCode::NO_CONTENT);
    assert!(forced.raw.is_empty());
    assert_eq!(
        api.get(&format!("templates/{id}/")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.delete(&format!("templates/{clone_id}/")).await.status,
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn submitted_templates_can_approve_themselves() {
    let sim = spawn_sim(SimConfig {
        template_auto_approve_after: Some(Duration::from_millis(50)),
        ..relaxed()
    })
    .await;
    let api = Api::new(&sim);
    let id = sim.fixtures().template_id;
    api.post(&format!("templates/{id}/back_to_draft/"), json!({}))
        .await;
    let pending = api
        .post(&format!("templates/{id}/submit/"), json!({}))
        .await;
    assert_eq!(pending.json["is_approved"], false);
    tokio::time::sleep(Duration::from_millis(80)).await;
    let later = api.get(&format!("templates/{id}/")).await;
    assert_eq!(later.json["is_approved"], true);
    assert_eq!(
        later.json["templatelocalization_set"][0]["status"],
        "APPROVED"
    );
}

#[tokio::test]
async fn media_register_external_urls() {
    let sim = spawn_sim(relaxed()).await;
    let api = Api::new(&sim);
    let bad = api
        .post("media/", json!({"external_url": "not a url"}))
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        bad.json,
        json!({"title": ["This field is required."], "external_url": ["Enter a valid URL."]})
    );
    let created = api
        .post(
            "media/",
            json!({"title": "Menu", "external_url": "https://example.com/menu.pdf",
                   "format_type": "document", "content_type": "application/pdf"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let id = id_of(&created.json);
    assert_eq!(created.json["content_type"], "application/pdf");
    assert_eq!(created.json["format_type"], "document");
    assert_eq!(created.json["external_url"], "https://example.com/menu.pdf");
    let patched = api
        .patch(
            &format!("media/{id}/"),
            json!({"title": "Menu 2", "external_url": "https://ignored.example.com/"}),
        )
        .await;
    assert_eq!(patched.json["title"], "Menu 2");
    assert_eq!(patched.json["external_url"], "https://example.com/menu.pdf");
    assert_eq!(api.get("media/").await.json["count"], 2);
    let deleted = api.delete(&format!("media/{id}/")).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert!(deleted.raw.is_empty());
    let gone = api.get(&format!("media/{id}/")).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_eq!(gone.json, json!({"detail": "Not found."}));
    assert_eq!(api.get("media/x/").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn tickets_validate_enums_and_phones() {
    let sim = spawn_sim(relaxed()).await;
    let api = Api::new(&sim);
    let missing = api.post("tickets/", json!({})).await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        missing.json,
        json!({
            "contact_phone": ["This field is required."],
            "title": ["This field is required."],
            "status": ["This field is required."],
        })
    );
    let bad = api
        .post(
            "tickets/",
            json!({"contact_phone": "3331234567", "title": "T", "status": "Done", "priority": "Urgent"}),
        )
        .await;
    assert_eq!(
        bad.json,
        json!({
            "contact_phone": ["Enter a valid phone number."],
            "status": ["\"Done\" is not a valid choice."],
            "priority": ["\"Urgent\" is not a valid choice."],
        })
    );
    assert!(sim.contacts().is_empty());

    let body = json!({"contact_phone": phone(1), "title": "Broken", "status": "Open",
                      "description": "It broke", "reference": "R-1"});
    let first = api.post("tickets/", body.clone()).await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(first.json["priority"], "Medium");
    assert_eq!(first.json["contact"]["phone"], phone(1));
    assert_eq!(first.json["closed_datetime"], Value::Null);
    assert_eq!(first.json["owner"]["id"], sim.fixtures().admin_role_id);
    // No idempotency: the same ticket twice is two tickets, for one contact.
    let second = api.post("tickets/", body).await;
    assert_ne!(id_of(&second.json), id_of(&first.json));
    assert_eq!(sim.contacts().len(), 1);
    api.post(
        "tickets/",
        json!({"contact_phone": phone(2), "title": "Urgent", "status": "Pending", "priority": "Highest"}),
    )
    .await;

    let id = id_of(&first.json);
    let closed = api
        .patch(
            &format!("tickets/{id}/"),
            json!({"status": "Closed", "priority": "Low"}),
        )
        .await;
    assert_eq!(closed.status, StatusCode::OK);
    assert!(closed.json["closed_datetime"].is_string());
    assert_eq!(closed.json["title"], "Broken");

    assert_eq!(api.get("tickets/?status=Open").await.json["count"], 1);
    assert_eq!(
        api.get("tickets/?status=Done").await.status,
        StatusCode::BAD_REQUEST
    );
    let sorted = api.get("tickets/?sort_by=priority").await;
    let priorities: Vec<&str> = sorted.json["results"]
        .as_array()
        .map(|r| r.iter().filter_map(|t| t["priority"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(priorities, vec!["Highest", "Medium", "Low"]);
    let paged = api.get("tickets/?per_page=2&order=desc").await;
    assert_eq!(paged.json["count"], 3);
    assert_eq!(paged.json["results"].as_array().map(Vec::len), Some(2));
    assert!(
        paged.json["next"]
            .as_str()
            .is_some_and(|n| n.ends_with("tickets/?order=desc&page=2&per_page=2")),
        "{}",
        paged.json["next"]
    );
    assert_eq!(paged.json["results"][0]["title"], "Urgent");

    assert_eq!(
        api.delete(&format!("tickets/{id}/")).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        api.get(&format!("tickets/{id}/")).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn tickets_can_be_disabled() {
    let sim = spawn_sim(relaxed()).await;
    let api = Api::new(&sim);
    sim.set_tickets_enabled(false);
    let listed = api.get("tickets/").await;
    assert_eq!(listed.status, StatusCode::FORBIDDEN);
    assert!(listed.json["detail"].is_string());
    let created = api
        .post(
            "tickets/",
            json!({"contact_phone": phone(1), "title": "T", "status": "Open"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::FORBIDDEN);
    assert!(sim.contacts().is_empty());
    sim.set_tickets_enabled(true);
    assert_eq!(api.get("tickets/").await.status, StatusCode::OK);

    let hidden = spawn_sim(SimConfig {
        tickets_enabled: false,
        tickets_disabled_status: 404,
        ..relaxed()
    })
    .await;
    let answer = Api::new(&hidden).get("tickets/1/").await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.json, json!({"detail": "Not found."}));
}

#[tokio::test]
async fn automation_start_upserts_the_contact_without_an_api_key() {
    let sim = spawn_sim(relaxed()).await;
    let fx = sim.fixtures();
    let field = sim.create_custom_field("ORDER_ID");
    let root = Api::root(&sim);
    let path = format!("wh/ap/{}/", fx.automation_uuid);

    let started = root
        .post(
            &path,
            json!({"secret": fx.automation_secret, "phone": phone(1), "first_name": "Mario",
                   "custom_fields": {"ORDER_ID": "42"}, "metadata": {"order": 42}}),
        )
        .await;
    assert_eq!(started.status, StatusCode::OK);
    assert!(started.raw.is_empty(), "an empty body: {:?}", started.raw);
    let contact = sim.contact_by_phone(&phone(1)).expect("upserted");
    assert_eq!(contact["first_name"], "Mario");
    assert_eq!(contact["contactfield_set"][0]["field"], field);
    assert_eq!(contact["contactfield_set"][0]["value"], "42");

    // Same rules as contacts/sync: absent fields are kept.
    root.post(
        &path,
        json!({"secret": fx.automation_secret, "phone": phone(1), "last_name": "Rossi"}),
    )
    .await;
    let contact = sim.contact_by_phone(&phone(1)).expect("upserted");
    assert_eq!(
        (
            contact["first_name"].as_str(),
            contact["last_name"].as_str()
        ),
        (Some("Mario"), Some("Rossi"))
    );
    assert_eq!(sim.contacts().len(), 1);

    let runs = sim.automation_runs();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0].0, fx.automation_uuid);
    assert_eq!(
        runs[0].1,
        json!({"phone": phone(1), "first_name": "Mario",
               "custom_fields": {"ORDER_ID": "42"}, "metadata": {"order": 42}})
    );

    let wrong = root
        .post(&path, json!({"secret": "nope", "phone": phone(2)}))
        .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    let unknown = root
        .post(
            "wh/ap/00000000-0000-4000-8000-000000000000/",
            json!({"secret": fx.automation_secret, "phone": phone(2)}),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let (_, uuid, secret) = sim.seed_automation("Paused", false);
    let inactive = root
        .post(
            &format!("wh/ap/{uuid}/"),
            json!({"secret": secret, "phone": phone(2)}),
        )
        .await;
    assert_eq!(inactive.status, StatusCode::BAD_REQUEST);
    let bad_phone = root
        .post(
            &path,
            json!({"secret": fx.automation_secret, "phone": "333"}),
        )
        .await;
    assert_eq!(bad_phone.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        bad_phone.json,
        json!({"phone": ["Enter a valid phone number."]})
    );
    assert!(sim.contact_by_phone(&phone(2)).is_none());
    assert_eq!(sim.automation_runs().len(), 2, "refused starts are no runs");

    // Recorded like API calls.
    let recorded = sim.requests();
    assert_eq!(recorded[0].path, format!("/{path}"));
    assert_eq!(recorded[0].status, 200);
    assert_eq!(recorded[2].status, 403);
    let runs_over_http: Value = Client::new()
        .get(format!("http://{}/_sim/automation-runs", sim.addr()))
        .send()
        .await
        .expect("an answer")
        .json()
        .await
        .expect("a JSON body");
    assert_eq!(runs_over_http[1][0], fx.automation_uuid);
    assert_eq!(runs_over_http[1][1]["last_name"], "Rossi");
}

#[tokio::test]
async fn bulk_starts_are_all_or_nothing_and_not_rate_limited() {
    let sim = spawn_sim(SimConfig {
        default_limit: 1,
        automation_start_body: AutomationStartBody::EmptyObject,
        ..SimConfig::default()
    })
    .await;
    let fx = sim.fixtures();
    let root = Api::root(&sim);
    let path = format!("wh/ap/{}/bulk/", fx.automation_uuid);
    let bad = root
        .post(
            &path,
            json!({"secret": fx.automation_secret,
                   "contacts": [{"phone": phone(1)}, {"phone": "x"}]}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        bad.json,
        json!({"contacts": [{}, {"phone": ["Enter a valid phone number."]}]})
    );
    assert!(sim.contacts().is_empty());
    for n in 1..=3 {
        let ok = root
            .post(
                &path,
                json!({"secret": fx.automation_secret,
                       "contacts": [{"phone": phone(n)}, {"phone": phone(n + 10), "metadata": {"n": n}}]}),
            )
            .await;
        assert_eq!(ok.status, StatusCode::OK, "{}", ok.json);
        assert_eq!(ok.json, json!({}));
    }
    assert_eq!(sim.contacts().len(), 6);
    let runs = sim.automation_runs();
    assert_eq!(runs.len(), 6);
    assert_eq!(runs[1].1, json!({"phone": phone(11), "metadata": {"n": 1}}));
    assert_eq!(sim.throttled_count(), 0);

    // A limit set explicitly applies.
    sim.set_limit("POST /wh/ap/{uuid}/", 1);
    let single = format!("wh/ap/{}/", fx.automation_uuid);
    let body = json!({"secret": fx.automation_secret, "phone": phone(30)});
    assert_eq!(
        root.post(&single, body.clone()).await.status,
        StatusCode::OK
    );
    assert_eq!(
        root.post(&single, body).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn automations_expose_their_start_urls() {
    let sim = spawn_sim(relaxed()).await;
    let api = Api::new(&sim);
    let fx = sim.fixtures();
    sim.seed_automation("Paused", false);
    let listed = api.get("automations/").await;
    assert_eq!(listed.json["count"], 2);
    let hook = &listed.json["results"][0]["webhook_set"][0];
    let link = hook["link"].as_str().expect("a link");
    assert_eq!(
        link,
        format!("http://{}/wh/ap/{}/", sim.addr(), fx.automation_uuid)
    );
    assert_eq!(hook["is_active"], true);
    assert_eq!(hook["uuid"], fx.automation_uuid);

    // The link works as given.
    let started = Client::new()
        .post(link)
        .json(&json!({"secret": hook["secret"], "phone": phone(1)}))
        .send()
        .await
        .expect("an answer");
    assert_eq!(started.status(), StatusCode::OK);

    assert_eq!(
        api.get("automations/?is_active=true").await.json["count"],
        1
    );
    assert_eq!(
        api.get("automations/?is_active=false").await.json["count"],
        1
    );
    assert_eq!(api.get("automations/?search=welc").await.json["count"], 1);
    let uuid_part = &fx.automation_uuid[..8];
    assert_eq!(
        api.get(&format!("automations/?search={uuid_part}"))
            .await
            .json["count"],
        1
    );
    assert_eq!(
        api.get("automations/?webhook_platform=Api").await.json["count"],
        2
    );
    assert_eq!(
        api.get("automations/?webhook_platform=Shopify").await.json["count"],
        0
    );
    assert_eq!(
        api.get("automations/?webhook_platform=Nope").await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        api.get("automations/99/").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn custom_fields_used_by_an_automation_cannot_be_deleted() {
    let sim = spawn_sim(relaxed()).await;
    let api = Api::new(&sim);
    let field = sim.create_custom_field("ORDER_ID");
    sim.automation_uses_custom_field(sim.fixtures().automation_id, field);
    let refused = api.delete(&format!("custom-fields/{field}/")).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(refused.json["detail"].is_string());
    assert_eq!(sim.custom_field_codes(), vec!["ORDER_ID"]);
    let free = sim.create_custom_field("CITY");
    assert_eq!(
        api.delete(&format!("custom-fields/{free}/")).await.status,
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn campaigns_filter_by_schedule_and_patch() {
    let sim = spawn_sim(relaxed()).await;
    let api = Api::new(&sim);
    let fx = sim.fixtures();
    assert_eq!(api.get("campaigns/").await.json["count"], 1);
    assert_eq!(
        api.get("campaigns/?scheduled_datetime_gte=2029-12-31T00:00:00Z")
            .await
            .json["count"],
        1
    );
    assert_eq!(
        api.get("campaigns/?scheduled_datetime_lte=2029-12-31")
            .await
            .json["count"],
        0
    );
    assert_eq!(
        api.get("campaigns/?scheduled_datetime_gte=soon")
            .await
            .status,
        StatusCode::BAD_REQUEST
    );

    let list = sim.create_list("Clienti");
    let path = format!("campaigns/{}/", fx.campaign_id);
    let bad = api
        .patch(
            &path,
            json!({"status": "Paused", "automation": 99, "lists": [list, 77]}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        bad.json,
        json!({
            "status": ["\"Paused\" is not a valid choice."],
            "automation": ["Invalid pk \"99\" - object does not exist."],
            "lists": ["Invalid pk \"77\" - object does not exist."],
        })
    );
    let patched = api
        .patch(
            &path,
            json!({"name": "Summer", "status": "Scheduled", "automation": fx.automation_id,
                   "lists": [list], "scheduled_datetime": "2031-06-01T10:00:00+02:00"}),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK);
    assert_eq!(patched.json["name"], "Summer");
    assert_eq!(patched.json["status"], "Scheduled");
    assert_eq!(
        patched.json["automation"],
        json!({"id": fx.automation_id, "name": "Welcome"})
    );
    assert_eq!(patched.json["lists"], json!([list]));
    assert_eq!(
        patched.json["scheduled_datetime"],
        "2031-06-01T08:00:00.000000Z"
    );
    assert_eq!(
        api.send(Method::DELETE, &path, None).await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(
        api.patch("campaigns/99/", json!({})).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn current_report_is_cached() {
    let sim = spawn_sim(SimConfig {
        report_cache: Duration::from_millis(800),
        ..relaxed()
    })
    .await;
    let api = Api::new(&sim);
    let first = api.get("accounts/1001/current_report/").await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.json["account"], 1001);
    assert_eq!(first.json["contacted_contacts"], 0);
    api.post("contacts/sync/", json!({"phone": phone(1)})).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let second = api.get("accounts/1001/current_report/").await;
    assert_eq!(second.json, first.json, "the same object within the period");
    tokio::time::sleep(Duration::from_millis(850)).await;
    let later = api.get("accounts/1001/current_report/").await;
    assert_eq!(later.json["contacted_contacts"], 1);
    assert_ne!(
        later.json["updated_datetime"],
        first.json["updated_datetime"]
    );
    assert_eq!(
        api.get("accounts/7/current_report/").await.status,
        StatusCode::NOT_FOUND
    );

    // Default: 30 minutes.
    let sim = spawn_sim(relaxed()).await;
    let api = Api::new(&sim);
    let first = api.get("accounts/1001/current_report/").await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(
        api.get("accounts/1001/current_report/").await.json,
        first.json
    );
}

#[tokio::test]
async fn reports_need_granularity_and_dates() {
    let sim = spawn_sim(relaxed()).await;
    let api = Api::new(&sim);
    let missing = api.get("reports/").await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        missing.json,
        json!({
            "granularity": ["This field is required."],
            "start_date": ["This field is required."],
            "end_date": ["This field is required."],
        })
    );
    let bad = api
        .get("reports/?granularity=Week&start_date=2025-13-01&end_date=01/02/2025")
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.json["granularity"][0].is_string());
    assert!(bad.json["start_date"][0].is_string());
    assert!(bad.json["end_date"][0].is_string());
    let backwards = api
        .get("reports/?granularity=Day&start_date=2025-02-01&end_date=2025-01-01")
        .await;
    assert_eq!(backwards.status, StatusCode::BAD_REQUEST);

    let path = "reports/?granularity=Month&start_date=2025-01-01&end_date=2025-03-31";
    let first = api.get(path).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.json["granularity"], "Month");
    assert_eq!(first.json["start_date"], "2025-01-01");
    api.post("contacts/sync/", json!({"phone": phone(1)})).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(api.get(path).await.json, first.json, "cached");
}

#[tokio::test]
async fn onboarding_moved_to_partners() {
    let sim = spawn_sim(relaxed()).await;
    let api = Api::new(&sim);
    let removed = api.post("accounts/1001/onboarding/", json!({})).await;
    assert_eq!(removed.status, StatusCode::NOT_FOUND);
    assert_eq!(removed.json, json!({"detail": "Not found."}));
    let ok = api
        .post("partners/onboarding/", json!({"account": 1001}))
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    assert!(
        ok.json["redirect_url"]
            .as_str()
            .is_some_and(|u| u.starts_with("http://")),
        "{}",
        ok.json
    );
    let missing = api.post("partners/onboarding/", json!({})).await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        missing.json,
        json!({"account": ["This field is required."]})
    );
    let unknown = api
        .post("partners/onboarding/", json!({"account": 5}))
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_last_administrator_stays() {
    let sim = spawn_sim(relaxed()).await;
    let api = Api::new(&sim);
    let admin = sim.fixtures().admin_role_id;
    let refused = api.delete(&format!("roles/{admin}/")).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    let demote = api
        .post(
            &format!("roles/{admin}/update_role/"),
            json!({"role": "Chat Operator"}),
        )
        .await;
    assert_eq!(demote.status, StatusCode::BAD_REQUEST);
    let bad_role = api
        .post(
            "roles/add_service_user/",
            json!({"role": "Boss", "name": "Bot"}),
        )
        .await;
    assert_eq!(
        bad_role.json,
        json!({"role": ["\"Boss\" is not a valid choice."]})
    );

    let bot = api
        .post(
            "roles/add_service_user/",
            json!({"role": "Administrator", "name": "CRM bot"}),
        )
        .await;
    assert_eq!(bot.status, StatusCode::CREATED);
    assert_eq!(bot.json["is_service_user"], true);
    assert_eq!(bot.json["role"], "Administrator");
    let bot_id = id_of(&bot.json);
    assert_eq!(api.get("roles/?search=crm").await.json["count"], 1);

    let key_path = format!("roles/{bot_id}/has_private_key/");
    assert_eq!(
        api.get(&key_path).await.json,
        json!({"has_private_key": false})
    );
    let key = api
        .post(&format!("roles/{bot_id}/generate_private_key/"), json!({}))
        .await;
    let again = api
        .post(&format!("roles/{bot_id}/generate_private_key/"), json!({}))
        .await;
    assert!(
        key.json["private_key"]
            .as_str()
            .is_some_and(|k| !k.is_empty())
    );
    assert_ne!(key.json["private_key"], again.json["private_key"]);
    assert_eq!(
        api.get(&key_path).await.json,
        json!({"has_private_key": true})
    );

    // With a second Administrator the first may go.
    let demoted = api
        .post(
            &format!("roles/{admin}/update_role/"),
            json!({"role": "Chat Operator Manager"}),
        )
        .await;
    assert_eq!(demoted.status, StatusCode::OK);
    assert_eq!(demoted.json["role"], "Chat Operator Manager");
    assert_eq!(
        api.delete(&format!("roles/{bot_id}/")).await.status,
        StatusCode::BAD_REQUEST,
        "now the bot is the last administrator"
    );
    let deleted = api.delete(&format!("roles/{admin}/")).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(
        api.get(&format!("roles/{admin}/")).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn invitations_are_resent_and_change_role() {
    let sim = spawn_sim(relaxed()).await;
    let api = Api::new(&sim);
    let id = sim.fixtures().invitation_id;
    for _ in 0..2 {
        let sent = api
            .post(&format!("invitations/{id}/send/"), json!({}))
            .await;
        assert_eq!((sent.status, sent.json), (StatusCode::OK, json!({})));
    }
    assert_eq!(sim.invitation_sends(id), 2);
    let updated = api
        .post(
            &format!("invitations/{id}/update_role/"),
            json!({"role": "Administrator"}),
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK);
    assert_eq!(updated.json["role"], "Administrator");
    let bad = api
        .post(&format!("invitations/{id}/update_role/"), json!({}))
        .await;
    assert_eq!(bad.json, json!({"role": ["This field is required."]}));
    assert_eq!(
        api.post("invitations/99/send/", json!({})).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(sim.invitation_sends(99), 0);
}

#[tokio::test]
async fn new_endpoints_have_spoki_limits() {
    let sim = spawn_sim(SimConfig::default()).await;
    let api = Api::new(&sim);
    let admin = sim.fixtures().admin_role_id;
    for _ in 0..5 {
        assert_eq!(
            api.get(&format!("roles/{admin}/")).await.status,
            StatusCode::OK
        );
    }
    let sixth = api.get(&format!("roles/{admin}/")).await;
    assert_eq!(sixth.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(sixth.headers.contains_key("retry-after"));
    // Other endpoints keep their own budget.
    for _ in 0..5 {
        assert_eq!(api.get("accounts/").await.status, StatusCode::OK);
    }
    assert_eq!(
        api.get("accounts/").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    let invitation = sim.fixtures().invitation_id;
    for _ in 0..5 {
        api.post(&format!("invitations/{invitation}/send/"), json!({}))
            .await;
    }
    let refused = api
        .post(&format!("invitations/{invitation}/send/"), json!({}))
        .await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        sim.invitation_sends(invitation),
        5,
        "throttled: no side effect"
    );
    // Endpoints without a stated limit use the default (60).
    for _ in 0..10 {
        assert_eq!(api.get("tags/").await.status, StatusCode::OK);
    }
}

#[tokio::test]
async fn wrong_methods_and_keys_on_new_paths() {
    let sim = spawn_sim(relaxed()).await;
    let api = Api::new(&sim);
    let post_tags = api.post("tags/", json!({"name": "x"})).await;
    assert_eq!(post_tags.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(post_tags.headers["allow"], "GET");
    let put = api.send(Method::PUT, "templates/1/", Some(json!({}))).await;
    assert_eq!(put.headers["allow"], "GET, PATCH, DELETE");
    let get_start = Api::root(&sim)
        .get(&format!("wh/ap/{}/", sim.fixtures().automation_uuid))
        .await;
    assert_eq!(get_start.status, StatusCode::METHOD_NOT_ALLOWED);
    let no_key = Api::with_key(&sim, None).get("tags/").await;
    assert_eq!(no_key.status, StatusCode::UNAUTHORIZED);
    let wrong_key = Api::with_key(&sim, Some("nope")).get("roles/").await;
    assert_eq!(wrong_key.status, StatusCode::UNAUTHORIZED);
    // The key is not needed, and not looked at, by automation starts.
    let fx = sim.fixtures();
    let keyed = Api::with_key(&sim, Some(KEY));
    let started = Client::new()
        .post(format!(
            "http://{}/wh/ap/{}/",
            sim.addr(),
            fx.automation_uuid
        ))
        .header("X-Spoki-Api-Key", "wrong")
        .json(&json!({"secret": fx.automation_secret, "phone": phone(1)}))
        .send()
        .await
        .expect("an answer");
    assert_eq!(started.status(), StatusCode::OK);
    assert_eq!(keyed.get("tags/999/").await.status, StatusCode::NOT_FOUND);
}
