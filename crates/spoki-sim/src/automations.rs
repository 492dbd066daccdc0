//! Handlers of automations, their API-trigger start URLs and campaigns.
//!
//! `POST /wh/ap/{uuid}/` needs no API key: the trigger's `secret` in the body authenticates it.
//! A start upserts the contact exactly like `contacts/sync` and records an automation run.

use std::collections::BTreeSet;

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::catalog::{self, Campaign};
use super::query::Query;
use super::routes::{
    self, ApiRequest, Outcome, Reply, field_errors, lookup, paginated, search_matches,
};
use super::state::iso;
use super::validate::{self, ContactInput, FieldErrors, PhoneRule};
use super::{AutomationStartBody, SimState};

// ---- automations -----------------------------------------------------------------------------

pub(super) fn list_automations(st: &SimState, req: &ApiRequest<'_>) -> Outcome {
    let query = Query::parse(req.query);
    let mut errors = FieldErrors::new();
    let is_active = match query
        .filter("is_active")
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None => None,
        Some("true" | "1") => Some(true),
        Some("false" | "0") => Some(false),
        Some(other) => {
            validate::add_error(
                &mut errors,
                "is_active",
                validate::invalid_filter_choice_message(other),
            );
            None
        }
    };
    let platform = query.filter("webhook_platform");
    if let Some(platform) = platform {
        if !catalog::WEBHOOK_PLATFORMS.contains(&platform) {
            validate::add_error(
                &mut errors,
                "webhook_platform",
                validate::invalid_filter_choice_message(platform),
            );
        }
    }
    field_errors(errors)?;
    let origin = req.origin();
    let terms = query.search_terms();
    let automations: Vec<_> = st
        .catalog
        .automations
        .values()
        .filter(|a| is_active.is_none_or(|active| a.is_active == active))
        .filter(|a| platform.is_none_or(|p| a.platform == Some(p)))
        .filter(|a| {
            let mut fields = vec![a.name.clone()];
            fields.extend(
                a.triggers
                    .iter()
                    .map(|t| catalog::trigger_link(&origin, &t.uuid)),
            );
            let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
            search_matches(&terms, &fields)
        })
        .collect();
    paginated(st, req, &query, &automations, |a| {
        let mut json = a.to_json(&origin);
        st.writes.trigger_link.apply(&mut json);
        json
    })
}

pub(super) fn get_automation(st: &SimState, req: &ApiRequest<'_>, id: &str) -> Outcome {
    st.catalog
        .automations
        .get(lookup(id)?)
        .map(|a| {
            let mut json = a.to_json(&req.origin());
            st.writes.trigger_link.apply(&mut json);
            Reply::ok(json)
        })
        .ok_or_else(Reply::not_found)
}

// ---- automation starts -----------------------------------------------------------------------

/// Checks the trigger and the secret; returns the body. Unknown uuid first (before the body
/// is read), then the secret, then whether the automation and its trigger are active.
fn authorised_start(
    st: &SimState,
    req: &ApiRequest<'_>,
    uuid: &str,
) -> Result<Map<String, Value>, Reply> {
    let statuses = st.settings.automation_start_errors;
    let Some((automation, trigger)) = st.catalog.trigger(uuid) else {
        return Err(Reply::detail(
            Reply::status_of(statuses.unknown_uuid),
            "Not found.",
        ));
    };
    let active = automation.is_active && trigger.is_active;
    let body = req.json_object()?;
    if body.get("secret").and_then(Value::as_str) != Some(trigger.secret.as_str()) {
        return Err(Reply::detail(
            Reply::status_of(statuses.wrong_secret),
            "Invalid secret.",
        ));
    }
    if !active {
        return Err(Reply::detail(
            Reply::status_of(statuses.inactive),
            "The automation is not active.",
        ));
    }
    Ok(body)
}

/// One contact of a start: the `contacts/sync` rules plus an optional `metadata` object.
fn start_item(st: &SimState, item: &Value) -> Result<ContactInput, Value> {
    let unknown = st.settings.unknown_custom_field;
    let checked = st
        .store
        .validate_contact(item, PhoneRule::Required, unknown, None);
    let (input, mut errors) = match checked {
        Ok(input) => (Some(input), FieldErrors::new()),
        Err(Value::Object(errors)) => (None, errors),
        Err(other) => return Err(other),
    };
    if let Value::Object(obj) = item {
        validate::object(obj, "metadata", &mut errors);
    }
    match input {
        Some(input) if errors.is_empty() => Ok(input),
        _ => Err(Value::Object(errors)),
    }
}

