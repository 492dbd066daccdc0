//! Handlers of the content endpoints: tags (read only), templates and their review states,
//! media files and tickets.

use axum::http::StatusCode;
use chrono::Utc;
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::SimState;
use super::catalog::{self, TemplateInput, TemplateStatus, Ticket};
use super::query::Query;
use super::routes::{
    ApiRequest, Outcome, Reply, field_errors, lookup, paginated, paginated_sized_by, search_matches,
};
use super::state::iso;
use super::validate::{self, ContactInput, FieldErrors};

// ---- tags ------------------------------------------------------------------------------------

pub(super) fn list_tags(st: &SimState, req: &ApiRequest<'_>) -> Outcome {
    let query = Query::parse(req.query);
    let terms = query.search_terms();
    let tags: Vec<_> = st
        .catalog
        .tags
        .values()
        .filter(|tag| search_matches(&terms, &[&tag.name]))
        .collect();
    paginated(st, req, &query, &tags, |tag| tag.to_json())
}

pub(super) fn get_tag(st: &SimState, id: &str) -> Outcome {
    st.catalog
        .tags
        .get(lookup(id)?)
        .map(|tag| Reply::ok(tag.to_json()))
        .ok_or_else(Reply::not_found)
}

// ---- templates -------------------------------------------------------------------------------

/// Reads a template write; `creating` makes `name` and `category` required.
fn template_input(body: &Value, creating: bool) -> Result<TemplateInput, Reply> {
    let Value::Object(obj) = body else {
        return Err(Reply::bad_request(validate::not_a_dict(body)));
    };
    let mut errors = FieldErrors::new();
    let template_groups = match obj.get("template_groups") {
        None | Some(Value::Null) => None,
        Some(groups @ Value::Array(_)) => Some(groups.clone()),
        Some(other) => {
            validate::add_error(
                &mut errors,
                "template_groups",
                validate::not_a_list_message(other),
            );
            None
        }
    };
    let input = TemplateInput {
        name: validate::required_text(obj, "name", creating, &mut errors),
        category: validate::choice(
            obj,
            "category",
            &catalog::TEMPLATE_CATEGORIES,
            creating,
            &mut errors,
        ),
        subcategory: validate::nullable_text(obj, "subcategory", &mut errors),
        is_favorite: validate::boolean(obj, "is_favorite", &mut errors),
        template_groups,
        example_custom_fields: validate::object(obj, "example_custom_fields", &mut errors),
        localizations: localizations(obj, &mut errors),
    };
    field_errors(errors)?;
    Ok(input)
}

/// `templatelocalization_set`: a list of objects, each with a `language`. Errors come per item,
/// `{}` for the good ones, as DRF's nested list serializer gives them.
fn localizations(
    obj: &Map<String, Value>,
    errors: &mut FieldErrors,
) -> Option<Vec<Map<String, Value>>> {
    const KEY: &str = "templatelocalization_set";
    let items = match obj.get(KEY)? {
        Value::Array(items) => items,
        Value::Null => {
            validate::add_error(errors, KEY, validate::MSG_NULL);
            return None;
        }
        other => {
            validate::add_error(errors, KEY, validate::not_a_list_message(other));
            return None;
        }
    };
    let mut out = Vec::with_capacity(items.len());
    let mut item_errors = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Value::Object(map) => {
                let mut own = FieldErrors::new();
                validate::required_text(map, "language", true, &mut own);
                item_errors.push(Value::Object(own));
                out.push(map.clone());
            }
            other => item_errors.push(validate::not_a_dict(other)),
        }
    }
    if item_errors
        .iter()
        .all(|e| e.as_object().is_some_and(Map::is_empty))
    {
        Some(out)
    } else {
        errors.insert(KEY.to_owned(), Value::Array(item_errors));
        None
    }
}

fn template_reply(st: &SimState, id: i64, status: StatusCode) -> Outcome {
    st.catalog
        .templates
        .get(id)
        .map(|t| Reply::json(status, t.to_json()))
        .ok_or_else(Reply::not_found)
}

fn existing_template(st: &SimState, id: &str) -> Result<i64, Reply> {
    let id = lookup(id)?;
    st.catalog
        .templates
        .get(id)
        .map(|t| t.id)
        .ok_or_else(Reply::not_found)
}

pub(super) fn list_templates(st: &SimState, req: &ApiRequest<'_>) -> Outcome {
    let query = Query::parse(req.query);
    let terms = query.search_terms();
    // `channel_id` picks the WhatsApp channel whose review states are shown; the simulator
    // keeps one state per template, so it is accepted and ignored.
    let templates: Vec<_> = st
        .catalog
        .templates
        .values()
        .filter(|t| {
            let fields = t.search_fields();
            let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
            search_matches(&terms, &fields)
        })
        .collect();
    paginated(st, req, &query, &templates, |t| t.to_json())
}

