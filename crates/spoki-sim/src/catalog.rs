//! The account-level world beside contacts, lists and custom fields: the account, agencies,
//! roles and invitations, tags, templates, media, tickets, automations with their API triggers,
//! campaigns, automation runs and cached reports, and the fixed world a simulator starts
//! with ([`Fixtures`]).
//!
//! Objects whose JSON needs contacts or lists (tickets, campaigns) are rendered by their
//! handlers, which see both stores.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::time::Duration;

use chrono::{DateTime, TimeZone as _, Utc};
use rand::Rng as _;
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::Fixtures;
use super::state::iso;
use super::validate;

/// Role names Spoki accepts.
pub(super) const ROLE_NAMES: [&str; 3] =
    ["Administrator", "Chat Operator", "Chat Operator Manager"];
pub(super) const ADMINISTRATOR: &str = "Administrator";
pub(super) const TEMPLATE_CATEGORIES: [&str; 3] = ["UTILITY", "MARKETING", "AUTHENTICATION"];
pub(super) const TICKET_STATUSES: [&str; 4] = ["Open", "In Progress", "Pending", "Closed"];
/// Highest first: a ticket's rank for `sort_by=priority` is its index here.
pub(super) const TICKET_PRIORITIES: [&str; 4] = ["Highest", "High", "Medium", "Low"];
pub(super) const CAMPAIGN_STATUSES: [&str; 4] = ["Draft", "Scheduled", "Processing", "Completed"];
pub(super) const REPORT_GRANULARITIES: [&str; 3] = ["Day", "Month", "Year"];
/// Values of the `webhook_platform` filter of `GET /automations/`.
pub(super) const WEBHOOK_PLATFORMS: [&str; 19] = [
    "Api",
    "Active Campaign",
    "Woocommerce",
    "Magento",
    "Prestashop",
    "Shopify",
    "Zapier",
    "Qapla'",
    "BrainLead",
    "HubSpot",
    "Klaviyo",
    "Zoho",
    "Sendinblue",
    "WPNotif",
    "Connectif",
    "IFTTT",
    "Pipedrive",
    "Meta",
    "Zendesk",
];
/// The platform of automations started by the `/wh/ap/` API trigger.
pub(super) const API_PLATFORM: &str = "Api";

/// Rows keyed by monotonic integer ids.
#[derive(Debug)]
pub(super) struct Table<T> {
    rows: BTreeMap<i64, T>,
    next_id: i64,
}

impl<T> Table<T> {
    fn new() -> Self {
        Self {
            rows: BTreeMap::new(),
            next_id: 1,
        }
    }

    /// Stores the row `make` builds from its new id; returns the id.
    pub(super) fn insert(&mut self, make: impl FnOnce(i64) -> T) -> i64 {
        let id = self.next_id;
        self.next_id += 1;
        self.rows.insert(id, make(id));
        id
    }

    pub(super) fn get(&self, id: i64) -> Option<&T> {
        self.rows.get(&id)
    }

    pub(super) fn get_mut(&mut self, id: i64) -> Option<&mut T> {
        self.rows.get_mut(&id)
    }

    pub(super) fn remove(&mut self, id: i64) -> Option<T> {
        self.rows.remove(&id)
    }

    /// Every row, oldest first.
    pub(super) fn values(&self) -> impl Iterator<Item = &T> {
        self.rows.values()
    }

    fn values_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.rows.values_mut()
    }
}

/// `n` random bytes as lowercase hex.
pub(super) fn random_hex(n: usize) -> String {
    let mut bytes = vec![0_u8; n];
    rand::rng().fill(bytes.as_mut_slice());
    hex(&bytes)
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        // Writing to a String cannot fail.
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// A random (version 4) UUID in its 36-character form.
pub(super) fn uuid4() -> String {
    let mut bytes = [0_u8; 16];
    rand::rng().fill(&mut bytes);
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let h = hex(&bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

// ---- objects ---------------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub(super) struct Account {
    pub id: i64,
    name: String,
    phone: String,
}

#[derive(Clone, Debug)]
pub(super) struct Role {
    pub id: i64,
    uid: String,
    pub name: String,
    pub email: Option<String>,
    pub first_name: String,
    pub last_name: String,
    pub role: String,
    pub is_service_user: bool,
    pub private_key: Option<String>,
}

#[derive(Clone, Debug)]
pub(super) struct Invitation {
    pub id: i64,
    email: String,
    pub role: String,
    first_name: String,
    last_name: String,
    created: DateTime<Utc>,
    pub sends: u32,
}

#[derive(Clone, Debug)]
pub(super) struct Tag {
    pub id: i64,
    pub name: String,
    color: String,
    order: i64,
}

/// A template's WhatsApp review state (shown on each localization).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum TemplateStatus {
    Draft,
    Pending,
    Approved,
    Rejected,
}

impl TemplateStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "DRAFT",
            Self::Pending => "PENDING",
            Self::Approved => "APPROVED",
            Self::Rejected => "REJECTED",
        }
    }
}

