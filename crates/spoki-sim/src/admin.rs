//! Handlers of the account-administration endpoints: accounts and their cached current report,
//! agencies, partners and partner onboarding, reports, roles with service users and private
//! keys, and invitations.

use axum::http::StatusCode;
use chrono::{Datelike as _, Utc};
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::SimState;
use super::catalog::{self, ADMINISTRATOR};
use super::query::Query;
use super::routes::{ApiRequest, Outcome, Reply, field_errors, lookup, paginated, search_matches};
use super::state::iso;
use super::validate::{self, FieldErrors};

// ---- accounts, agencies, partners ------------------------------------------------------------

/// A bare JSON array, not a page.
pub(super) fn list_accounts(st: &SimState) -> Outcome {
    Ok(Reply::ok(json!([st.catalog.account_json()])))
}

/// The id if it is the account's; 404 otherwise.
fn own_account(st: &SimState, id: &str) -> Result<i64, Reply> {
    let id = lookup(id)?;
    if id == st.catalog.account.id {
        Ok(id)
    } else {
        Err(Reply::not_found())
    }
}

pub(super) fn get_account(st: &SimState, id: &str) -> Outcome {
    own_account(st, id)?;
    Ok(Reply::ok(st.catalog.account_json()))
}

/// The figures of a report as the state stands now. The simulator sends no messages, so only
/// `contacted_contacts` (the contacts held) moves.
fn report_figures(st: &SimState) -> Map<String, Value> {
    let mut figures = Map::new();
    figures.insert(
        "contacted_contacts".to_owned(),
        json!(st.store.contact_count()),
    );
    for key in [
        "template_message_count",
        "free_message_count",
        "incoming_message_count",
        "exchanged_messages",
        "sent_message_count",
        "delivered_message_count",
        "read_message_count",
        "conversation_count",
    ] {
        figures.insert(key.to_owned(), json!(0));
    }
    figures
}

/// The same object for the cache period (30 minutes by default), then a fresh one.
pub(super) fn current_report(st: &mut SimState, id: &str) -> Outcome {
    let account = own_account(st, id)?;
    let now = Utc::now();
    let mut fresh = Map::new();
    fresh.insert("account".to_owned(), json!(account));
    fresh.insert("granularity".to_owned(), json!("Month"));
    fresh.insert(
        "period_start".to_owned(),
        json!(format!("{:04}-{:02}-01", now.year(), now.month())),
    );
    fresh.extend(report_figures(st));
    fresh.insert("created_datetime".to_owned(), json!(iso(now)));
    fresh.insert("updated_datetime".to_owned(), json!(iso(now)));
    let ttl = st.settings.report_cache;
    let report = st
        .catalog
        .current_report(account, Instant::now(), ttl, || Value::Object(fresh));
    Ok(Reply::ok(report))
}

pub(super) fn list_agencies(st: &SimState) -> Outcome {
    Ok(Reply::ok(st.catalog.agencies_json()))
}

/// Deprecated upstream; the simulator's account belongs to no partner, so the page is empty.
pub(super) fn list_partners(st: &SimState, req: &ApiRequest<'_>) -> Outcome {
    let query = Query::parse(req.query);
    let partners: Vec<Value> = Vec::new();
    paginated(st, req, &query, &partners, Value::clone)
}

/// `{"account": id}` → `{"redirect_url": …}` with a fresh token.
pub(super) fn partner_onboarding(st: &SimState, req: &ApiRequest<'_>) -> Outcome {
    let obj = req.json_object()?;
    let mut errors = FieldErrors::new();
    let account = validate::nullable_int(&obj, "account", true, &mut errors);
    if let Some(None) = account {
        validate::add_error(&mut errors, "account", validate::MSG_NULL);
    }
    field_errors(errors)?;
    let account = account.flatten().unwrap_or_default();
    if account != st.catalog.account.id {
        return Err(Reply::not_found());
    }
    Ok(Reply::ok(json!({
        "redirect_url": format!(
            "{}/onboarding/?account={account}&token={}",
            req.origin(),
            catalog::random_hex(16)
        ),
    })))
}

