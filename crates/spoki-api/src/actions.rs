//! Spoki's catalogue of actions as one type: `Action`, generated from a single
//! table of name, method, path template, per-minute limit (Spoki's documented limits) and whether a
//! repeat is harmless. A misspelled action does not compile, and a `match` over actions is
//! exhaustive. One budget per action is shared by every caller.

use crate::values::RateLimit;

/// Limit for endpoints with no documented figure (Spoki's "everything else" figure).
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

/// Whether sending the same request twice leaves Spoki as sending it once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Repeat {
    /// Reads, updates, deletes, upserts by phone, membership and role changes.
    Safe,
    /// Creates, key generation, invitation e-mails, automation starts: each send acts again.
    Once,
}

macro_rules! catalogue {
    ($($variant:ident $name:literal, $method:ident, $path:literal, $per_min:literal, $repeat:ident;)*) => {
        /// One of Spoki's actions, or `StartAutomation` (ours: the trigger's own URL).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Action {
            $($variant,)*
        }

        impl Action {
            /// Every action, in the table's order.
            pub const ALL: &'static [Action] = &[$(Action::$variant,)*];

            /// The name users and the configuration use (`spoki.rate_limits.<name>`).
            pub const fn name(self) -> &'static str {
                match self {
                    $(Action::$variant => $name,)*
                }
            }

            pub const fn method(self) -> Method {
                match self {
                    $(Action::$variant => Method::$method,)*
                }
            }

            /// Relative to `spoki.base_url`; `{id}` is filled from the params.
            pub const fn path(self) -> &'static str {
                match self {
                    $(Action::$variant => $path,)*
                }
            }

            pub const fn default_limit(self) -> RateLimit {
                match self {
                    $(Action::$variant => RateLimit::per_minute($per_min),)*
                }
            }

            const fn repeat(self) -> Repeat {
                match self {
                    $(Action::$variant => catalogue!(@repeat $repeat),)*
                }
            }
        }
    };
    (@repeat repeat) => { Repeat::Safe };
    (@repeat once) => { Repeat::Once };
}

catalogue! {
    AddContactOperator           "add_contact_operator", Post, "contacts/{id}/add_operator/", 5, repeat;
    AddServiceUser               "add_service_user", Post, "roles/add_service_user/", 10, once;
    BulkSyncContacts             "bulk_sync_contacts", Post, "contacts/sync_all/", 1, repeat;
    CheckRolePrivateKey          "check_role_private_key", Get, "roles/{id}/has_private_key/", 10, repeat;
    CloneTemplate                "clone_template", Get, "templates/{id}/clone/", 60, once;
    CreateAccountOnboardingLink  "create_account_onboarding_link", Post, "accounts/{id}/onboarding/", 60, once;
    CreateContactList            "create_contact_list", Post, "lists/", 10, once;
    CreateCustomField            "create_custom_field", Post, "custom-fields/", 5, once;
    CreateMediaFile              "create_media_file", Post, "media/", 120, once;
    CreateTemplate               "create_template", Post, "templates/", 10, once;
    CreateTicket                 "create_ticket", Post, "tickets/", 120, once;
    CreateOrUpdateContact        "create_or_update_contact", Post, "contacts/sync/", 120, repeat;
    DeleteCustomField            "delete_custom_field", Delete, "custom-fields/{id}/", 5, repeat;
    DeleteContact                "delete_contact", Delete, "contacts/{id}/", 60, repeat;
    DeleteList                   "delete_list", Delete, "lists/{id}/", 5, repeat;
    DeleteMediaFile              "delete_media_file", Delete, "media/{id}/", 60, repeat;
    DeleteRole                   "delete_role", Delete, "roles/{id}/", 5, repeat;
    DeleteTemplate               "delete_template", Delete, "templates/{id}/", 10, repeat;
    DeleteTicket                 "delete_ticket", Delete, "tickets/{id}/", 60, repeat;
    GenerateRolePrivateKey       "generate_role_private_key", Post, "roles/{id}/generate_private_key/", 10, once;
    GetAccountCurrentReport      "get_account_current_report", Get, "accounts/{id}/current_report/", 60, repeat;
    ListAccounts                 "list_accounts", Get, "accounts/", 5, repeat;
    ListAgencies                 "list_agencies", Get, "agencies/", 60, repeat;
    ListAutomations              "list_automations", Get, "automations/", 60, repeat;
    ListContacts                 "list_contacts", Get, "contacts/", 120, repeat;
    ListCustomFields             "list_custom_fields", Get, "custom-fields/", 5, repeat;
    ListLists                    "list_lists", Get, "lists/", 5, repeat;
    ListPartners                 "list_partners", Get, "partners/", 60, repeat;
    ListReports                  "list_reports", Get, "reports/", 60, repeat;
    ListRoles                    "list_roles", Get, "roles/", 60, repeat;
    ListTickets                  "list_tickets", Get, "tickets/", 60, repeat;
    ListCampaigns                "list_campaigns", Get, "campaigns/", 60, repeat;
    ListMedia                    "list_media", Get, "media/", 60, repeat;
    ListTags                     "list_tags", Get, "tags/", 60, repeat;
    ListTemplates                "list_templates", Get, "templates/", 60, repeat;
    RemoveAllListContacts        "remove_all_list_contacts", Post, "lists/{id}/remove_all_contacts/", 5, repeat;
    RemoveContactOperator        "remove_contact_operator", Post, "contacts/{id}/remove_operator/", 5, repeat;
    RemoveContactsFromList       "remove_contacts_from_list", Post, "lists/{id}/remove_contacts/", 5, repeat;
    ResendInvitation             "resend_invitation", Post, "invitations/{id}/send/", 5, once;
    RetrieveAccount              "retrieve_account", Get, "accounts/{id}/", 60, repeat;
    RetrieveAutomation           "retrieve_automation", Get, "automations/{id}/", 60, repeat;
    RetrieveContact              "retrieve_contact", Get, "contacts/{id}/", 60, repeat;
    RetrieveCustomField          "retrieve_custom_field", Get, "custom-fields/{id}/", 5, repeat;
    RetrieveList                 "retrieve_list", Get, "lists/{id}/", 5, repeat;
    RetrieveMedia                "retrieve_media", Get, "media/{id}/", 60, repeat;
    RetrieveRole                 "retrieve_role", Get, "roles/{id}/", 5, repeat;
    RetrieveTag                  "retrieve_tag", Get, "tags/{id}/", 60, repeat;
    RetrieveTemplate             "retrieve_template", Get, "templates/{id}/", 60, repeat;
    RevertTemplateToDraft        "revert_template_to_draft", Post, "templates/{id}/back_to_draft/", 60, repeat;
    SyncContactsToList           "sync_contacts_to_list", Post, "lists/{id}/sync_contacts/", 1, repeat;
    UpdateCampaign               "update_campaign", Patch, "campaigns/{id}/", 5, repeat;
    UpdateContact                "update_contact", Patch, "contacts/{id}/", 60, repeat;
    UpdateCustomField            "update_custom_field", Patch, "custom-fields/{id}/", 5, repeat;
    UpdateInvitationRole         "update_invitation_role", Post, "invitations/{id}/update_role/", 5, repeat;
    UpdateMedia                  "update_media", Patch, "media/{id}/", 120, repeat;
    UpdateRole                   "update_role", Post, "roles/{id}/update_role/", 10, repeat;
    UpdateTemplate               "update_template", Patch, "templates/{id}/", 10, repeat;
    StartAutomation              "start_automation", Post, "wh/ap/{uuid}/", 600, once;
}

