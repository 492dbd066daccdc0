//! The simulator's data: contacts, lists and custom fields, their upsert and membership rules
//! and their JSON shapes.
//!
//! Every change to a contact's own data is also logged as a [`ContactChange`], which
//! `events.rs` turns into `contact.*` webhooks once the operation that caused it is done.
//! List membership is not contact data (Spoki reports it as `contact_list.*`), so it logs
//! nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use super::UnknownCustomField;
use super::validate::{self, ContactInput, CustomFieldInput, FieldErrors, PhoneRule};

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Contact {
    pub id: i64,
    pub phone: String,
    pub first_name: String,
    pub last_name: String,
    pub email: Option<String>,
    pub language: String,
    pub status: String,
    pub is_blocked: bool,
    pub notes: String,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
    /// Custom-field id → this contact's value for it.
    fields: BTreeMap<i64, FieldValue>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct FieldValue {
    /// The `contactfield_set` entry's own id.
    id: i64,
    value: String,
}

#[derive(Clone, Debug)]
pub(super) struct ContactList {
    pub id: i64,
    pub name: String,
    color: Option<String>,
    created: DateTime<Utc>,
    /// Contact ids.
    members: BTreeSet<i64>,
}

#[derive(Clone, Debug)]
pub(super) struct CustomField {
    pub id: i64,
    pub label: String,
    pub code: String,
    field_type: i64,
    example: String,
}

/// What an upsert did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Upserted {
    Created(i64),
    Updated(i64),
}

impl Upserted {
    pub(super) fn id(self) -> i64 {
        match self {
            Self::Created(id) | Self::Updated(id) => id,
        }
    }
}

/// One change to a contact, in the order they happened.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum ContactChange {
    Created(i64),
    /// Only logged when the stored data actually changed.
    Updated(i64),
    /// The contact as it was just before, in Spoki's JSON shape.
    Deleted(Value),
}

/// Which contacts `GET /contacts/` returns.
#[derive(Debug, Default)]
pub(super) struct ContactFilter {
    /// Lower-cased; every term must occur in one of the searched fields.
    pub search: Vec<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub language: Option<String>,
    pub status: Option<String>,
    pub is_blocked: Option<bool>,
    /// A (valid) `tag` filter was given. Tags cannot be put on contacts through the REST API,
    /// so no contact carries one and such a filter matches nothing.
    pub tagged: bool,
}

impl ContactFilter {
    fn matches(&self, c: &Contact) -> bool {
        let exact = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        !self.tagged
            && exact(&self.phone, &c.phone)
            && self
                .email
                .as_deref()
                .is_none_or(|w| c.email.as_deref() == Some(w))
            && exact(&self.first_name, &c.first_name)
            && exact(&self.last_name, &c.last_name)
            && exact(&self.language, &c.language)
            && exact(&self.status, &c.status)
            && self.is_blocked.is_none_or(|b| b == c.is_blocked)
            && self.search.iter().all(|term| {
                [
                    c.phone.as_str(),
                    c.email.as_deref().unwrap_or(""),
                    &c.first_name,
                    &c.last_name,
                    &c.language,
                    &c.notes,
                ]
                .iter()
                .any(|field| field.to_lowercase().contains(term.as_str()))
            })
    }
}