pub(super) fn create_template(st: &mut SimState, req: &ApiRequest<'_>) -> Outcome {
    let input = template_input(&req.json_body()?, true)?;
    let id = st.catalog.create_template(input, Utc::now());
    template_reply(st, id, StatusCode::CREATED)
}

pub(super) fn get_template(st: &SimState, id: &str) -> Outcome {
    template_reply(st, existing_template(st, id)?, StatusCode::OK)
}

pub(super) fn patch_template(st: &mut SimState, req: &ApiRequest<'_>, id: &str) -> Outcome {
    let id = existing_template(st, id)?;
    let input = template_input(&req.json_body()?, false)?;
    st.catalog.update_template(id, input, Utc::now());
    template_reply(st, id, StatusCode::OK)
}

/// Refused while an automation uses the template, unless `?force_delete=true`.
pub(super) fn delete_template(st: &mut SimState, req: &ApiRequest<'_>, id: &str) -> Outcome {
    let id = existing_template(st, id)?;
    let query = Query::parse(req.query);
    let force = query
        .get("force_delete")
        .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "1"));
    if !force && st.catalog.template_in_use(id) {
        return Err(Reply::detail(
            StatusCode::BAD_REQUEST,
            "This template is used by one or more automations. \
             Use force_delete=true to delete it anyway.",
        ));
    }
    st.catalog.delete_template(id);
    Ok(Reply::no_content())
}

/// A GET that creates: a DRAFT copy of the template, answered 201.
pub(super) fn clone_template(st: &mut SimState, id: &str) -> Outcome {
    let id = existing_template(st, id)?;
    let copy = st
        .catalog
        .clone_template(id, Utc::now())
        .ok_or_else(Reply::not_found)?;
    template_reply(st, copy, StatusCode::CREATED)
}

pub(super) fn template_back_to_draft(st: &mut SimState, id: &str) -> Outcome {
    let id = existing_template(st, id)?;
    st.catalog
        .set_template_status(id, TemplateStatus::Draft, None, Utc::now());
    template_reply(st, id, StatusCode::OK)
}

/// DRAFT (or REJECTED) → PENDING, approved later by itself when so configured.
pub(super) fn submit_template(st: &mut SimState, id: &str) -> Outcome {
    let id = existing_template(st, id)?;
    let status = st.catalog.templates.get(id).map(|t| t.status);
    if matches!(
        status,
        Some(TemplateStatus::Pending | TemplateStatus::Approved)
    ) {
        return Err(Reply::detail(
            StatusCode::BAD_REQUEST,
            "Only a draft or rejected template can be submitted for approval.",
        ));
    }
    if !st.catalog.template_has_localizations(id) {
        return Err(Reply::detail(
            StatusCode::BAD_REQUEST,
            "The template has no localization to submit.",
        ));
    }
    let approve_at = st
        .settings
        .template_auto_approve_after
        .map(|after| Instant::now() + after);
    st.catalog
        .set_template_status(id, TemplateStatus::Pending, approve_at, Utc::now());
    template_reply(st, id, StatusCode::OK)
}

// ---- media -----------------------------------------------------------------------------------

fn existing_media(st: &SimState, id: &str) -> Result<i64, Reply> {
    let id = lookup(id)?;
    st.catalog
        .media
        .get(id)
        .map(|m| m.id)
        .ok_or_else(Reply::not_found)
}

fn media_reply(st: &SimState, id: i64, status: StatusCode) -> Outcome {
    st.catalog
        .media
        .get(id)
        .map(|m| Reply::json(status, m.to_json()))
        .ok_or_else(Reply::not_found)
}

pub(super) fn list_media(st: &SimState, req: &ApiRequest<'_>) -> Outcome {
    let query = Query::parse(req.query);
    let terms = query.search_terms();
    let media: Vec<_> = st
        .catalog
        .media
        .values()
        .filter(|m| search_matches(&terms, &[&m.title]))
        .collect();
    paginated(st, req, &query, &media, |m| m.to_json())
}

/// Registers an external URL (no upload): `title` and `external_url` are required.
pub(super) fn create_media(st: &mut SimState, req: &ApiRequest<'_>) -> Outcome {
    let obj = req.json_object()?;
    let mut errors = FieldErrors::new();
    let title = validate::required_text(&obj, "title", true, &mut errors);
    let url = validate::required_text(&obj, "external_url", true, &mut errors).filter(|url| {
        let ok = validate::is_url(url);
        if !ok {
            validate::add_error(&mut errors, "external_url", validate::MSG_URL);
        }
        ok
    });
    let format_type = validate::nullable_text(&obj, "format_type", &mut errors).flatten();
    let content_type = validate::nullable_text(&obj, "content_type", &mut errors).flatten();
    field_errors(errors)?;
    let id = st.catalog.create_media(
        title.unwrap_or_default(),
        url.unwrap_or_default(),
        format_type,
        content_type,
        Utc::now(),
    );
    media_reply(st, id, StatusCode::CREATED)
}