#[derive(Clone, Debug)]
pub(super) struct Template {
    pub id: i64,
    pub name: String,
    category: String,
    subcategory: Option<String>,
    is_favorite: bool,
    template_groups: Value,
    example_custom_fields: Map<String, Value>,
    localizations: Vec<Localization>,
    pub status: TemplateStatus,
    /// When a submitted template turns APPROVED by itself, if it does.
    approve_at: Option<Instant>,
    created: DateTime<Utc>,
    updated: DateTime<Utc>,
}

/// One language of a template: what the client sent, minus the read-only keys.
#[derive(Clone, Debug)]
struct Localization {
    id: i64,
    fields: Map<String, Value>,
}

/// A template write; `None` means "absent, leave as is".
#[derive(Clone, Debug, Default)]
pub(super) struct TemplateInput {
    pub name: Option<String>,
    pub category: Option<String>,
    pub subcategory: Option<Option<String>>,
    pub is_favorite: Option<bool>,
    pub template_groups: Option<Value>,
    pub example_custom_fields: Option<Map<String, Value>>,
    pub localizations: Option<Vec<Map<String, Value>>>,
}

#[derive(Clone, Debug)]
pub(super) struct Media {
    pub id: i64,
    pub title: String,
    external_url: String,
    format_type: Option<String>,
    content_type: Option<String>,
    created: DateTime<Utc>,
}

#[derive(Clone, Debug)]
pub(super) struct Ticket {
    pub id: i64,
    pub title: String,
    pub description: String,
    pub status: String,
    pub priority: String,
    pub reference: Option<String>,
    pub contact_id: i64,
    pub owner: i64,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
    pub closed: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug)]
pub(super) struct Trigger {
    pub uuid: String,
    pub secret: String,
    pub is_active: bool,
}

#[derive(Clone, Debug)]
pub(super) struct Automation {
    pub id: i64,
    pub name: String,
    pub is_active: bool,
    is_favorite: bool,
    pub platform: Option<&'static str>,
    pub triggers: Vec<Trigger>,
    uses_fields: BTreeSet<i64>,
    uses_templates: BTreeSet<i64>,
    created: DateTime<Utc>,
    updated: DateTime<Utc>,
}

#[derive(Clone, Debug)]
pub(super) struct Campaign {
    pub id: i64,
    pub name: String,
    pub status: String,
    pub scheduled: Option<DateTime<Utc>>,
    pub automation: Option<i64>,
    pub lists: Vec<i64>,
    pub template: Option<i64>,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
}

/// A report kept for the cache period.
#[derive(Debug)]
struct Cached {
    at: Instant,
    value: Value,
}

/// The key of a `GET /reports/` cache entry: granularity, start date, end date.
pub(super) type ReportKey = (String, String, String);

// ---- the catalog -----------------------------------------------------------------------------

#[derive(Debug)]
pub(super) struct Catalog {
    pub account: Account,
    /// `(agency id, account id)` pairs of `GET /agencies/`.
    agencies: Vec<(i64, i64)>,
    pub roles: Table<Role>,
    pub invitations: Table<Invitation>,
    pub tags: Table<Tag>,
    pub templates: Table<Template>,
    next_localization_id: i64,
    pub media: Table<Media>,
    pub tickets: Table<Ticket>,
    pub automations: Table<Automation>,
    pub campaigns: Table<Campaign>,
    /// Every automation start: trigger uuid and the body minus `secret`.
    pub runs: Vec<(String, Value)>,
    current_reports: HashMap<i64, Cached>,
    reports: HashMap<ReportKey, Cached>,
    fixtures: Fixtures,
}