pub(super) fn iso(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

#[derive(Debug)]
pub(super) struct Store {
    /// Prefix of `chat_link`, e.g. `http://127.0.0.1:8080`.
    app_url: String,
    contacts: BTreeMap<i64, Contact>,
    by_phone: HashMap<String, i64>,
    lists: BTreeMap<i64, ContactList>,
    fields: BTreeMap<i64, CustomField>,
    next_contact_id: i64,
    next_list_id: i64,
    next_field_id: i64,
    next_field_value_id: i64,
    /// Changes not taken yet by [`Store::take_changes`].
    changes: Vec<ContactChange>,
}

impl Store {
    pub(super) fn new(app_url: String) -> Self {
        Self {
            app_url,
            contacts: BTreeMap::new(),
            by_phone: HashMap::new(),
            lists: BTreeMap::new(),
            fields: BTreeMap::new(),
            next_contact_id: 1,
            next_list_id: 1,
            next_field_id: 1,
            next_field_value_id: 1,
            changes: Vec::new(),
        }
    }

    /// The contact changes logged since the last call, oldest first.
    pub(super) fn take_changes(&mut self) -> Vec<ContactChange> {
        std::mem::take(&mut self.changes)
    }

    // ---- contacts ------------------------------------------------------------------------

    pub(super) fn contact_count(&self) -> usize {
        self.contacts.len()
    }

    pub(super) fn contact(&self, id: i64) -> Option<&Contact> {
        self.contacts.get(&id)
    }

    pub(super) fn contact_by_phone(&self, phone: &str) -> Option<&Contact> {
        self.by_phone
            .get(phone)
            .and_then(|id| self.contacts.get(id))
    }

    /// Every contact matching `filter`, oldest first.
    pub(super) fn find_contacts(&self, filter: &ContactFilter) -> Vec<&Contact> {
        self.contacts
            .values()
            .filter(|c| filter.matches(c))
            .collect()
    }

    pub(super) fn all_contacts_json(&self) -> Vec<Value> {
        self.contacts
            .values()
            .map(|c| self.contact_json(c))
            .collect()
    }

    /// Validates a contact write against the rules and the stored data. `target` is the contact
    /// a `PATCH` changes (its phone may not collide with another contact's).
    pub(super) fn validate_contact(
        &self,
        body: &Value,
        rule: PhoneRule,
        unknown: UnknownCustomField,
        target: Option<i64>,
    ) -> Result<ContactInput, Value> {
        let (input, mut errors) = validate::contact_input(body, rule)?;
        if let (Some(target), Some(phone)) = (target, &input.phone) {
            if self.by_phone.get(phone).is_some_and(|&id| id != target) {
                validate::add_error(
                    &mut errors,
                    "phone",
                    "contact with this phone already exists.",
                );
            }
        }
        let mut nested = FieldErrors::new();
        for (code, _) in &input.custom_fields {
            if self.field_by_code(code).is_some() {
                continue;
            }
            match unknown {
                UnknownCustomField::Ignore => {}
                UnknownCustomField::Reject => validate::add_error(
                    &mut nested,
                    code,
                    format!("No custom field with code \"{code}\"."),
                ),
                UnknownCustomField::Create => {
                    if !validate::is_valid_code(code) || validate::is_reserved_code(code) {
                        validate::add_error(&mut nested, code, "Enter a valid custom field code.");
                    }
                }
            }
        }
        if !nested.is_empty() {
            // A `custom_fields` error that is not per code (wrong type) already says it all.
            if let Value::Object(existing) = errors
                .entry("custom_fields")
                .or_insert_with(|| Value::Object(FieldErrors::new()))
            {
                existing.extend(nested);
            }
        }
        if errors.is_empty() {
            Ok(input)
        } else {
            Err(Value::Object(errors))
        }
    }

    /// Creates or updates the contact with `input.phone` (which must be set).
    pub(super) fn upsert(
        &mut self,
        input: &ContactInput,
        unknown: UnknownCustomField,
        now: DateTime<Utc>,
    ) -> Upserted {
        let phone = input.phone.clone().unwrap_or_default();
        let outcome = match self.by_phone.get(&phone) {
            Some(&id) => Upserted::Updated(id),
            None => {
                let id = self.next_contact_id;
                self.next_contact_id += 1;
                self.by_phone.insert(phone.clone(), id);
                self.contacts.insert(
                    id,
                    Contact {
                        id,
                        phone,
                        first_name: String::new(),
                        last_name: String::new(),
                        email: None,
                        language: String::new(),
                        status: validate::CONTACT_STATUSES[0].to_owned(),
                        is_blocked: false,
                        notes: String::new(),
                        created: now,
                        updated: now,
                        fields: BTreeMap::new(),
                    },
                );
                Upserted::Created(id)
            }
        };
        let changed = self.write(outcome.id(), input, unknown, now);
        match outcome {
            Upserted::Created(id) => self.changes.push(ContactChange::Created(id)),
            Upserted::Updated(id) if changed => self.changes.push(ContactChange::Updated(id)),
            Upserted::Updated(_) => {}
        }
        outcome
    }

    /// Writes the fields present in `input` to contact `id` (which must exist).
    pub(super) fn apply(
        &mut self,
        id: i64,
        input: &ContactInput,
        unknown: UnknownCustomField,
        now: DateTime<Utc>,
    ) {
        if self.write(id, input, unknown, now) {
            self.changes.push(ContactChange::Updated(id));
        }
    }

    /// [`Store::apply`] without the log; says whether the stored data changed. `updated`
    /// moves only when it did.
    fn write(
        &mut self,
        id: i64,
        input: &ContactInput,
        unknown: UnknownCustomField,
        now: DateTime<Utc>,
    ) -> bool {
        let mut values = Vec::with_capacity(input.custom_fields.len());
        for (code, value) in &input.custom_fields {
            let field = match (self.field_by_code(code), unknown) {
                (Some(field), _) => field.id,
                (None, UnknownCustomField::Create) => {
                    self.create_custom_field(CustomFieldInput {
                        label: code.clone(),
                        code: code.clone(),
                        field_type: 1,
                        example: String::new(),
                    })
                    .id
                }
                (None, _) => continue,
            };
            values.push((field, value.clone()));
        }
        let Some(contact) = self.contacts.get_mut(&id) else {
            return false;
        };
        let before = contact.clone();
        if let Some(phone) = &input.phone {
            if *phone != contact.phone {
                self.by_phone.remove(&contact.phone);
                self.by_phone.insert(phone.clone(), id);
                contact.phone.clone_from(phone);
            }
        }
        let set = |target: &mut String, value: &Option<String>| {
            if let Some(value) = value {
                target.clone_from(value);
            }
        };
        set(&mut contact.first_name, &input.first_name);
        set(&mut contact.last_name, &input.last_name);
        set(&mut contact.language, &input.language);
        set(&mut contact.status, &input.status);
        set(&mut contact.notes, &input.notes);
        if let Some(email) = &input.email {
            contact.email.clone_from(email);
        }
        if let Some(blocked) = input.is_blocked {
            contact.is_blocked = blocked;
        }
        for (field, value) in values {
            match contact.fields.get_mut(&field) {
                Some(existing) => existing.value = value,
                None => {
                    contact.fields.insert(
                        field,
                        FieldValue {
                            id: self.next_field_value_id,
                            value,
                        },
                    );
                    self.next_field_value_id += 1;
                }
            }
        }
        let changed = *contact != before;
        if changed {
            contact.updated = now;
        }
        changed
    }

    pub(super) fn delete_contact(&mut self, id: i64) -> bool {
        let Some(snapshot) = self.contact(id).map(|c| self.contact_json(c)) else {
            return false;
        };
        let Some(contact) = self.contacts.remove(&id) else {
            return false;
        };
        self.changes.push(ContactChange::Deleted(snapshot));
        self.by_phone.remove(&contact.phone);
        for list in self.lists.values_mut() {
            list.members.remove(&id);
        }
        true
    }

    pub(super) fn contact_json(&self, c: &Contact) -> Value {
        let fields: Vec<Value> = c
            .fields
            .iter()
            .map(|(field, value)| {
                let code = self.fields.get(field).map_or("", |f| f.code.as_str());
                json!({
                    "id": value.id,
                    "field": field,
                    "value": value.value,
                    "value_datetime": null,
                    "visual_code": format!("%%{code}%%"),
                })
            })
            .collect();
        let lists: Vec<Value> = self
            .lists
            .values()
            .filter(|list| list.members.contains(&c.id))
            .map(ContactList::to_json)
            .collect();
        json!({
            "id": c.id,
            "phone": c.phone,
            "first_name": c.first_name,
            "last_name": c.last_name,
            "email": c.email,
            "language": c.language,
            "status": c.status,
            "is_blocked": c.is_blocked,
            "notes": c.notes,
            "chat_link": format!("{}/chat/{}/", self.app_url, c.id),
            "has_invalid_phone": false,
            "created_datetime": iso(c.created),
            "updated_datetime": iso(c.updated),
            "contactfield_set": fields,
            "list_set": lists,
            "tag_set": [],
        })
    }

    // ---- lists ---------------------------------------------------------------------------

    pub(super) fn create_list(
        &mut self,
        name: &str,
        color: Option<String>,
        now: DateTime<Utc>,
    ) -> &ContactList {
        let id = self.next_list_id;
        self.next_list_id += 1;
        self.lists.entry(id).or_insert(ContactList {
            id,
            name: name.to_owned(),
            color,
            created: now,
            members: BTreeSet::new(),
        })
    }

    pub(super) fn list(&self, id: i64) -> Option<&ContactList> {
        self.lists.get(&id)
    }

    pub(super) fn lists(&self) -> impl Iterator<Item = &ContactList> {
        self.lists.values()
    }

    pub(super) fn delete_list(&mut self, id: i64) -> bool {
        self.lists.remove(&id).is_some()
    }

    /// Adds contacts to a list; returns how many were not members yet.
    pub(super) fn add_members(
        &mut self,
        list_id: i64,
        contacts: impl IntoIterator<Item = i64>,
    ) -> usize {
        self.lists.get_mut(&list_id).map_or(0, |list| {
            contacts
                .into_iter()
                .filter(|&id| list.members.insert(id))
                .count()
        })
    }

    /// Removes from a list the members with any of the given ids, phones or e-mails.
    pub(super) fn remove_members(
        &mut self,
        list_id: i64,
        ids: &[i64],
        phones: &[String],
        emails: &[String],
    ) {
        let Some(list) = self.lists.get_mut(&list_id) else {
            return;
        };
        let contacts = &self.contacts;
        list.members.retain(|id| {
            let Some(c) = contacts.get(id) else {
                return false;
            };
            !(ids.contains(&c.id)
                || phones.contains(&c.phone)
                || c.email.as_ref().is_some_and(|e| emails.contains(e)))
        });
    }

    pub(super) fn clear_list(&mut self, list_id: i64) {
        if let Some(list) = self.lists.get_mut(&list_id) {
            list.members.clear();
        }
    }

    /// Phones of a list's members, in contact-id order; empty for an unknown list.
    pub(super) fn member_phones(&self, list_id: i64) -> Vec<String> {
        self.lists.get(&list_id).map_or_else(Vec::new, |list| {
            list.members
                .iter()
                .filter_map(|id| self.contacts.get(id))
                .map(|c| c.phone.clone())
                .collect()
        })
    }

    // ---- custom fields -------------------------------------------------------------------

    pub(super) fn field_by_code(&self, code: &str) -> Option<&CustomField> {
        self.fields.values().find(|f| f.code == code)
    }

    pub(super) fn custom_field(&self, id: i64) -> Option<&CustomField> {
        self.fields.get(&id)
    }

    pub(super) fn custom_fields(&self) -> impl Iterator<Item = &CustomField> {
        self.fields.values()
    }

    /// Checks a new custom field's code is free, then creates it.
    pub(super) fn try_create_custom_field(
        &mut self,
        input: CustomFieldInput,
    ) -> Result<&CustomField, Value> {
        if self.field_by_code(&input.code).is_some() {
            return Err(json!({"code": ["custom field with this code already exists."]}));
        }
        Ok(self.create_custom_field(input))
    }

    fn create_custom_field(&mut self, input: CustomFieldInput) -> &CustomField {
        let id = self.next_field_id;
        self.next_field_id += 1;
        self.fields.entry(id).or_insert(CustomField {
            id,
            label: input.label,
            code: input.code,
            field_type: input.field_type,
            example: input.example,
        })
    }

    pub(super) fn relabel_custom_field(&mut self, id: i64, label: String) {
        if let Some(field) = self.fields.get_mut(&id) {
            field.label = label;
        }
    }

    /// Deletes a custom field and every contact's value for it; the contacts that had one
    /// are updated.
    pub(super) fn delete_custom_field(&mut self, id: i64, now: DateTime<Utc>) -> bool {
        if self.fields.remove(&id).is_none() {
            return false;
        }
        for contact in self.contacts.values_mut() {
            if contact.fields.remove(&id).is_some() {
                contact.updated = now;
                self.changes.push(ContactChange::Updated(contact.id));
            }
        }
        true
    }
}

impl ContactList {
    pub(super) fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "name": self.name,
            "color": self.color,
            "contacts_count": self.members.len(),
            "created_datetime": iso(self.created),
        })
    }
}