impl Action {
    /// The action of that name.
    pub fn from_name(name: &str) -> Option<Action> {
        Action::ALL.iter().copied().find(|a| a.name() == name)
    }

    /// Spoki's own catalogue: every action but `StartAutomation`.
    pub fn spoki() -> impl Iterator<Item = Action> {
        Action::ALL
            .iter()
            .copied()
            .filter(|a| *a != Action::StartAutomation)
    }

    /// Whether sending the same request twice leaves Spoki as sending it once: reads (except
    /// `clone_template`, a GET that creates), updates, deletes, upserts by phone and
    /// membership changes. Creates, key generation, invitation e-mails and automation starts
    /// are not.
    pub const fn repeat_safe(self) -> bool {
        matches!(self.repeat(), Repeat::Safe)
    }

    /// The names closest to `name` (for "did you mean"), best first.
    pub fn closest(name: &str) -> Vec<&'static str> {
        let mut scored: Vec<(usize, &'static str)> = Action::ALL
            .iter()
            .map(|a| (edit_distance(name, a.name()), a.name()))
            .collect();
        scored.sort();
        let best = scored.first().map_or(0, |(d, _)| *d);
        scored
            .into_iter()
            .take_while(|(d, _)| *d <= best.max(1) && *d <= name.len() / 2 + 1)
            .take(3)
            .map(|(_, n)| n)
            .collect()
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Levenshtein distance, for "did you mean" (names are short ASCII).
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_has_the_57_contract_actions_once_each() {
        assert_eq!(Action::spoki().count(), 57);
        let mut names: Vec<_> = Action::ALL.iter().map(|a| a.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 58);
        assert!(Action::spoki().all(|a| a.path().ends_with('/') && !a.path().starts_with('/')));
        for a in Action::ALL {
            assert_eq!(Action::from_name(a.name()), Some(*a));
        }
    }

    #[test]
    fn creates_are_not_repeat_safe() {
        assert!(Action::ListContacts.repeat_safe());
        assert!(Action::UpdateContact.repeat_safe());
        assert!(Action::DeleteTicket.repeat_safe());
        assert!(Action::BulkSyncContacts.repeat_safe());
        assert!(!Action::CloneTemplate.repeat_safe());
        assert!(!Action::CreateTicket.repeat_safe());
        assert!(!Action::StartAutomation.repeat_safe());
    }

    #[test]
    fn a_misspelled_name_suggests_the_closest() {
        assert_eq!(Action::from_name("list_tagz"), None);
        assert_eq!(Action::closest("list_tagz"), vec!["list_tags"]);
        assert!(Action::closest("zzzzzzzzzzzzzzzzzzzz").is_empty());
    }
}