impl Catalog {
    /// The fixed starting world of an account `account_id`.
    pub(super) fn new(account_id: i64, now: DateTime<Utc>) -> Self {
        let mut catalog = Self {
            account: Account {
                id: account_id,
                name: "Sim Srl".to_owned(),
                phone: "+390212345678".to_owned(),
            },
            agencies: vec![(1, account_id)],
            roles: Table::new(),
            invitations: Table::new(),
            tags: Table::new(),
            templates: Table::new(),
            next_localization_id: 1,
            media: Table::new(),
            tickets: Table::new(),
            automations: Table::new(),
            campaigns: Table::new(),
            runs: Vec::new(),
            current_reports: HashMap::new(),
            reports: HashMap::new(),
            fixtures: Fixtures {
                account_id,
                admin_role_id: 0,
                tag_id: 0,
                template_id: 0,
                media_id: 0,
                automation_id: 0,
                automation_uuid: String::new(),
                automation_secret: String::new(),
                campaign_id: 0,
                invitation_id: 0,
            },
        };
        catalog.seed(now);
        catalog
    }

    fn seed(&mut self, now: DateTime<Utc>) {
        let admin_role_id = self.roles.insert(|id| Role {
            id,
            uid: uuid4(),
            name: "Sim Owner".to_owned(),
            email: Some("owner@example.com".to_owned()),
            first_name: "Sim".to_owned(),
            last_name: "Owner".to_owned(),
            role: ADMINISTRATOR.to_owned(),
            is_service_user: false,
            private_key: None,
        });
        let tag_id = self.tags.insert(|id| Tag {
            id,
            name: "VIP".to_owned(),
            color: "#16d46d".to_owned(),
            order: 1,
        });
        let mut localization = Map::new();
        localization.insert("language".to_owned(), json!("it"));
        localization.insert(
            "body_template_component".to_owned(),
            json!({"component_type": "BODY", "format": "TEXT",
                   "text": "Ciao %%FIRST_NAME%%, benvenuto!", "parameters": []}),
        );
        let template_id = self.create_template(
            TemplateInput {
                name: Some("welcome_message".to_owned()),
                category: Some("UTILITY".to_owned()),
                subcategory: Some(Some("CLASSIC".to_owned())),
                localizations: Some(vec![localization]),
                ..TemplateInput::default()
            },
            now,
        );
        if let Some(template) = self.templates.get_mut(template_id) {
            template.status = TemplateStatus::Approved;
        }
        let media_id = self.create_media(
            "Logo".to_owned(),
            "https://example.com/logo.png".to_owned(),
            Some("image".to_owned()),
            Some("image/png".to_owned()),
            now,
        );
        let (automation_id, automation_uuid, automation_secret) =
            self.seed_automation("Welcome", true, now);
        let campaign_id = self.campaigns.insert(|id| Campaign {
            id,
            name: "Spring promo".to_owned(),
            status: CAMPAIGN_STATUSES[0].to_owned(),
            scheduled: Utc.with_ymd_and_hms(2030, 1, 1, 9, 0, 0).single(),
            automation: None,
            lists: Vec::new(),
            template: Some(template_id),
            created: now,
            updated: now,
        });
        let invitation_id = self.invitations.insert(|id| Invitation {
            id,
            email: "invited@example.com".to_owned(),
            role: "Chat Operator".to_owned(),
            first_name: "Ivo".to_owned(),
            last_name: "Invitato".to_owned(),
            created: now,
            sends: 0,
        });
        self.fixtures = Fixtures {
            account_id: self.account.id,
            admin_role_id,
            tag_id,
            template_id,
            media_id,
            automation_id,
            automation_uuid,
            automation_secret,
            campaign_id,
            invitation_id,
        };
    }

    pub(super) fn fixtures(&self) -> Fixtures {
        self.fixtures.clone()
    }

    /// Applies what time alone changes: submitted templates due for approval get approved.
    pub(super) fn advance(&mut self, now: Instant) {
        for template in self.templates.values_mut() {
            if template.approve_at.is_some_and(|at| at <= now) {
                template.approve_at = None;
                if template.status == TemplateStatus::Pending {
                    template.status = TemplateStatus::Approved;
                }
            }
        }
    }

    // ---- account, agencies, reports ----------------------------------------------------------