impl CustomField {
    pub(super) fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "label": self.label,
            "code": self.code,
            "field_type": self.field_type,
            "example": self.example,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(body: Value) -> ContactInput {
        validate::contact_input(&body, PhoneRule::Required)
            .expect("an object")
            .0
    }

    #[test]
    fn upsert_changes_only_the_fields_given() {
        let mut store = Store::new("http://sim".to_owned());
        let now = Utc::now();
        store
            .try_create_custom_field(CustomFieldInput {
                label: "Order".to_owned(),
                code: "ORDER_ID".to_owned(),
                field_type: 1,
                example: String::new(),
            })
            .expect("a free code");
        let first = store.upsert(
            &input(json!({"phone": "+393331234567", "first_name": "Mario", "email": "m@x.it"})),
            UnknownCustomField::Ignore,
            now,
        );
        assert_eq!(first, Upserted::Created(1));
        let second = store.upsert(
            &input(
                json!({"phone": "+393331234567", "custom_fields": {"ORDER_ID": "7", "NOPE": "x"}}),
            ),
            UnknownCustomField::Ignore,
            now,
        );
        assert_eq!(second, Upserted::Updated(1));
        let c = store.contact_json(store.contact(1).expect("stored"));
        assert_eq!(c["first_name"], "Mario");
        assert_eq!(c["email"], "m@x.it");
        assert_eq!(
            c["contactfield_set"],
            json!([{"id": 1, "field": 1, "value": "7", "value_datetime": null, "visual_code": "%%ORDER_ID%%"}])
        );
        assert_eq!(store.custom_fields().count(), 1);
    }