pub(super) fn get_media(st: &SimState, id: &str) -> Outcome {
    media_reply(st, existing_media(st, id)?, StatusCode::OK)
}

/// Only `title` changes; other keys are ignored.
pub(super) fn patch_media(st: &mut SimState, req: &ApiRequest<'_>, id: &str) -> Outcome {
    let id = existing_media(st, id)?;
    let obj = req.json_object()?;
    let mut errors = FieldErrors::new();
    let title = validate::required_text(&obj, "title", false, &mut errors);
    field_errors(errors)?;
    if let (Some(title), Some(media)) = (title, st.catalog.media.get_mut(id)) {
        media.title = title;
    }
    media_reply(st, id, StatusCode::OK)
}

pub(super) fn delete_media(st: &mut SimState, id: &str) -> Outcome {
    st.catalog
        .media
        .remove(lookup(id)?)
        .map(|_| Reply::no_content())
        .ok_or_else(Reply::not_found)
}

// ---- tickets ---------------------------------------------------------------------------------

/// The answer to every ticket call while the account lacks the tickets feature.
pub(super) fn tickets_disabled(st: &SimState) -> Reply {
    let status = Reply::status_of(st.settings.tickets_disabled_status);
    if status == StatusCode::NOT_FOUND {
        Reply::not_found()
    } else {
        Reply::detail(
            status,
            "The tickets feature is not enabled for this account.",
        )
    }
}

const TICKET_SORT_KEYS: [&str; 7] = [
    "id",
    "created_datetime",
    "updated_datetime",
    "closed_datetime",
    "title",
    "status",
    "priority",
];

fn ticket_json(st: &SimState, t: &Ticket) -> Value {
    let contact = st.store.contact(t.contact_id).map(|c| {
        json!({
            "id": c.id,
            "phone": c.phone,
            "first_name": c.first_name,
            "last_name": c.last_name,
            "email": c.email,
        })
    });
    let owner = st.catalog.roles.get(t.owner).map(catalog::Role::owner_json);
    json!({
        "id": t.id,
        "title": t.title,
        "description": t.description,
        "status": t.status,
        "priority": t.priority,
        "reference": t.reference,
        "created_datetime": iso(t.created),
        "updated_datetime": iso(t.updated),
        "closed_datetime": t.closed.map(iso),
        "contact": contact,
        "owner": owner,
    })
}

fn existing_ticket(st: &SimState, id: &str) -> Result<i64, Reply> {
    let id = lookup(id)?;
    st.catalog
        .tickets
        .get(id)
        .map(|t| t.id)
        .ok_or_else(Reply::not_found)
}

fn ticket_reply(st: &SimState, id: i64, status: StatusCode) -> Outcome {
    st.catalog
        .tickets
        .get(id)
        .map(|t| Reply::json(status, ticket_json(st, t)))
        .ok_or_else(Reply::not_found)
}

/// A ticket write; `None` means "absent, leave as is".
#[derive(Debug, Default)]
struct TicketInput {
    contact_phone: Option<String>,
    title: Option<String>,
    status: Option<String>,
    priority: Option<String>,
    description: Option<Option<String>>,
    reference: Option<Option<String>>,
}

fn ticket_input(obj: &Map<String, Value>, creating: bool) -> Result<TicketInput, Reply> {
    let mut errors = FieldErrors::new();
    let contact_phone = validate::required_text(obj, "contact_phone", creating, &mut errors)
        .filter(|phone| {
            let ok = validate::is_e164(phone);
            if !ok {
                validate::add_error(&mut errors, "contact_phone", validate::MSG_PHONE);
            }
            ok
        });
    let input = TicketInput {
        contact_phone,
        title: validate::required_text(obj, "title", creating, &mut errors),
        status: validate::choice(
            obj,
            "status",
            &catalog::TICKET_STATUSES,
            creating,
            &mut errors,
        ),
        priority: validate::choice(
            obj,
            "priority",
            &catalog::TICKET_PRIORITIES,
            false,
            &mut errors,
        ),
        description: validate::nullable_text(obj, "description", &mut errors),
        reference: validate::nullable_text(obj, "reference", &mut errors),
    };
    field_errors(errors)?;
    Ok(input)
}