fn start_answer(st: &SimState) -> Reply {
    match st.settings.automation_start_body {
        AutomationStartBody::Empty => Reply::empty(StatusCode::OK),
        AutomationStartBody::EmptyObject => Reply::ok(json!({})),
        AutomationStartBody::Accepted => Reply::ok(json!({"accepted": true})),
        AutomationStartBody::NotAccepted => Reply::ok(
            json!({"accepted": false, "detail": "The automation did not start for this contact."}),
        ),
    }
}

fn without_secret(mut body: Map<String, Value>) -> Value {
    body.remove("secret");
    Value::Object(body)
}

/// `POST /wh/ap/{uuid}/`: upsert the contact, record the run.
pub(super) fn start(st: &mut SimState, req: &ApiRequest<'_>, uuid: &str) -> Outcome {
    let body = without_secret(authorised_start(st, req, uuid)?);
    let input = start_item(st, &body).map_err(Reply::bad_request)?;
    let unknown = st.settings.unknown_custom_field;
    st.store.upsert(&input, unknown, Utc::now());
    st.catalog.runs.push((uuid.to_owned(), body));
    Ok(start_answer(st))
}

/// `POST /wh/ap/{uuid}/bulk/`: `{secret, contacts: […]}`, all or nothing; one run per contact.
pub(super) fn start_bulk(st: &mut SimState, req: &ApiRequest<'_>, uuid: &str) -> Outcome {
    let body = authorised_start(st, req, uuid)?;
    let items = match body.get("contacts") {
        None => Err(validate::MSG_REQUIRED.to_owned()),
        Some(value) => routes::batch_items_max(value, st.settings.automation_bulk_max),
    }
    .map_err(|message| Reply::bad_request(json!({ "contacts": [message] })))?;
    let results: Vec<Result<ContactInput, Value>> =
        items.iter().map(|item| start_item(st, item)).collect();
    if results.iter().any(Result::is_err) {
        let errors: Vec<Value> = results
            .into_iter()
            .map(|r| r.err().unwrap_or_else(|| json!({})))
            .collect();
        return Err(Reply::bad_request(json!({ "contacts": errors })));
    }
    let inputs: Vec<ContactInput> = results.into_iter().flatten().collect();
    let items = items.to_vec();
    routes::upsert_batch(st, &inputs);
    for item in items {
        let run = match item {
            Value::Object(map) => without_secret(map),
            other => other,
        };
        st.catalog.runs.push((uuid.to_owned(), run));
    }
    Ok(start_answer(st))
}

// ---- campaigns -------------------------------------------------------------------------------

fn campaign_json(st: &SimState, c: &Campaign) -> Value {
    let lists: Vec<i64> = c
        .lists
        .iter()
        .copied()
        .filter(|&id| st.store.list(id).is_some())
        .collect();
    let members: BTreeSet<String> = lists
        .iter()
        .flat_map(|&id| st.store.member_phones(id))
        .collect();
    let automation = c
        .automation
        .and_then(|id| st.catalog.automations.get(id))
        .map(|a| json!({"id": a.id, "name": a.name}));
    json!({
        "id": c.id,
        "name": c.name,
        "status": c.status,
        "scheduled_datetime": c.scheduled.map(iso),
        "created_datetime": iso(c.created),
        "updated_datetime": iso(c.updated),
        "automation": automation,
        "template": c.template.filter(|&id| st.catalog.templates.get(id).is_some()),
        "lists": lists,
        "other_contacts": [],
        "contacts_count": members.len(),
        "messages_sent": 0,
        "messages_received": 0,
        "messages_read": 0,
        "messages_failed": 0,
        "automation_started": 0,
        "automation_completed": 0,
        "automation_failed": 0,
        "automation_interacted_with": 0,
        "automation_valid_failed": 0,
    })
}