    #[test]
    fn only_real_changes_are_logged_and_move_updated() {
        let mut store = Store::new("http://sim".to_owned());
        let t0 = Utc::now();
        let t1 = t0 + chrono::Duration::seconds(5);
        let body = json!({"phone": "+393331234567", "first_name": "Mario"});
        let id = store
            .upsert(&input(body.clone()), UnknownCustomField::Ignore, t0)
            .id();
        store.upsert(&input(body), UnknownCustomField::Ignore, t1);
        store.apply(
            id,
            &input(json!({"phone": "+393331234567"})),
            UnknownCustomField::Ignore,
            t1,
        );
        assert_eq!(store.take_changes(), vec![ContactChange::Created(id)]);
        assert_eq!(store.contact(id).map(|c| c.updated), Some(t0));
        let list = store.create_list("L", None, t1).id;
        store.add_members(list, [id]);
        assert_eq!(
            store.take_changes(),
            vec![],
            "membership is no contact data"
        );

        store.upsert(
            &input(json!({"phone": "+393331234567", "custom_fields": {"NEW": "1"}})),
            UnknownCustomField::Create,
            t1,
        );
        assert_eq!(store.contact(id).map(|c| c.updated), Some(t1));
        let field = store.field_by_code("NEW").map(|f| f.id).expect("created");
        assert!(store.delete_custom_field(field, t1));
        let snapshot = store
            .contact(id)
            .map(|c| store.contact_json(c))
            .expect("stored");
        assert!(store.delete_contact(id));
        assert!(!store.delete_contact(id));
        assert_eq!(
            store.take_changes(),
            vec![
                ContactChange::Updated(id),
                ContactChange::Updated(id),
                ContactChange::Deleted(snapshot),
            ]
        );
        assert_eq!(store.take_changes(), vec![]);
    }

    #[test]
    fn list_membership_survives_nothing_but_the_contact() {
        let mut store = Store::new("http://sim".to_owned());
        let now = Utc::now();
        let list = store.create_list("L", None, now).id;
        let a = store
            .upsert(
                &input(json!({"phone": "+393331111111", "email": "a@x.it"})),
                UnknownCustomField::Ignore,
                now,
            )
            .id();
        let b = store
            .upsert(
                &input(json!({"phone": "+393332222222"})),
                UnknownCustomField::Ignore,
                now,
            )
            .id();
        assert_eq!(store.add_members(list, [a, b, a]), 2);
        assert_eq!(store.add_members(list, [a]), 0);
        store.remove_members(list, &[], &[], &["a@x.it".to_owned()]);
        assert_eq!(store.member_phones(list), vec!["+393332222222"]);
        assert!(store.delete_contact(b));
        assert_eq!(
            store
                .list(list)
                .map(|l| l.to_json()["contacts_count"].clone()),
            Some(json!(0))
        );
        assert!(store.delete_list(list));
        assert_eq!(store.contact_count(), 1);
    }
}