    pub(super) fn account_json(&self) -> Value {
        let a = &self.account;
        let channels = json!([
            {"id": 1, "name": "WhatsApp", "phone": a.phone, "platform": 1,
             "is_primary": true, "status": "CONNECTED"},
            {"id": 2, "name": "WhatsApp assistenza", "phone": "+390212345679", "platform": 1,
             "is_primary": false, "status": "CONNECTED"},
        ]);
        json!({
            "id": a.id,
            "name": a.name,
            "current_credit": 50_000,
            "status": "active",
            "default_language": "it",
            "phone": a.phone,
            "has_official_verification": false,
            "daily_limit": 1000,
            "phone_status": "CONNECTED",
            "quality_score": "GREEN",
            "quality_reasons": [],
            "is_active": true,
            "country_code": "IT",
            "estimated_available_conversations": 1000,
            "account_type": 2,
            "default_pricing_delta": 0,
            "low_credit_threshold": 5000,
            "has_low_credit_alert": false,
            "default_prefix": "+39",
            "default_country_code": "IT",
            "timezone": "Europe/Rome",
            "contacted_in_24h": 0,
            "contacted_in_7d": 0,
            "primary_channel_id": 1,
            "channels": channels,
        })
    }

    pub(super) fn agencies_json(&self) -> Value {
        Value::Array(
            self.agencies
                .iter()
                .map(|(id, account)| json!({"id": id, "account": account}))
                .collect(),
        )
    }

    /// The account's current report: the cached one while younger than `ttl`, else `build()`.
    pub(super) fn current_report(
        &mut self,
        account: i64,
        now: Instant,
        ttl: Duration,
        build: impl FnOnce() -> Value,
    ) -> Value {
        cached(
            self.current_reports.entry(account).or_insert_with(stale),
            now,
            ttl,
            build,
        )
    }

    /// The `GET /reports/` answer for `key`, cached like [`Catalog::current_report`].
    pub(super) fn report(
        &mut self,
        key: ReportKey,
        now: Instant,
        ttl: Duration,
        build: impl FnOnce() -> Value,
    ) -> Value {
        cached(
            self.reports.entry(key).or_insert_with(stale),
            now,
            ttl,
            build,
        )
    }

    // ---- roles and invitations ---------------------------------------------------------------

    pub(super) fn administrators(&self) -> usize {
        self.roles
            .values()
            .filter(|role| role.role == ADMINISTRATOR)
            .count()
    }

    pub(super) fn add_service_user(&mut self, name: String, role: String) -> i64 {
        self.roles.insert(|id| Role {
            id,
            uid: uuid4(),
            name,
            email: None,
            first_name: String::new(),
            last_name: String::new(),
            role,
            is_service_user: true,
            private_key: None,
        })
    }

    // ---- templates ---------------------------------------------------------------------------

    /// Creates a DRAFT template; `input.name` and `input.category` must be set.
    pub(super) fn create_template(&mut self, input: TemplateInput, now: DateTime<Utc>) -> i64 {
        let id = self.templates.insert(|id| Template {
            id,
            name: String::new(),
            category: String::new(),
            subcategory: None,
            is_favorite: false,
            template_groups: json!([]),
            example_custom_fields: Map::new(),
            localizations: Vec::new(),
            status: TemplateStatus::Draft,
            approve_at: None,
            created: now,
            updated: now,
        });
        self.update_template(id, input, now);
        id
    }

    /// Writes the fields present in `input`; a new localization set replaces the old one,
    /// keeping the ids its items name.
    pub(super) fn update_template(&mut self, id: i64, input: TemplateInput, now: DateTime<Utc>) {
        let mut next_localization_id = self.next_localization_id;
        let Some(t) = self.templates.get_mut(id) else {
            return;
        };
        if let Some(name) = input.name {
            t.name = name;
        }
        if let Some(category) = input.category {
            t.category = category;
        }
        if let Some(subcategory) = input.subcategory {
            t.subcategory = subcategory;
        }
        if let Some(favorite) = input.is_favorite {
            t.is_favorite = favorite;
        }
        if let Some(groups) = input.template_groups {
            t.template_groups = groups;
        }
        if let Some(examples) = input.example_custom_fields {
            t.example_custom_fields = examples;
        }
        if let Some(items) = input.localizations {
            let old: BTreeSet<i64> = t.localizations.iter().map(|l| l.id).collect();
            t.localizations = items
                .into_iter()
                .map(|mut fields| {
                    let kept = fields
                        .remove("id")
                        .as_ref()
                        .and_then(validate::as_int)
                        .filter(|id| old.contains(id));
                    fields.remove("status");
                    fields.remove("rejection_reason");
                    let id = kept.unwrap_or_else(|| {
                        next_localization_id += 1;
                        next_localization_id - 1
                    });
                    Localization { id, fields }
                })
                .collect();
        }
        t.updated = now;
        self.next_localization_id = next_localization_id;
    }

