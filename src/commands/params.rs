//! One typed request per action. `prepare` checks a command's `params` against its type
//! before anything is queued, and renders the Spoki request the queue will send: `id` fills
//! the path, the other params become the query (GET, DELETE) or the JSON body (POST, PATCH),
//! and `bulk_sync_contacts` sends its contacts array itself (docs/actions.md).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::describe::{self, Described, ParamDoc};
use super::types::{
    CampaignStatus, ContactIn, ContactStatus, Contacts, Date, DateTime, E164, Email, FieldCode,
    FieldType, Given, Granularity, Id, RoleName, SortOrder, TemplateCategory, Text, TicketPriority,
    TicketStatus, WebhookPlatform,
};
use crate::spoki::actions::{Action, Method};

/// Params that are not what the action takes; `field` is a path such as `contacts[3].phone`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", if field.is_empty() { message.clone() } else { format!("{field}: {message}") })]
pub struct ParamError {
    pub field: String,
    pub message: String,
}

impl ParamError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> ParamError {
        ParamError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The HTTP request a command sends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rendered {
    pub method: String,
    /// Relative to `spoki.base_url`, `{id}` filled in.
    pub path: String,
    pub query: Vec<(String, String)>,
    pub body: Option<Value>,
}

/// A command whose params passed their checks.
#[derive(Clone, Debug)]
pub struct Prepared {
    pub action: Action,
    /// The params as checked (a top-level `null` of a create or read means "not given" and is
    /// dropped; in a PATCH it clears the field and stays); what `GET /v1/commands/{id}` shows.
    pub params: Value,
    pub request: Rendered,
}

/// Checks `params` for `action` and renders its request.
///
/// # Errors
/// An unknown action, or params that do not fit the action's type, naming the field.
pub fn prepare(action: &str, params: Value) -> Result<Prepared, ParamError> {
    let Some(spec) = Action::from_name(action) else {
        let near = Action::closest(action);
        let hint = if near.is_empty() {
            "`spoki-sync actions` lists them".to_owned()
        } else {
            format!(
                "did you mean {}? (`spoki-sync actions` lists them all)",
                near.join(", ")
            )
        };
        return Err(ParamError::new(
            "action",
            format!("unknown action {action:?}; {hint}"),
        ));
    };
    let mut params = match params {
        Value::Object(map) => map,
        Value::Null => Map::new(),
        _ => return Err(ParamError::new("params", "must be a JSON object")),
    };
    let id = if spec.path().contains("{id}") {
        let raw = params
            .remove("id")
            .ok_or_else(|| ParamError::new("id", "missing; this action acts on one object"))?;
        let id: Id =
            serde_json::from_value(raw).map_err(|e| ParamError::new("id", e.to_string()))?;
        Some(id.0)
    } else {
        None
    };
    let checked = checked(spec, Value::Object(params))?;
    // A PATCH (and the upsert of one contact) says exactly what the user said: its `null`s
    // clear fields. Elsewhere a
    // top-level `null` is an optional field not given; nested ones are the user's and stay.
    let checked = if spec.method() == Method::Patch || spec == Action::CreateOrUpdateContact {
        checked
    } else {
        drop_top_level_nulls(checked)
    };
    let path = match id {
        Some(id) => spec.path().replace("{id}", &id.to_string()),
        None => spec.path().to_owned(),
    };
    let request = render(spec, path, &checked);
    let mut shown = checked;
    if let (Some(id), Value::Object(map)) = (id, &mut shown) {
        map.insert("id".to_owned(), Value::from(id));
    }
    Ok(Prepared {
        action: spec,
        params: shown,
        request,
    })
}

fn render(spec: Action, path: String, checked: &Value) -> Rendered {
    let empty = Map::new();
    let fields = checked.as_object().unwrap_or(&empty);
    let (query, body) = match spec.method() {
        Method::Get | Method::Delete => (to_query(fields), None),
        Method::Post | Method::Patch => {
            let body = if spec == Action::BulkSyncContacts {
                fields
                    .get("contacts")
                    .cloned()
                    .unwrap_or(Value::Array(Vec::new()))
            } else {
                checked.clone()
            };
            (Vec::new(), Some(body))
        }
    };
    Rendered {
        method: spec.method().as_str().to_owned(),
        path,
        query,
        body,
    }
}

fn to_query(fields: &Map<String, Value>) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    for (key, value) in fields {
        match value {
            Value::Null => {}
            Value::String(s) => pairs.push((key.clone(), s.clone())),
            Value::Array(items) => {
                for item in items {
                    pairs.push((key.clone(), scalar(item)));
                }
            }
            other => pairs.push((key.clone(), scalar(other))),
        }
    }
    pairs
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Optional fields not given serialise as `null` at the top level: they are not sent.
fn drop_top_level_nulls(v: Value) -> Value {
    match v {
        Value::Object(map) => {
            Value::Object(map.into_iter().filter(|(_, v)| !v.is_null()).collect())
        }
        other => other,
    }
}

/// Checks beyond what the types say.
trait Check {
    fn check(&self) -> Result<(), ParamError> {
        Ok(())
    }
}

/// A params type: checked, and described from the same declaration.
trait Typed: DeserializeOwned + Serialize + Check + Described {}
impl<T: DeserializeOwned + Serialize + Check + Described> Typed for T {}

/// What `check` does with an action's params type: check these params against it, or list
/// the params it takes. One table serves both, so they cannot disagree.
enum Mode {
    Check(Value),
    Describe,
}

/// What `check` gives back for each `Mode`.
enum Done {
    Checked(Result<Value, ParamError>),
    Described(Vec<ParamDoc>),
}

fn typed<T: Typed>(params: Mode) -> Done {
    match params {
        Mode::Check(value) => Done::Checked(validate::<T>(value)),
        Mode::Describe => Done::Described(T::params()),
    }
}

/// The params `action` takes besides the path's `id` (see `describe::describe`).
pub(super) fn described(action: Action) -> Vec<ParamDoc> {
    match check(action, Mode::Describe) {
        Done::Described(docs) => docs,
        Done::Checked(_) => Vec::new(),
    }
}

/// Checks `params` against `action`'s type.
fn checked(action: Action, params: Value) -> Result<Value, ParamError> {
    match check(action, Mode::Check(params)) {
        Done::Checked(result) => result,
        Done::Described(_) => Err(ParamError::new("", "internal: no check ran")),
    }
}

fn validate<T: DeserializeOwned + Serialize + Check>(params: Value) -> Result<Value, ParamError> {
    let parsed: T = serde_path_to_error::deserialize(params).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let message = e.into_inner().to_string();
        // serde names a missing field in the message, at its parent's path.
        let missing = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next());
        let field = match missing {
            Some(name) if path.is_empty() => name.to_owned(),
            Some(name) => format!("{path}.{name}"),
            None => path,
        };
        ParamError::new(field, message)
    })?;
    parsed.check()?;
    serde_json::to_value(&parsed).map_err(|e| ParamError::new("", e.to_string()))
}

