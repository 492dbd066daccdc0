//! Spoki's catalogue of actions (CONTRACT §8): method, path template and the per-minute limit
//! from spoki-api.md §3.16. One budget per action is shared by every caller.

use crate::values::RateLimit;

/// Limit for endpoints with no documented figure (spoki-api.md §3.16: "everything else").
pub const DEFAULT_LIMIT: RateLimit = RateLimit::per_minute(60);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Patch,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Action {
    pub name: &'static str,
    pub method: Method,
    /// Relative to `spoki.base_url`; `{id}` is filled from the params.
    pub path: &'static str,
    pub default_limit: RateLimit,
}

const fn action(name: &'static str, method: Method, path: &'static str, per_min: u32) -> Action {
    Action {
        name,
        method,
        path,
        default_limit: RateLimit::per_minute(per_min),
    }
}

use Method::{Delete, Get, Patch, Post};

pub const ACTIONS: &[Action] = &[
    action(
        "add_contact_operator",
        Post,
        "contacts/{id}/add_operator/",
        5,
    ),
    action("add_service_user", Post, "roles/add_service_user/", 10),
    action("bulk_sync_contacts", Post, "contacts/sync_all/", 1),
    action(
        "check_role_private_key",
        Get,
        "roles/{id}/has_private_key/",
        10,
    ),
    action("clone_template", Get, "templates/{id}/clone/", 60),
    action(
        "create_account_onboarding_link",
        Post,
        "accounts/{id}/onboarding/",
        60,
    ),
    action("create_contact_list", Post, "lists/", 10),
    action("create_custom_field", Post, "custom-fields/", 5),
    action("create_media_file", Post, "media/", 120),
    action("create_template", Post, "templates/", 10),
    action("create_ticket", Post, "tickets/", 120),
    action("create_or_update_contact", Post, "contacts/sync/", 120),
    action("delete_custom_field", Delete, "custom-fields/{id}/", 5),
    action("delete_contact", Delete, "contacts/{id}/", 60),
    action("delete_list", Delete, "lists/{id}/", 5),
    action("delete_media_file", Delete, "media/{id}/", 60),
    action("delete_role", Delete, "roles/{id}/", 5),
    action("delete_template", Delete, "templates/{id}/", 10),
    action("delete_ticket", Delete, "tickets/{id}/", 60),
    action(
        "generate_role_private_key",
        Post,
        "roles/{id}/generate_private_key/",
        10,
    ),
    action(
        "get_account_current_report",
        Get,
        "accounts/{id}/current_report/",
        60,
    ),
    action("list_accounts", Get, "accounts/", 5),
    action("list_agencies", Get, "agencies/", 60),
    action("list_automations", Get, "automations/", 60),
    action("list_contacts", Get, "contacts/", 120),
    action("list_custom_fields", Get, "custom-fields/", 5),
    action("list_lists", Get, "lists/", 5),
    action("list_partners", Get, "partners/", 60),
    action("list_reports", Get, "reports/", 60),
    action("list_roles", Get, "roles/", 60),
    action("list_tickets", Get, "tickets/", 60),
    action("list_campaigns", Get, "campaigns/", 60),
    action("list_media", Get, "media/", 60),
    action("list_tags", Get, "tags/", 60),
    action("list_templates", Get, "templates/", 60),
    action(
        "remove_all_list_contacts",
        Post,
        "lists/{id}/remove_all_contacts/",
        5,
    ),
    action(
        "remove_contact_operator",
        Post,
        "contacts/{id}/remove_operator/",
        5,
    ),
    action(
        "remove_contacts_from_list",
        Post,
        "lists/{id}/remove_contacts/",
        5,
    ),
    action("resend_invitation", Post, "invitations/{id}/send/", 5),
    action("retrieve_account", Get, "accounts/{id}/", 60),
    action("retrieve_automation", Get, "automations/{id}/", 60),
    action("retrieve_contact", Get, "contacts/{id}/", 60),
    action("retrieve_custom_field", Get, "custom-fields/{id}/", 5),
    action("retrieve_list", Get, "lists/{id}/", 5),
    action("retrieve_media", Get, "media/{id}/", 60),
    action("retrieve_role", Get, "roles/{id}/", 5),
    action("retrieve_tag", Get, "tags/{id}/", 60),
    action("retrieve_template", Get, "templates/{id}/", 60),
    action(
        "revert_template_to_draft",
        Post,
        "templates/{id}/back_to_draft/",
        60,
    ),
    action(
        "sync_contacts_to_list",
        Post,
        "lists/{id}/sync_contacts/",
        1,
    ),
    action("update_campaign", Patch, "campaigns/{id}/", 5),
    action("update_contact", Patch, "contacts/{id}/", 60),
    action("update_custom_field", Patch, "custom-fields/{id}/", 5),
    action(
        "update_invitation_role",
        Post,
        "invitations/{id}/update_role/",
        5,
    ),
    action("update_media", Patch, "media/{id}/", 120),
    action("update_role", Post, "roles/{id}/update_role/", 10),
    action("update_template", Patch, "templates/{id}/", 10),
];

/// `bulk_sync_contacts`: its body is the contacts array itself.
pub const BULK_SYNC: &str = "bulk_sync_contacts";

/// Starts an automation for one contact through its API trigger (spoki-api.md §5). Not in
/// Spoki's catalogue: the path is the trigger's own URL, looked up when the command runs.
pub const START_AUTOMATION: &str = "start_automation";

/// Actions beyond Spoki's catalogue. Spoki states no limit for automation starts; 600/min
/// keeps a runaway script polite and can be raised.
pub const EXTRA: &[Action] = &[action(START_AUTOMATION, Post, "wh/ap/{uuid}/", 600)];

/// The catalogue and the extras.
pub fn all() -> impl Iterator<Item = &'static Action> {
    ACTIONS.iter().chain(EXTRA)
}

pub fn find(name: &str) -> Option<&'static Action> {
    all().find(|a| a.name == name)
}

/// Whether sending the same request twice leaves Spoki as sending it once: reads (except
/// `clone_template`, a GET that creates), updates, deletes, upserts by phone and membership
/// changes. Creates, key generation, invitation e-mails and automation starts are not.
pub fn repeat_safe(action: &Action) -> bool {
    !matches!(
        action.name,
        "clone_template"
            | "create_account_onboarding_link"
            | "create_contact_list"
            | "create_custom_field"
            | "create_media_file"
            | "create_template"
            | "create_ticket"
            | "add_service_user"
            | "generate_role_private_key"
            | "resend_invitation"
            | START_AUTOMATION
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_has_the_57_contract_actions_once_each() {
        assert_eq!(ACTIONS.len(), 57);
        let mut names: Vec<_> = ACTIONS.iter().map(|a| a.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 57);
        assert!(
            ACTIONS
                .iter()
                .all(|a| a.path.ends_with('/') && !a.path.starts_with('/'))
        );
        assert!(find(START_AUTOMATION).is_some());
        assert_eq!(all().count(), 58);
    }

    #[test]
    fn creates_are_not_repeat_safe() {
        let safe = |n| repeat_safe(find(n).expect("known"));
        assert!(safe("list_contacts"));
        assert!(safe("update_contact"));
        assert!(safe("delete_ticket"));
        assert!(safe("bulk_sync_contacts"));
        assert!(!safe("clone_template"));
        assert!(!safe("create_ticket"));
        assert!(!safe(START_AUTOMATION));
    }
}