/// `POST /channel/ {"platform": 1}` starts a WhatsApp channel's onboarding and answers where
/// to send the user (the answer's shape is a guess: `id`, `platform`, `redirect_url`);
/// `GET /channel/` lists no channel.
pub(super) fn channels(st: &SimState, req: &ApiRequest<'_>, method: &str) -> Outcome {
    if method == "GET" {
        return Ok(Reply::ok(
            json!({"count": 0, "next": null, "previous": null, "results": []}),
        ));
    }
    let obj = req.json_object()?;
    let mut errors = FieldErrors::new();
    let platform = validate::nullable_int(&obj, "platform", true, &mut errors);
    if let Some(None) = platform {
        validate::add_error(&mut errors, "platform", validate::MSG_NULL);
    }
    field_errors(errors)?;
    let platform = platform.flatten().unwrap_or_default();
    let token = catalog::random_hex(16);
    Ok(Reply::created(json!({
        "id": st.catalog.account.id * 10 + 1,
        "platform": platform,
        "redirect_url": format!(
            "{}/onboarding/?account={}&token={token}",
            req.origin(),
            st.catalog.account.id
        ),
    })))
}

// ---- reports ---------------------------------------------------------------------------------

/// `granularity` (Day/Month/Year), `start_date`, `end_date` (YYYY-MM-DD) are required; the
/// answer for the same three is cached like the current report.
pub(super) fn reports(st: &mut SimState, req: &ApiRequest<'_>) -> Outcome {
    let query = Query::parse(req.query);
    let mut errors = FieldErrors::new();
    let granularity = match query.filter("granularity") {
        None => {
            validate::add_error(&mut errors, "granularity", validate::MSG_REQUIRED);
            None
        }
        Some(g) if catalog::REPORT_GRANULARITIES.contains(&g) => Some(g.to_owned()),
        Some(g) => {
            validate::add_error(
                &mut errors,
                "granularity",
                validate::invalid_filter_choice_message(g),
            );
            None
        }
    };
    let mut date = |key: &str| match query.filter(key) {
        None => {
            validate::add_error(&mut errors, key, validate::MSG_REQUIRED);
            None
        }
        Some(raw) => {
            let parsed = validate::parse_date(raw);
            if parsed.is_none() {
                validate::add_error(&mut errors, key, validate::MSG_DATE);
            }
            parsed
        }
    };
    let start = date("start_date");
    let end = date("end_date");
    if let (Some(start), Some(end)) = (start, end) {
        if start > end {
            validate::add_error(
                &mut errors,
                "non_field_errors",
                "start_date must not be after end_date.",
            );
        }
    }
    field_errors(errors)?;
    let (Some(granularity), Some(start), Some(end)) = (granularity, start, end) else {
        return Err(Reply::bad_request(json!({})));
    };
    let now = Utc::now();
    let mut fresh = Map::new();
    fresh.insert("account".to_owned(), json!(st.catalog.account.id));
    fresh.insert("granularity".to_owned(), json!(granularity));
    fresh.insert("start_date".to_owned(), json!(start.to_string()));
    fresh.insert("end_date".to_owned(), json!(end.to_string()));
    fresh.extend(report_figures(st));
    fresh.insert("created_datetime".to_owned(), json!(iso(now)));
    fresh.insert("updated_datetime".to_owned(), json!(iso(now)));
    let key = (granularity, start.to_string(), end.to_string());
    let ttl = st.settings.report_cache;
    let report = st
        .catalog
        .report(key, Instant::now(), ttl, || Value::Object(fresh));
    Ok(Reply::ok(report))
}

// ---- roles -----------------------------------------------------------------------------------

fn existing_role(st: &SimState, id: &str) -> Result<i64, Reply> {
    let id = lookup(id)?;
    st.catalog
        .roles
        .get(id)
        .map(|r| r.id)
        .ok_or_else(Reply::not_found)
}

fn role_reply(st: &SimState, id: i64, status: StatusCode) -> Outcome {
    st.catalog
        .roles
        .get(id)
        .map(|r| Reply::json(status, r.to_json()))
        .ok_or_else(Reply::not_found)
}

/// Whether role `id` is the account's only Administrator.
fn is_last_admin(st: &SimState, id: i64) -> bool {
    st.catalog
        .roles
        .get(id)
        .is_some_and(|r| r.role == ADMINISTRATOR)
        && st.catalog.administrators() == 1
}

/// A required `role` among the role names.
fn role_name(obj: &Map<String, Value>) -> Result<String, Reply> {
    let mut errors = FieldErrors::new();
    let role = validate::choice(obj, "role", &catalog::ROLE_NAMES, true, &mut errors);
    field_errors(errors)?;
    role.ok_or_else(|| Reply::bad_request(json!({})))
}

pub(super) fn list_roles(st: &SimState, req: &ApiRequest<'_>) -> Outcome {
    let query = Query::parse(req.query);
    let terms = query.search_terms();
    let roles: Vec<_> = st
        .catalog
        .roles
        .values()
        .filter(|r| {
            let fields = r.search_fields();
            let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
            search_matches(&terms, &fields)
        })
        .collect();
    paginated(st, req, &query, &roles, |r| r.to_json())
}