    /// A DRAFT copy of template `id` named `<name>_copy`; `None` for an unknown template.
    pub(super) fn clone_template(&mut self, id: i64, now: DateTime<Utc>) -> Option<i64> {
        let source = self.templates.get(id)?.clone();
        let input = TemplateInput {
            name: Some(format!("{}_copy", source.name)),
            category: Some(source.category),
            subcategory: Some(source.subcategory),
            is_favorite: Some(source.is_favorite),
            template_groups: Some(source.template_groups),
            example_custom_fields: Some(source.example_custom_fields),
            localizations: Some(source.localizations.into_iter().map(|l| l.fields).collect()),
        };
        Some(self.create_template(input, now))
    }

    /// Moves a template to `status`; a PENDING one is approved at `approve_at` if given.
    pub(super) fn set_template_status(
        &mut self,
        id: i64,
        status: TemplateStatus,
        approve_at: Option<Instant>,
        now: DateTime<Utc>,
    ) {
        if let Some(t) = self.templates.get_mut(id) {
            t.status = status;
            t.approve_at = approve_at.filter(|_| status == TemplateStatus::Pending);
            t.updated = now;
        }
    }

    /// WhatsApp's verdict on a PENDING template; false when it is not PENDING.
    pub(super) fn review_template(&mut self, id: i64, approve: bool, now: DateTime<Utc>) -> bool {
        let pending = self
            .templates
            .get(id)
            .is_some_and(|t| t.status == TemplateStatus::Pending);
        if pending {
            let status = if approve {
                TemplateStatus::Approved
            } else {
                TemplateStatus::Rejected
            };
            self.set_template_status(id, status, None, now);
        }
        pending
    }

    pub(super) fn template_has_localizations(&self, id: i64) -> bool {
        self.templates
            .get(id)
            .is_some_and(|t| !t.localizations.is_empty())
    }

    pub(super) fn template_in_use(&self, id: i64) -> bool {
        self.automations
            .values()
            .any(|a| a.uses_templates.contains(&id))
    }

    /// Deletes a template and every automation's reference to it.
    pub(super) fn delete_template(&mut self, id: i64) -> bool {
        if self.templates.remove(id).is_none() {
            return false;
        }
        for automation in self.automations.values_mut() {
            automation.uses_templates.remove(&id);
        }
        true
    }

    // ---- media -------------------------------------------------------------------------------

    pub(super) fn create_media(
        &mut self,
        title: String,
        external_url: String,
        format_type: Option<String>,
        content_type: Option<String>,
        now: DateTime<Utc>,
    ) -> i64 {
        self.media.insert(|id| Media {
            id,
            title,
            external_url,
            format_type,
            content_type,
            created: now,
        })
    }

    // ---- automations -------------------------------------------------------------------------

    /// Adds an automation started by one API trigger; returns its id, the trigger's uuid and
    /// the trigger's secret.
    pub(super) fn seed_automation(
        &mut self,
        name: &str,
        active: bool,
        now: DateTime<Utc>,
    ) -> (i64, String, String) {
        let trigger = Trigger {
            uuid: uuid4(),
            secret: random_hex(16),
            is_active: true,
        };
        let (uuid, secret) = (trigger.uuid.clone(), trigger.secret.clone());
        let id = self.automations.insert(|id| Automation {
            id,
            name: name.to_owned(),
            is_active: active,
            is_favorite: false,
            platform: Some(API_PLATFORM),
            triggers: vec![trigger],
            uses_fields: BTreeSet::new(),
            uses_templates: BTreeSet::new(),
            created: now,
            updated: now,
        });
        (id, uuid, secret)
    }

    /// Replaces automation `id`'s API triggers with a new one (new uuid and secret), as
    /// re-creating the trigger in Spoki's UI does; `None` for an unknown automation.
    pub(super) fn replace_trigger(&mut self, id: i64) -> Option<(String, String)> {
        let automation = self.automations.get_mut(id)?;
        let trigger = Trigger {
            uuid: uuid4(),
            secret: random_hex(16),
            is_active: true,
        };
        let pair = (trigger.uuid.clone(), trigger.secret.clone());
        automation.triggers = vec![trigger];
        Some(pair)
    }