/// A `scheduled_datetime_gte`/`_lte` filter; a bad value is django-filter's field error.
fn datetime_filter(query: &Query, key: &str, errors: &mut FieldErrors) -> Option<DateTime<Utc>> {
    let raw = query.filter(key)?;
    let parsed = validate::parse_datetime(raw);
    if parsed.is_none() {
        validate::add_error(errors, key, "Enter a valid date/time.");
    }
    parsed
}

pub(super) fn list_campaigns(st: &SimState, req: &ApiRequest<'_>) -> Outcome {
    let query = Query::parse(req.query);
    let mut errors = FieldErrors::new();
    let gte = datetime_filter(&query, "scheduled_datetime_gte", &mut errors);
    let lte = datetime_filter(&query, "scheduled_datetime_lte", &mut errors);
    field_errors(errors)?;
    let campaigns: Vec<_> = st
        .catalog
        .campaigns
        .values()
        .filter(|c| gte.is_none_or(|at| c.scheduled.is_some_and(|s| s >= at)))
        .filter(|c| lte.is_none_or(|at| c.scheduled.is_some_and(|s| s <= at)))
        .collect();
    paginated(st, req, &query, &campaigns, |c| campaign_json(st, c))
}

pub(super) fn get_campaign(st: &SimState, id: &str) -> Outcome {
    st.catalog
        .campaigns
        .get(lookup(id)?)
        .map(|c| Reply::ok(campaign_json(st, c)))
        .ok_or_else(Reply::not_found)
}

/// A campaign write; `None` means "absent, leave as is".
#[derive(Debug, Default)]
struct CampaignInput {
    name: Option<String>,
    scheduled: Option<Option<DateTime<Utc>>>,
    status: Option<String>,
    automation: Option<Option<i64>>,
    lists: Option<Vec<i64>>,
}

fn campaign_input(st: &SimState, obj: &Map<String, Value>) -> Result<CampaignInput, Reply> {
    let mut errors = FieldErrors::new();
    let scheduled =
        validate::nullable_text(obj, "scheduled_datetime", &mut errors).and_then(|raw| match raw {
            None => Some(None),
            Some(raw) => {
                let parsed = validate::parse_datetime(&raw);
                if parsed.is_none() {
                    validate::add_error(&mut errors, "scheduled_datetime", validate::MSG_DATETIME);
                }
                parsed.map(Some)
            }
        });
    let automation = validate::nullable_int(obj, "automation", false, &mut errors).filter(|id| {
        let missing = id.filter(|&id| st.catalog.automations.get(id).is_none());
        if let Some(id) = missing {
            validate::add_error(&mut errors, "automation", validate::no_such_pk_message(id));
        }
        missing.is_none()
    });
    let lists = obj.contains_key("lists").then(|| {
        let ids = validate::int_list(obj, "lists", &mut errors);
        if let Some(&id) = ids.iter().find(|&&id| st.store.list(id).is_none()) {
            validate::add_error(&mut errors, "lists", validate::no_such_pk_message(id));
        }
        ids
    });
    let input = CampaignInput {
        name: validate::required_text(obj, "name", false, &mut errors),
        scheduled,
        status: validate::choice(
            obj,
            "status",
            &catalog::CAMPAIGN_STATUSES,
            false,
            &mut errors,
        ),
        automation,
        lists,
    };
    field_errors(errors)?;
    Ok(input)
}

pub(super) fn patch_campaign(st: &mut SimState, req: &ApiRequest<'_>, id: &str) -> Outcome {
    let id = lookup(id)?;
    st.catalog.campaigns.get(id).ok_or_else(Reply::not_found)?;
    let obj = req.json_object()?;
    let input = campaign_input(st, &obj)?;
    if let Some(c) = st.catalog.campaigns.get_mut(id) {
        if let Some(name) = input.name {
            c.name = name;
        }
        if let Some(scheduled) = input.scheduled {
            c.scheduled = scheduled;
        }
        if let Some(status) = input.status {
            c.status = status;
        }
        if let Some(automation) = input.automation {
            c.automation = automation;
        }
        if let Some(lists) = input.lists {
            c.lists = lists;
        }
        c.updated = Utc::now();
    }
    get_campaign(st, &id.to_string())
}