pub(super) fn get_role(st: &SimState, id: &str) -> Outcome {
    role_reply(st, existing_role(st, id)?, StatusCode::OK)
}

/// The account's only Administrator cannot be deleted.
pub(super) fn delete_role(st: &mut SimState, id: &str) -> Outcome {
    let id = existing_role(st, id)?;
    if is_last_admin(st, id) {
        return Err(Reply::detail(
            StatusCode::BAD_REQUEST,
            "You cannot delete the only administrator of the account.",
        ));
    }
    st.catalog.roles.remove(id);
    Ok(Reply::no_content())
}

/// `{role, name}` → a new role with `is_service_user: true`, answered 201.
pub(super) fn add_service_user(st: &mut SimState, req: &ApiRequest<'_>) -> Outcome {
    let obj = req.json_object()?;
    let mut errors = FieldErrors::new();
    let name = validate::required_text(&obj, "name", true, &mut errors);
    let role = validate::choice(&obj, "role", &catalog::ROLE_NAMES, true, &mut errors);
    field_errors(errors)?;
    let (Some(name), Some(role)) = (name, role) else {
        return Err(Reply::bad_request(json!({})));
    };
    let id = st.catalog.add_service_user(name, role);
    role_reply(st, id, StatusCode::CREATED)
}

/// A fresh key each call; the role then has one.
pub(super) fn generate_private_key(st: &mut SimState, id: &str) -> Outcome {
    let id = existing_role(st, id)?;
    let key = catalog::random_hex(32);
    if let Some(role) = st.catalog.roles.get_mut(id) {
        role.private_key = Some(key.clone());
    }
    Ok(Reply::ok(json!({ "private_key": key })))
}

pub(super) fn has_private_key(st: &SimState, id: &str) -> Outcome {
    let id = existing_role(st, id)?;
    let has = st
        .catalog
        .roles
        .get(id)
        .is_some_and(|r| r.private_key.is_some());
    Ok(Reply::ok(json!({ "has_private_key": has })))
}

/// `{role}`; the only Administrator cannot become something else.
pub(super) fn update_role(st: &mut SimState, req: &ApiRequest<'_>, id: &str) -> Outcome {
    let id = existing_role(st, id)?;
    let role = role_name(&req.json_object()?)?;
    if role != ADMINISTRATOR && is_last_admin(st, id) {
        return Err(Reply::detail(
            StatusCode::BAD_REQUEST,
            "The account must keep at least one administrator.",
        ));
    }
    if let Some(r) = st.catalog.roles.get_mut(id) {
        r.role = role;
    }
    role_reply(st, id, StatusCode::OK)
}

// ---- invitations -----------------------------------------------------------------------------

fn existing_invitation(st: &SimState, id: &str) -> Result<i64, Reply> {
    let id = lookup(id)?;
    st.catalog
        .invitations
        .get(id)
        .map(|i| i.id)
        .ok_or_else(Reply::not_found)
}

fn invitation_reply(st: &SimState, id: i64) -> Outcome {
    st.catalog
        .invitations
        .get(id)
        .map(|i| Reply::ok(i.to_json()))
        .ok_or_else(Reply::not_found)
}

pub(super) fn list_invitations(st: &SimState, req: &ApiRequest<'_>) -> Outcome {
    let query = Query::parse(req.query);
    let invitations: Vec<_> = st.catalog.invitations.values().collect();
    paginated(st, req, &query, &invitations, |i| i.to_json())
}

pub(super) fn get_invitation(st: &SimState, id: &str) -> Outcome {
    invitation_reply(st, existing_invitation(st, id)?)
}

/// Re-sends the invitation e-mail: counted, answered `{}`.
pub(super) fn send_invitation(st: &mut SimState, id: &str) -> Outcome {
    let id = existing_invitation(st, id)?;
    if let Some(invitation) = st.catalog.invitations.get_mut(id) {
        invitation.sends += 1;
    }
    Ok(Reply::ok(json!({})))
}

pub(super) fn update_invitation_role(st: &mut SimState, req: &ApiRequest<'_>, id: &str) -> Outcome {
    let id = existing_invitation(st, id)?;
    let role = role_name(&req.json_object()?)?;
    if let Some(invitation) = st.catalog.invitations.get_mut(id) {
        invitation.role = role;
    }
    invitation_reply(st, id)
}