    /// Records that automation `id` uses custom field `field`; false for an unknown automation.
    pub(super) fn use_custom_field(&mut self, id: i64, field: i64) -> bool {
        match self.automations.get_mut(id) {
            Some(a) => {
                a.uses_fields.insert(field);
                true
            }
            None => false,
        }
    }

    /// Records that automation `id` uses template `template`; false for an unknown automation.
    pub(super) fn use_template(&mut self, id: i64, template: i64) -> bool {
        match self.automations.get_mut(id) {
            Some(a) => {
                a.uses_templates.insert(template);
                true
            }
            None => false,
        }
    }

    pub(super) fn custom_field_in_use(&self, field: i64) -> bool {
        self.automations
            .values()
            .any(|a| a.uses_fields.contains(&field))
    }

    /// The automation whose API trigger has this uuid, and that trigger.
    pub(super) fn trigger(&self, uuid: &str) -> Option<(&Automation, &Trigger)> {
        self.automations.values().find_map(|automation| {
            automation
                .triggers
                .iter()
                .find(|trigger| trigger.uuid == uuid)
                .map(|trigger| (automation, trigger))
        })
    }
}

fn stale() -> Cached {
    Cached {
        at: Instant::now(),
        value: Value::Null,
    }
}

/// The cached value while younger than `ttl`, else a fresh `build()` cached from `now`.
fn cached(entry: &mut Cached, now: Instant, ttl: Duration, build: impl FnOnce() -> Value) -> Value {
    if entry.value.is_null() || now.saturating_duration_since(entry.at) >= ttl {
        *entry = Cached {
            at: now,
            value: build(),
        };
    }
    entry.value.clone()
}

// ---- JSON shapes ----------------------------------------------------------

impl Role {
    pub(super) fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "name": self.name,
            "email": self.email,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "role": self.role,
            "is_service_user": self.is_service_user,
        })
    }

    /// The `owner` object embedded in tickets.
    pub(super) fn owner_json(&self) -> Value {
        json!({
            "id": self.id,
            "uid": self.uid,
            "email": self.email,
            "firstname": self.first_name,
            "surname": self.last_name,
            "image": null,
            "is_service": self.is_service_user,
        })
    }

    /// Searched by `GET /roles/?search=`.
    pub(super) fn search_fields(&self) -> [String; 5] {
        [
            self.id.to_string(),
            self.name.clone(),
            self.email.clone().unwrap_or_default(),
            self.first_name.clone(),
            self.last_name.clone(),
        ]
    }
}

impl Invitation {
    pub(super) fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "email": self.email,
            "role": self.role,
            "status": "Pending",
            "additional_info": {"first_name": self.first_name, "last_name": self.last_name},
            "created_datetime": iso(self.created),
        })
    }
}

impl Tag {
    pub(super) fn to_json(&self) -> Value {
        json!({"id": self.id, "name": self.name, "color": self.color, "order": self.order})
    }
}

impl Template {
    pub(super) fn to_json(&self) -> Value {
        let status = self.status.as_str();
        let localizations: Vec<Value> = self
            .localizations
            .iter()
            .map(|l| {
                let mut out = Map::new();
                out.insert("id".to_owned(), json!(l.id));
                for key in [
                    "language",
                    "header_template_component",
                    "body_template_component",
                    "footer_template_component",
                    "default_header_media",
                ] {
                    out.insert(key.to_owned(), Value::Null);
                }
                out.insert("templatebuttoncomponent_set".to_owned(), json!([]));
                out.insert("example_custom_fields".to_owned(), json!({}));
                out.extend(l.fields.clone());
                out.insert("status".to_owned(), json!(status));
                let reason = (self.status == TemplateStatus::Rejected)
                    .then_some("Rejected in the simulator's review.");
                out.insert("rejection_reason".to_owned(), json!(reason));
                Value::Object(out)
            })
            .collect();
        json!({
            "id": self.id,
            "name": self.name,
            "category": self.category,
            "subcategory": self.subcategory,
            "is_approved": self.status == TemplateStatus::Approved,
            "is_favorite": self.is_favorite,
            "template_groups": self.template_groups,
            "example_custom_fields": self.example_custom_fields,
            "customfield_set": self.placeholder_codes(),
            "templatelocalization_set": localizations,
            "created_datetime": iso(self.created),
            "updated_datetime": iso(self.updated),
        })
    }