/// Declares a params struct: unknown fields refused, every field named by serde's errors.
macro_rules! params {
    ($(#[$meta:meta])* $name:ident { $($field:ident : $ty:ty),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct $name { $($field: $ty,)* }

        impl Described for $name {
            fn params() -> Vec<ParamDoc> {
                vec![$(describe::field::<$ty>(stringify!($field)),)*]
            }
        }
    };
}

/// Declares a PATCH params struct: every field optional, and an explicit `null` kept (it
/// clears the field in Spoki) while a left-out field is not sent.
macro_rules! patch {
    ($(#[$meta:meta])* $name:ident { $($field:ident : $ty:ty),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct $name {
            $(#[serde(default, skip_serializing_if = "Given::is_absent")] $field: Given<$ty>,)*
        }

        impl Described for $name {
            fn params() -> Vec<ParamDoc> {
                // Every field may be left out; an explicit `null` clears it.
                vec![$(describe::field::<Option<$ty>>(stringify!($field)),)*]
            }
        }

        impl $name {
            /// Whether any field was given (a `null` counts: it clears).
            #[allow(dead_code)]
            fn any_given(&self) -> bool {
                false $(|| !self.$field.is_absent())*
            }
        }
    };
}

params!(
    /// Actions that take nothing but the path's `id`.
    Nothing {}
);
params!(
    /// `add_contact_operator`, `remove_contact_operator`.
    Operator { email: Email }
);
params!(AddServiceUser {
    role: RoleName,
    name: Text
});
params!(BulkContacts { contacts: Contacts });
params!(CreateList { name: Text });
params!(CreateCustomField {
    label: Text,
    code: FieldCode,
    field_type: FieldType,
    example: Option<String>,
});
params!(CreateMedia {
    title: Text,
    external_url: Text,
    format_type: Option<String>,
    content_type: Option<String>,
});
params!(CreateTemplate {
    name: Text,
    category: TemplateCategory,
    subcategory: Option<String>,
    templatelocalization_set: Option<Vec<Map<String, Value>>>,
    example_custom_fields: Option<Map<String, Value>>,
    template_groups: Option<Vec<Value>>,
});
params!(CreateTicket {
    contact_phone: E164,
    title: Text,
    status: TicketStatus,
    priority: Option<TicketPriority>,
    description: Option<String>,
    reference: Option<String>,
});
params!(DeleteTemplate { force_delete: Option<bool> });
params!(Paging {
    page: Option<u32>,
    page_size: Option<u32>,
});
params!(Search {
    search: Option<String>,
    page: Option<u32>,
    page_size: Option<u32>,
});
params!(ListAutomations {
    search: Option<String>,
    is_active: Option<bool>,
    webhook_platform: Option<WebhookPlatform>,
    page: Option<u32>,
    page_size: Option<u32>,
});
params!(ListContacts {
    search: Option<String>,
    tag: Option<Id>,
    is_blocked: Option<bool>,
    email: Option<String>,
    phone: Option<E164>,
    language: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    status: Option<ContactStatus>,
    page: Option<u32>,
    page_size: Option<u32>,
});
params!(ListReports {
    granularity: Granularity,
    start_date: Date,
    end_date: Date,
});
params!(ListTickets {
    status: Option<TicketStatus>,
    page: Option<u32>,
    per_page: Option<u32>,
    sort_by: Option<String>,
    order: Option<SortOrder>,
});
params!(ListCampaigns {
    scheduled_datetime_gte: Option<DateTime>,
    scheduled_datetime_lte: Option<DateTime>,
    page: Option<u32>,
    page_size: Option<u32>,
});
params!(ListTemplates {
    search: Option<String>,
    channel_id: Option<Id>,
    page: Option<u32>,
    page_size: Option<u32>,
});
params!(RetrieveTemplate { channel_id: Option<Id> });
params!(RemoveFromList {
    ids: Option<Vec<Id>>,
    phones: Option<Vec<E164>>,
    emails: Option<Vec<Email>>,
});
patch!(UpdateCampaign {
    name: Text,
    scheduled_datetime: DateTime,
    status: CampaignStatus,
    automation: Id,
    lists: Vec<Id>,
});
patch!(UpdateContact {
    phone: E164,
    first_name: String,
    last_name: String,
    email: Email,
    language: String,
    status: ContactStatus,
    notes: String,
    is_blocked: bool,
    custom_fields: std::collections::BTreeMap<String, Option<String>>,
});
params!(UpdateLabel { label: Text });
params!(UpdateTitle { title: Text });
params!(UpdateRole { role: RoleName });
patch!(UpdateTemplate {
    name: Text,
    category: TemplateCategory,
    subcategory: String,
    templatelocalization_set: Vec<Map<String, Value>>,
    example_custom_fields: Map<String, Value>,
    template_groups: Vec<Value>,
});
params!(
    /// `start_automation`: the automation's numeric id and one contact.
    StartAutomation {
        automation: Id,
        phone: E164,
        first_name: Option<String>,
        last_name: Option<String>,
        email: Option<Email>,
        language: Option<String>,
        custom_fields: Option<std::collections::BTreeMap<String, String>>,
        metadata: Option<Map<String, Value>>,
    }
);

impl Check for Nothing {}
impl Check for Operator {}
impl Check for AddServiceUser {}
impl Check for BulkContacts {}
impl Check for CreateList {}
impl Check for CreateCustomField {}
impl Check for CreateMedia {}
impl Check for CreateTemplate {}
impl Check for CreateTicket {}
impl Check for DeleteTemplate {}
impl Check for Search {
    fn check(&self) -> Result<(), ParamError> {
        check_page(self.page, self.page_size)
    }
}

impl Check for ListAutomations {
    fn check(&self) -> Result<(), ParamError> {
        check_page(self.page, self.page_size)
    }
}

impl Check for ListTickets {
    fn check(&self) -> Result<(), ParamError> {
        check_page(self.page, None)?;
        if self.per_page == Some(0) {
            return Err(ParamError::new("per_page", "must be at least 1"));
        }
        Ok(())
    }
}

impl Check for ListCampaigns {
    fn check(&self) -> Result<(), ParamError> {
        check_page(self.page, self.page_size)
    }
}

impl Check for ListTemplates {
    fn check(&self) -> Result<(), ParamError> {
        check_page(self.page, self.page_size)
    }
}
impl Check for RetrieveTemplate {}
impl Check for UpdateLabel {}
impl Check for UpdateTitle {}
impl Check for UpdateRole {}
impl Check for UpdateTemplate {}
impl Check for StartAutomation {}

impl Check for Paging {
    fn check(&self) -> Result<(), ParamError> {
        check_page(self.page, self.page_size)
    }
}

impl Check for ListContacts {
    fn check(&self) -> Result<(), ParamError> {
        check_page(self.page, self.page_size)
    }
}

impl Check for ListReports {
    fn check(&self) -> Result<(), ParamError> {
        // Both are YYYY-MM-DD, so text order is date order.
        if String::from(self.start_date.clone()) > String::from(self.end_date.clone()) {
            return Err(ParamError::new("end_date", "is before start_date"));
        }
        Ok(())
    }
}

impl Check for RemoveFromList {
    fn check(&self) -> Result<(), ParamError> {
        let given = [
            self.ids.as_ref().map(Vec::len),
            self.phones.as_ref().map(Vec::len),
            self.emails.as_ref().map(Vec::len),
        ];
        if given.iter().flatten().sum::<usize>() == 0 {
            return Err(ParamError::new(
                "",
                "give at least one contact to remove in ids, phones or emails",
            ));
        }
        Ok(())
    }
}

impl Check for UpdateCampaign {
    fn check(&self) -> Result<(), ParamError> {
        at_least_one(
            self.any_given(),
            "name, scheduled_datetime, status, automation or lists",
        )
    }
}

impl Check for UpdateContact {
    fn check(&self) -> Result<(), ParamError> {
        at_least_one(self.any_given(), "a contact field to change")
    }
}

fn at_least_one(any: bool, what: &str) -> Result<(), ParamError> {
    if any {
        Ok(())
    } else {
        Err(ParamError::new(
            "",
            format!("nothing to change: give {what}"),
        ))
    }
}

fn check_page(page: Option<u32>, page_size: Option<u32>) -> Result<(), ParamError> {
    if page == Some(0) {
        return Err(ParamError::new("page", "pages are numbered from 1"));
    }
    if page_size == Some(0) {
        return Err(ParamError::new("page_size", "must be at least 1"));
    }
    Ok(())
}

/// The type each action's params must fit. Exhaustive: a new action must be given one.
fn check(action: Action, params: Mode) -> Done {
    use Action as A;
    match action {
        A::AddContactOperator | A::RemoveContactOperator => typed::<Operator>(params),
        A::AddServiceUser => typed::<AddServiceUser>(params),
        A::BulkSyncContacts | A::SyncContactsToList => typed::<BulkContacts>(params),
        A::CreateOrUpdateContact => typed::<ContactIn>(params),
        A::CreateContactList => typed::<CreateList>(params),
        A::CreateCustomField => typed::<CreateCustomField>(params),
        A::CreateMediaFile => typed::<CreateMedia>(params),
        A::CreateTemplate => typed::<CreateTemplate>(params),
        A::CreateTicket => typed::<CreateTicket>(params),
        A::DeleteTemplate => typed::<DeleteTemplate>(params),
        A::ListAutomations => typed::<ListAutomations>(params),
        A::ListCampaigns => typed::<ListCampaigns>(params),
        A::ListContacts => typed::<ListContacts>(params),
        A::ListCustomFields | A::ListLists | A::ListRoles => typed::<Search>(params),
        A::ListMedia | A::ListTags | A::ListPartners => typed::<Paging>(params),
        A::ListReports => typed::<ListReports>(params),
        A::ListTemplates => typed::<ListTemplates>(params),
        A::ListTickets => typed::<ListTickets>(params),
        A::RemoveContactsFromList => typed::<RemoveFromList>(params),
        A::RetrieveTemplate => typed::<RetrieveTemplate>(params),
        A::UpdateCampaign => typed::<UpdateCampaign>(params),
        A::UpdateContact => typed::<UpdateContact>(params),
        A::UpdateCustomField => typed::<UpdateLabel>(params),
        A::UpdateMedia => typed::<UpdateTitle>(params),
        A::UpdateRole | A::UpdateInvitationRole => typed::<UpdateRole>(params),
        A::UpdateTemplate => typed::<UpdateTemplate>(params),
        A::StartAutomation => typed::<StartAutomation>(params),
        // These take only the path's id, or nothing at all (the bare lists).
        A::CheckRolePrivateKey
        | A::CloneTemplate
        | A::CreateAccountOnboardingLink
        | A::DeleteCustomField
        | A::DeleteContact
        | A::DeleteList
        | A::DeleteMediaFile
        | A::DeleteRole
        | A::DeleteTicket
        | A::GenerateRolePrivateKey
        | A::GetAccountCurrentReport
        | A::ListAccounts
        | A::ListAgencies
        | A::RemoveAllListContacts
        | A::ResendInvitation
        | A::RetrieveAccount
        | A::RetrieveAutomation
        | A::RetrieveContact
        | A::RetrieveCustomField
        | A::RetrieveList
        | A::RetrieveMedia
        | A::RetrieveRole
        | A::RetrieveTag
        | A::RevertTemplateToDraft => typed::<Nothing>(params),
    }
}

impl Check for ContactIn {}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(action: &str, params: Value) -> ParamError {
        prepare(action, params).expect_err("params must be refused")
    }

    #[test]
    fn every_action_has_a_type() {
        // Each catalogue action with its path id given and nothing else either prepares or
        // names a missing field: none falls through to a panic or a wrong route.
        for &a in Action::ALL {
            let params = if a.path().contains("{id}") {
                json!({"id": 1})
            } else {
                json!({})
            };
            match prepare(a.name(), params) {
                Ok(p) => assert_eq!(p.request.method, a.method().as_str()),
                Err(e) => assert!(
                    e.message.contains("missing field")
                        || e.message.contains("nothing to change")
                        || e.message.contains("at least one"),
                    "{a}: {e}"
                ),
            }
        }
    }

    #[test]
    fn renders_path_query_and_body() {
        let p = prepare("delete_template", json!({"id": "12", "force_delete": true})).expect("ok");
        assert_eq!(p.request.path, "templates/12/");
        assert_eq!(
            p.request.query,
            vec![("force_delete".into(), "true".into())]
        );
        assert_eq!(p.request.body, None);
        assert_eq!(p.params, json!({"id": 12, "force_delete": true}));

        let p = prepare(
            "bulk_sync_contacts",
            json!({"contacts": [{"phone": "+393331234567", "first_name": "Anna"}]}),
        )
        .expect("ok");
        assert_eq!(
            p.request.body,
            Some(json!([{"phone": "+393331234567", "first_name": "Anna"}]))
        );

        let p = prepare("revert_template_to_draft", json!({"id": 3})).expect("ok");
        assert_eq!(p.request.path, "templates/3/back_to_draft/");
        assert_eq!(p.request.body, Some(json!({})));
    }

    #[test]
    fn a_patch_keeps_the_users_nulls() {
        let p = prepare("update_contact", json!({"id": 5, "email": null})).expect("clears");
        assert_eq!(p.request.body, Some(json!({"email": null})));
        let p = prepare(
            "update_contact",
            json!({"id": 5, "first_name": "Anna", "custom_fields": {"CITTA": null}}),
        )
        .expect("ok");
        assert_eq!(
            p.request.body,
            Some(json!({"first_name": "Anna", "custom_fields": {"CITTA": null}}))
        );
        assert!(prepare("update_contact", json!({"id": 5})).is_err());
        let p = prepare(
            "update_campaign",
            json!({"id": 2, "scheduled_datetime": null}),
        )
        .expect("ok");
        assert_eq!(p.request.body, Some(json!({"scheduled_datetime": null})));
        // Outside a PATCH a top-level null is a field not given; nested ones stay.
        let p = prepare(
            "create_template",
            json!({"name": "t", "category": "UTILITY", "subcategory": null,
                   "example_custom_fields": {"CITY": null}}),
        )
        .expect("ok");
        assert_eq!(
            p.request.body,
            Some(
                json!({"name": "t", "category": "UTILITY", "example_custom_fields": {"CITY": null}})
            )
        );
        let p = prepare(
            "create_or_update_contact",
            json!({"phone": "+393331234567", "email": null}),
        )
        .expect("ok");
        assert_eq!(
            p.request.body,
            Some(json!({"phone": "+393331234567", "email": null}))
        );
    }

    #[test]
    fn every_paged_action_starts_at_page_one() {
        for action in [
            "list_contacts",
            "list_lists",
            "list_custom_fields",
            "list_roles",
            "list_media",
            "list_tags",
            "list_partners",
            "list_automations",
            "list_campaigns",
            "list_templates",
            "list_tickets",
        ] {
            assert_eq!(err(action, json!({"page": 0})).field, "page", "{action}");
            assert!(prepare(action, json!({"page": 1})).is_ok(), "{action}");
        }
    }

    #[test]
    fn refusals_name_the_field() {
        assert_eq!(err("no_such_action", json!({})).field, "action");
        let e = err("create_ticket", json!({"title": "x", "status": "Open"}));
        assert!(e.message.contains("contact_phone"), "{e}");
        let e = err(
            "create_ticket",
            json!({"contact_phone": "3331234567", "title": "x", "status": "Open"}),
        );
        assert_eq!(e.field, "contact_phone");
        let e = err(
            "create_ticket",
            json!({"contact_phone": "+393331234567", "title": "x", "status": "Done"}),
        );
        assert_eq!(e.field, "status");
        let mut contacts = vec![json!({"phone": "+393331234567"}); 3];
        contacts[2] = json!({"phone": "nope"});
        let e = err("bulk_sync_contacts", json!({ "contacts": contacts }));
        assert_eq!(e.field, "contacts[2].phone");
        let e = err(
            "bulk_sync_contacts",
            json!({ "contacts": vec![json!({"phone": "+393331234567"}); 501] }),
        );
        assert_eq!(e.field, "contacts");
        assert!(e.message.contains("500"), "{e}");
        assert_eq!(err("retrieve_contact", json!({})).field, "id");
        assert_eq!(err("retrieve_contact", json!({"id": "abc"})).field, "id");
        let e = err("list_lists", json!({"serach": "x"}));
        assert!(e.message.contains("unknown field"), "{e}");
        let e = err(
            "list_reports",
            json!({"granularity": "Week", "start_date": "2026-01-01", "end_date": "2026-02-01"}),
        );
        assert_eq!(e.field, "granularity");
        // Role names are not a closed list anyone documents: Spoki decides.
        assert!(prepare("add_service_user", json!({"role": "Boss", "name": "bot"})).is_ok());
        assert_eq!(
            err("add_service_user", json!({"role": "", "name": "bot"})).field,
            "role"
        );
        let e = err("remove_contacts_from_list", json!({"id": 1}));
        assert!(e.message.contains("at least one"), "{e}");
    }
}
