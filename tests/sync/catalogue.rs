//! Every action of the catalogue (docs/actions.md) plus `start_automation`, queued through the
//! admin API against the simulator: the request Spoki received (method, path, query, body) and
//! the result stored for the command.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use spoki_sync::sim::{RecordedRequest, SimConfig};
use spoki_sync::spoki::actions::Action;

use crate::helpers::{TestApp, spawn_app_with};

/// What one action must send and store.
struct Case {
    action: &'static str,
    params: Value,
    method: &'static str,
    /// Path below `/api/1/` (or from `/` when it starts with `/`).
    path: String,
    query: Vec<(&'static str, String)>,
    /// The exact JSON body expected; `None` for GET and DELETE (no body).
    body: Option<Value>,
    /// Checks the stored `result`.
    result: fn(&Value) -> bool,
}

fn case(
    action: &'static str,
    params: Value,
    method: &'static str,
    path: impl Into<String>,
    body: Option<Value>,
    result: fn(&Value) -> bool,
) -> Case {
    Case {
        action,
        params,
        method,
        path: path.into(),
        query: Vec::new(),
        body,
        result,
    }
}

fn with_query(mut c: Case, query: &[(&'static str, &str)]) -> Case {
    c.query = query.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
    c
}

fn has_id(r: &Value) -> bool {
    r["id"].as_i64().is_some()
}
fn page(r: &Value) -> bool {
    r["count"].is_number() && r["results"].is_array()
}
fn array(r: &Value) -> bool {
    r.is_array()
}
fn empty(r: &Value) -> bool {
    r.is_null() || r == &json!({})
}
fn object(r: &Value) -> bool {
    r.is_object()
}

fn full_path(path: &str) -> String {
    if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/api/1/{path}")
    }
}

fn query_pairs(raw: &str) -> BTreeSet<(String, String)> {
    reqwest::Url::parse(&format!("http://x/?{raw}"))
        .map(|u| {
            u.query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// Runs one case and returns the stored result.
async fn check(app: &TestApp, c: Case) -> Value {
    let before = app.sim.requests().len();
    let record = app.run_command(c.action, c.params.clone()).await;
    assert_eq!(record["status"], "succeeded", "{}: {record}", c.action);
    let requests: Vec<RecordedRequest> = app.sim.requests().into_iter().skip(before).collect();
    let sent = requests
        .iter()
        .rev()
        .find(|r| r.path == full_path(&c.path))
        .unwrap_or_else(|| panic!("{}: no request to {}: {requests:?}", c.action, c.path));
    assert_eq!(sent.method, c.method, "{}", c.action);
    let expected_query: BTreeSet<(String, String)> = c
        .query
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    assert_eq!(
        query_pairs(&sent.query),
        expected_query,
        "{} query",
        c.action
    );
    match &c.body {
        Some(body) => assert_eq!(&sent.body, body, "{} body", c.action),
        None => assert_eq!(sent.body, Value::Null, "{} sends no body", c.action),
    }
    assert!(
        (c.result)(&record["result"]),
        "{}: unexpected result {}",
        c.action,
        record["result"]
    );
    assert_eq!(record["action"], c.action);
    record["result"].clone()
}

#[tokio::test]
async fn every_action_reaches_spoki_as_documented() {
    let window = Duration::from_millis(300);
    let app = spawn_app_with(
        SimConfig {
            window,
            ..SimConfig::default()
        },
        window,
        |_| {},
    )
    .await;
    let fx = app.sim.fixtures();
    let mut done: BTreeSet<&str> = BTreeSet::new();
    macro_rules! run {
        ($case:expr) => {{
            let c: Case = $case;
            done.insert(c.action);
            check(&app, c).await
        }};
    }

    // Contacts.
    let anna = json!({"phone": "+393331110001", "first_name": "Anna", "language": "it"});
    let contact = run!(case(
        "create_or_update_contact",
        anna.clone(),
        "POST",
        "contacts/sync/",
        Some(anna),
        has_id
    ));
    let contact_id = contact["id"].as_i64().expect("contact id");
    let bulk = json!([
        {"phone": "+393331110002", "last_name": "Bianchi"},
        {"phone": "+393331110003", "email": "carla@example.com"}
    ]);
    run!(case(
        "bulk_sync_contacts",
        json!({ "contacts": bulk }),
        "POST",
        "contacts/sync_all/",
        Some(bulk.clone()),
        |_| true
    ));
    assert!(app.sim.contact_by_phone("+393331110003").is_some());
    let got = run!(case(
        "retrieve_contact",
        json!({"id": contact_id}),
        "GET",
        format!("contacts/{contact_id}/"),
        None,
        has_id
    ));
    assert_eq!(got["phone"], "+393331110001");
    let got = run!(case(
        "update_contact",
        json!({"id": contact_id, "last_name": "Rossi"}),
        "PATCH",
        format!("contacts/{contact_id}/"),
        Some(json!({"last_name": "Rossi"})),
        has_id
    ));
    assert_eq!(got["last_name"], "Rossi");
    let listed = run!(with_query(
        case(
            "list_contacts",
            json!({"phone": "+393331110001", "page_size": 50}),
            "GET",
            "contacts/",
            None,
            page
        ),
        &[("phone", "+393331110001"), ("page_size", "50")]
    ));
    assert_eq!(listed["count"], 1);
    let operator = json!({"email": "operator@example.com"});
    run!(case(
        "add_contact_operator",
        json!({"id": contact_id, "email": "operator@example.com"}),
        "POST",
        format!("contacts/{contact_id}/add_operator/"),
        Some(operator.clone()),
        |_| true
    ));
    run!(case(
        "remove_contact_operator",
        json!({"id": contact_id, "email": "operator@example.com"}),
        "POST",
        format!("contacts/{contact_id}/remove_operator/"),
        Some(operator),
        |_| true
    ));

    // Lists.
    let list = run!(case(
        "create_contact_list",
        json!({"name": "VIP"}),
        "POST",
        "lists/",
        Some(json!({"name": "VIP"})),
        has_id
    ));
    let list_id = list["id"].as_i64().expect("list id");
    run!(with_query(
        case(
            "list_lists",
            json!({"search": "VIP"}),
            "GET",
            "lists/",
            None,
            page
        ),
        &[("search", "VIP")]
    ));
    run!(case(
        "retrieve_list",
        json!({"id": list_id}),
        "GET",
        format!("lists/{list_id}/"),
        None,
        has_id
    ));
    let members = json!({"contacts": [{"phone": "+393331110001"}, {"phone": "+393331110004"}]});
    run!(case(
        "sync_contacts_to_list",
        json!({"id": list_id, "contacts": members["contacts"]}),
        "POST",
        format!("lists/{list_id}/sync_contacts/"),
        Some(members),
        |_| true
    ));
    assert_eq!(app.sim.list_members(list_id).len(), 2);
    run!(case(
        "remove_contacts_from_list",
        json!({"id": list_id, "phones": ["+393331110004"]}),
        "POST",
        format!("lists/{list_id}/remove_contacts/"),
        Some(json!({"phones": ["+393331110004"]})),
        |_| true
    ));
    assert_eq!(app.sim.list_members(list_id), vec!["+393331110001"]);
    run!(case(
        "remove_all_list_contacts",
        json!({"id": list_id}),
        "POST",
        format!("lists/{list_id}/remove_all_contacts/"),
        Some(json!({})),
        |_| true
    ));
    assert!(app.sim.list_members(list_id).is_empty());

    // Custom fields.
    let field_body = json!({"label": "Order id", "code": "ORDER_ID", "field_type": 1});
    let field = run!(case(
        "create_custom_field",
        field_body.clone(),
        "POST",
        "custom-fields/",
        Some(field_body),
        has_id
    ));
    let field_id = field["id"].as_i64().expect("field id");
    run!(with_query(
        case(
            "list_custom_fields",
            json!({"search": "ORDER"}),
            "GET",
            "custom-fields/",
            None,
            |r| page(r) || array(r)
        ),
        &[("search", "ORDER")]
    ));
    run!(case(
        "retrieve_custom_field",
        json!({"id": field_id}),
        "GET",
        format!("custom-fields/{field_id}/"),
        None,
        has_id
    ));
    let renamed = run!(case(
        "update_custom_field",
        json!({"id": field_id, "label": "Order number"}),
        "PATCH",
        format!("custom-fields/{field_id}/"),
        Some(json!({"label": "Order number"})),
        has_id
    ));
    assert_eq!(renamed["label"], "Order number");
    run!(case(
        "delete_custom_field",
        json!({"id": field_id}),
        "DELETE",
        format!("custom-fields/{field_id}/"),
        None,
        empty
    ));

    // Tags.
    run!(case("list_tags", json!({}), "GET", "tags/", None, page));
    run!(case(
        "retrieve_tag",
        json!({"id": fx.tag_id}),
        "GET",
        format!("tags/{}/", fx.tag_id),
        None,
        has_id
    ));

    // Templates.
    let template_body = json!({
        "name": "promo",
        "category": "MARKETING",
        "templatelocalization_set": [{"language": "it", "body_template_component": {"text": "Ciao"}}]
    });
    let template = run!(case(
        "create_template",
        template_body.clone(),
        "POST",
        "templates/",
        Some(template_body),
        has_id
    ));
    let template_id = template["id"].as_i64().expect("template id");
    run!(with_query(
        case(
            "list_templates",
            json!({"search": "promo"}),
            "GET",
            "templates/",
            None,
            page
        ),
        &[("search", "promo")]
    ));
    run!(case(
        "retrieve_template",
        json!({"id": template_id}),
        "GET",
        format!("templates/{template_id}/"),
        None,
        has_id
    ));
    run!(case(
        "update_template",
        json!({"id": template_id, "name": "promo_autunno"}),
        "PATCH",
        format!("templates/{template_id}/"),
        Some(json!({"name": "promo_autunno"})),
        has_id
    ));
    let clone = run!(case(
        "clone_template",
        json!({"id": template_id}),
        "GET",
        format!("templates/{template_id}/clone/"),
        None,
        has_id
    ));
    let clone_id = clone["id"].as_i64().expect("clone id");
    assert_ne!(clone_id, template_id);
    run!(case(
        "revert_template_to_draft",
        json!({"id": template_id}),
        "POST",
        format!("templates/{template_id}/back_to_draft/"),
        Some(json!({})),
        |_| true
    ));
    run!(with_query(
        case(
            "delete_template",
            json!({"id": clone_id, "force_delete": true}),
            "DELETE",
            format!("templates/{clone_id}/"),
            None,
            empty
        ),
        &[("force_delete", "true")]
    ));

    // Media.
    let media_body = json!({
        "title": "Logo",
        "external_url": "https://example.com/logo.png",
        "format_type": "image",
        "content_type": "image/png"
    });
    let media = run!(case(
        "create_media_file",
        media_body.clone(),
        "POST",
        "media/",
        Some(media_body),
        has_id
    ));
    let media_id = media["id"].as_i64().expect("media id");
    run!(case(
        "list_media",
        json!({}),
        "GET",
        "media/",
        None,
        |r| page(r) || array(r)
    ));
    run!(case(
        "retrieve_media",
        json!({"id": media_id}),
        "GET",
        format!("media/{media_id}/"),
        None,
        has_id
    ));
    run!(case(
        "update_media",
        json!({"id": media_id, "title": "New logo"}),
        "PATCH",
        format!("media/{media_id}/"),
        Some(json!({"title": "New logo"})),
        has_id
    ));
    run!(case(
        "delete_media_file",
        json!({"id": media_id}),
        "DELETE",
        format!("media/{media_id}/"),
        None,
        empty
    ));

    // Tickets.
    let ticket_body = json!({
        "contact_phone": "+393331110001",
        "title": "Delivery late",
        "status": "Open",
        "priority": "High"
    });
    let ticket = run!(case(
        "create_ticket",
        ticket_body.clone(),
        "POST",
        "tickets/",
        Some(ticket_body),
        has_id
    ));
    let ticket_id = ticket["id"].as_i64().expect("ticket id");
    run!(with_query(
        case(
            "list_tickets",
            json!({"status": "Open"}),
            "GET",
            "tickets/",
            None,
            page
        ),
        &[("status", "Open")]
    ));
    run!(case(
        "delete_ticket",
        json!({"id": ticket_id}),
        "DELETE",
        format!("tickets/{ticket_id}/"),
        None,
        empty
    ));

    // Automations, and starting one.
    run!(with_query(
        case(
            "list_automations",
            json!({"is_active": true}),
            "GET",
            "automations/",
            None,
            page
        ),
        &[("is_active", "true")]
    ));
    let automation = run!(case(
        "retrieve_automation",
        json!({"id": fx.automation_id}),
        "GET",
        format!("automations/{}/", fx.automation_id),
        None,
        has_id
    ));
    assert!(automation["webhook_set"].is_array());
    let start = json!({
        "automation": fx.automation_id,
        "phone": "+393331110009",
        "first_name": "Zoe",
        "custom_fields": {"ORDER_ID": "A-1"}
    });
    run!(case(
        "start_automation",
        start,
        "POST",
        format!("/wh/ap/{}/", fx.automation_uuid),
        Some(json!({
            "secret": fx.automation_secret,
            "phone": "+393331110009",
            "first_name": "Zoe",
            "custom_fields": {"ORDER_ID": "A-1"}
        })),
        empty
    ));
    let runs = app.sim.automation_runs();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].0, fx.automation_uuid);
    assert_eq!(runs[0].1["phone"], "+393331110009");
    assert!(app.sim.contact_by_phone("+393331110009").is_some());

    // Campaigns.
    run!(case(
        "list_campaigns",
        json!({}),
        "GET",
        "campaigns/",
        None,
        page
    ));
    let campaign = run!(case(
        "update_campaign",
        json!({"id": fx.campaign_id, "name": "Autumn", "status": "Scheduled"}),
        "PATCH",
        format!("campaigns/{}/", fx.campaign_id),
        Some(json!({"name": "Autumn", "status": "Scheduled"})),
        has_id
    ));
    assert_eq!(campaign["name"], "Autumn");

    // Accounts, agencies, partners, reports.
    run!(case(
        "list_accounts",
        json!({}),
        "GET",
        "accounts/",
        None,
        array
    ));
    run!(case(
        "retrieve_account",
        json!({"id": fx.account_id}),
        "GET",
        format!("accounts/{}/", fx.account_id),
        None,
        has_id
    ));
    let first = run!(case(
        "get_account_current_report",
        json!({"id": fx.account_id}),
        "GET",
        format!("accounts/{}/current_report/", fx.account_id),
        None,
        object
    ));
    // The removed route answers 404; its documented replacement makes the link (the
    // partner-only `partners/onboarding/` is not for an account's key).
    let link = run!(case(
        "create_account_onboarding_link",
        json!({"id": fx.account_id}),
        "POST",
        "channel/",
        Some(json!({"platform": 1})),
        object
    ));
    assert!(link["redirect_url"].is_string(), "{link}");
    let again = app
        .run_command("get_account_current_report", json!({"id": fx.account_id}))
        .await;
    assert_eq!(again["result"], first, "the report is cached");
    run!(case(
        "list_agencies",
        json!({}),
        "GET",
        "agencies/",
        None,
        array
    ));
    run!(case(
        "list_partners",
        json!({}),
        "GET",
        "partners/",
        None,
        |r| page(r) || array(r)
    ));
    run!(with_query(
        case(
            "list_reports",
            json!({"granularity": "Month", "start_date": "2026-01-01", "end_date": "2026-06-30"}),
            "GET",
            "reports/",
            None,
            object
        ),
        &[
            ("granularity", "Month"),
            ("start_date", "2026-01-01"),
            ("end_date", "2026-06-30")
        ]
    ));

    // Roles and invitations.
    run!(case(
        "list_roles",
        json!({}),
        "GET",
        "roles/",
        None,
        |r| page(r) || array(r)
    ));
    let role = run!(case(
        "add_service_user",
        json!({"role": "Chat Operator", "name": "crm-bot"}),
        "POST",
        "roles/add_service_user/",
        Some(json!({"role": "Chat Operator", "name": "crm-bot"})),
        has_id
    ));
    let role_id = role["id"].as_i64().expect("role id");
    run!(case(
        "retrieve_role",
        json!({"id": role_id}),
        "GET",
        format!("roles/{role_id}/"),
        None,
        has_id
    ));
    let key = run!(case(
        "generate_role_private_key",
        json!({"id": role_id}),
        "POST",
        format!("roles/{role_id}/generate_private_key/"),
        Some(json!({})),
        object
    ));
    assert!(key["private_key"].is_string(), "{key}");
    let has = run!(case(
        "check_role_private_key",
        json!({"id": role_id}),
        "GET",
        format!("roles/{role_id}/has_private_key/"),
        None,
        object
    ));
    assert_eq!(has["has_private_key"], true);
    run!(case(
        "update_role",
        json!({"id": role_id, "role": "Chat Operator Manager"}),
        "POST",
        format!("roles/{role_id}/update_role/"),
        Some(json!({"role": "Chat Operator Manager"})),
        |_| true
    ));
    run!(case(
        "delete_role",
        json!({"id": role_id}),
        "DELETE",
        format!("roles/{role_id}/"),
        None,
        empty
    ));
    run!(case(
        "resend_invitation",
        json!({"id": fx.invitation_id}),
        "POST",
        format!("invitations/{}/send/", fx.invitation_id),
        Some(json!({})),
        |_| true
    ));
    assert_eq!(app.sim.invitation_sends(fx.invitation_id), 1);
    run!(case(
        "update_invitation_role",
        json!({"id": fx.invitation_id, "role": "Chat Operator"}),
        "POST",
        format!("invitations/{}/update_role/", fx.invitation_id),
        Some(json!({"role": "Chat Operator"})),
        |_| true
    ));

    // Deletes last.
    run!(case(
        "delete_list",
        json!({"id": list_id}),
        "DELETE",
        format!("lists/{list_id}/"),
        None,
        empty
    ));
    run!(case(
        "delete_contact",
        json!({"id": contact_id}),
        "DELETE",
        format!("contacts/{contact_id}/"),
        None,
        empty
    ));
    assert!(app.sim.contact_by_phone("+393331110001").is_none());

    let all: BTreeSet<&str> = Action::ALL.iter().map(|a| a.name()).collect();
    let missing: Vec<_> = all.difference(&done).collect();
    assert!(missing.is_empty(), "actions not exercised: {missing:?}");
    assert_eq!(app.sim.throttled_count(), 0, "no limit exceeded");
    app.stop().await;
}