/// The id of the contact with this phone, created (with the phone alone) when there is none.
fn ticket_contact(st: &mut SimState, phone: &str) -> i64 {
    if let Some(contact) = st.store.contact_by_phone(phone) {
        return contact.id;
    }
    let input = ContactInput {
        phone: Some(phone.to_owned()),
        ..ContactInput::default()
    };
    let unknown = st.settings.unknown_custom_field;
    st.store.upsert(&input, unknown, Utc::now()).id()
}

pub(super) fn list_tickets(st: &SimState, req: &ApiRequest<'_>) -> Outcome {
    let query = Query::parse(req.query);
    let mut errors = FieldErrors::new();
    let mut check = |key: &str, choices: &[&str]| {
        let value = query.filter(key)?;
        if choices.contains(&value) {
            Some(value.to_owned())
        } else {
            validate::add_error(
                &mut errors,
                key,
                validate::invalid_filter_choice_message(value),
            );
            None
        }
    };
    let status = check("status", &catalog::TICKET_STATUSES);
    let sort_by = check("sort_by", &TICKET_SORT_KEYS);
    let order = check("order", &["asc", "desc"]);
    field_errors(errors)?;
    let mut tickets: Vec<&Ticket> = st
        .catalog
        .tickets
        .values()
        .filter(|t| status.as_deref().is_none_or(|s| s == t.status))
        .collect();
    sort_tickets(&mut tickets, sort_by.as_deref().unwrap_or("id"));
    if order.as_deref() == Some("desc") {
        tickets.reverse();
    }
    paginated_sized_by(st, req, &query, &tickets, "per_page", |t| {
        ticket_json(st, t)
    })
}

/// Stable sort by one of [`TICKET_SORT_KEYS`]; priority sorts highest first.
fn sort_tickets(tickets: &mut [&Ticket], key: &str) {
    let rank = |p: &str| catalog::TICKET_PRIORITIES.iter().position(|&x| x == p);
    match key {
        "created_datetime" => tickets.sort_by_key(|t| t.created),
        "updated_datetime" => tickets.sort_by_key(|t| t.updated),
        "closed_datetime" => tickets.sort_by_key(|t| t.closed),
        "title" => tickets.sort_by(|a, b| a.title.cmp(&b.title)),
        "status" => tickets.sort_by(|a, b| a.status.cmp(&b.status)),
        "priority" => tickets.sort_by_key(|t| rank(&t.priority)),
        _ => tickets.sort_by_key(|t| t.id),
    }
}

pub(super) fn create_ticket(st: &mut SimState, req: &ApiRequest<'_>) -> Outcome {
    let obj = req.json_object()?;
    let input = ticket_input(&obj, true)?;
    let now = Utc::now();
    let contact_id = ticket_contact(st, input.contact_phone.as_deref().unwrap_or_default());
    let owner = st.catalog.fixtures().admin_role_id;
    let status = input.status.unwrap_or_default();
    let closed = (status == "Closed").then_some(now);
    let id = st.catalog.tickets.insert(|id| Ticket {
        id,
        title: input.title.unwrap_or_default(),
        description: input.description.flatten().unwrap_or_default(),
        status,
        priority: input.priority.unwrap_or_else(|| "Medium".to_owned()),
        reference: input.reference.flatten(),
        contact_id,
        owner,
        created: now,
        updated: now,
        closed,
    });
    ticket_reply(st, id, StatusCode::CREATED)
}

pub(super) fn get_ticket(st: &SimState, id: &str) -> Outcome {
    ticket_reply(st, existing_ticket(st, id)?, StatusCode::OK)
}

pub(super) fn patch_ticket(st: &mut SimState, req: &ApiRequest<'_>, id: &str) -> Outcome {
    let id = existing_ticket(st, id)?;
    let obj = req.json_object()?;
    let input = ticket_input(&obj, false)?;
    let now = Utc::now();
    let contact_id = input
        .contact_phone
        .as_deref()
        .map(|phone| ticket_contact(st, phone));
    if let Some(t) = st.catalog.tickets.get_mut(id) {
        if let Some(contact_id) = contact_id {
            t.contact_id = contact_id;
        }
        if let Some(title) = input.title {
            t.title = title;
        }
        if let Some(status) = input.status {
            if status == "Closed" && t.status != "Closed" {
                t.closed = Some(now);
            } else if status != "Closed" {
                t.closed = None;
            }
            t.status = status;
        }
        if let Some(priority) = input.priority {
            t.priority = priority;
        }
        if let Some(description) = input.description {
            t.description = description.unwrap_or_default();
        }
        if let Some(reference) = input.reference {
            t.reference = reference;
        }
        t.updated = now;
    }
    ticket_reply(st, id, StatusCode::OK)
}

pub(super) fn delete_ticket(st: &mut SimState, id: &str) -> Outcome {
    st.catalog
        .tickets
        .remove(lookup(id)?)
        .map(|_| Reply::no_content())
        .ok_or_else(Reply::not_found)
}