    /// Codes of the `%%CODE%%` placeholders in the template's texts, sorted.
    fn placeholder_codes(&self) -> Vec<String> {
        let mut codes = BTreeSet::new();
        for l in &self.localizations {
            for value in l.fields.values() {
                collect_codes(value, &mut codes);
            }
        }
        codes.into_iter().collect()
    }

    /// Searched by `GET /templates/?search=`: id, name and the texts.
    pub(super) fn search_fields(&self) -> Vec<String> {
        let mut fields = vec![self.id.to_string(), self.name.clone()];
        for l in &self.localizations {
            for value in l.fields.values() {
                collect_texts(value, &mut fields);
            }
        }
        fields
    }
}

fn collect_texts(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| collect_texts(v, out)),
        Value::Object(map) => map.values().for_each(|v| collect_texts(v, out)),
        _ => {}
    }
}

fn collect_codes(value: &Value, codes: &mut BTreeSet<String>) {
    let mut texts = Vec::new();
    collect_texts(value, &mut texts);
    for text in texts {
        for (i, piece) in text.split("%%").enumerate() {
            if i % 2 == 1 && validate::is_valid_code(piece) {
                codes.insert(piece.to_owned());
            }
        }
    }
}

impl Media {
    pub(super) fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "title": self.title,
            "media": self.external_url,
            "content_type": self.content_type,
            "format_type": self.format_type,
            "external_url": self.external_url,
            "external_id": null,
            "is_deleted": false,
            "created_datetime": iso(self.created),
        })
    }
}

impl Automation {
    /// The automation with its API triggers' start URLs under `origin` (`http://host:port`).
    pub(super) fn to_json(&self, origin: &str) -> Value {
        let webhooks: Vec<Value> = self
            .triggers
            .iter()
            .map(|t| {
                json!({
                    "uuid": t.uuid,
                    "link": trigger_link(origin, &t.uuid),
                    "secret": t.secret,
                    "is_active": t.is_active,
                })
            })
            .collect();
        json!({
            "id": self.id,
            "name": self.name,
            "is_active": self.is_active,
            "is_favorite": self.is_favorite,
            "first_message_text": "",
            "created_datetime": iso(self.created),
            "updated_datetime": iso(self.updated),
            "webhook_set": webhooks,
        })
    }
}

/// The start URL of an API trigger.
pub(super) fn trigger_link(origin: &str, uuid: &str) -> String {
    format!("{origin}/wh/ap/{uuid}/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_and_keys_look_right() {
        let uuid = uuid4();
        assert_eq!(uuid.len(), 36);
        assert_eq!(uuid.as_bytes()[14], b'4');
        assert_eq!(random_hex(16).len(), 32);
        assert_ne!(random_hex(16), random_hex(16));
    }

    #[test]
    fn templates_keep_localization_ids_and_list_placeholders() {
        let now = Utc::now();
        let mut catalog = Catalog::new(7, now);
        let loc = |text: &str| {
            let mut m = Map::new();
            m.insert("language".to_owned(), json!("it"));
            m.insert("body_template_component".to_owned(), json!({"text": text}));
            m
        };
        let id = catalog.create_template(
            TemplateInput {
                name: Some("t".to_owned()),
                category: Some("MARKETING".to_owned()),
                localizations: Some(vec![loc("Hi %%NAME%% %%ORDER_ID%%")]),
                ..TemplateInput::default()
            },
            now,
        );
        let json = catalog.templates.get(id).map(Template::to_json);
        let json = json.unwrap_or_default();
        assert_eq!(json["customfield_set"], json!(["NAME", "ORDER_ID"]));
        assert_eq!(json["templatelocalization_set"][0]["status"], "DRAFT");
        let loc_id = json["templatelocalization_set"][0]["id"].clone();
        let mut kept = loc("Bye");
        kept.insert("id".to_owned(), loc_id.clone());
        catalog.update_template(
            id,
            TemplateInput {
                localizations: Some(vec![kept, loc("New")]),
                ..TemplateInput::default()
            },
            now,
        );
        let json = catalog.templates.get(id).map(Template::to_json);
        let json = json.unwrap_or_default();
        assert_eq!(json["templatelocalization_set"][0]["id"], loc_id);
        assert_ne!(json["templatelocalization_set"][1]["id"], loc_id);
        assert_eq!(json["customfield_set"], json!([]));
    }
}
