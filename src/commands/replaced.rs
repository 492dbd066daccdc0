//! Routes Spoki removed or deprecated, and their documented replacements:
//! - `POST accounts/{id}/onboarding/` answers 404; the replacement is `POST channel/` with
//!   `{"platform": 1}` (the partner-only `partners/onboarding/` is not for an account's key);
//! - `GET reports/` is deprecated for `GET reports/detailed/`, with the same query.
//!
//! Once the old route answered that it is gone (404, or 410 for reports), later commands go to
//! the replacement at once, so no slot is spent on it again. When the replacement fails too,
//! the command's error carries both answers, the original first.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use reqwest::Method;
use serde_json::json;

use super::params::Rendered;
use crate::outbound::sender::{Sender, Sent, Slot};
use crate::spoki::Answer;
use crate::spoki::actions::Action;

/// Which old routes answered that they are gone, since start.
#[derive(Clone, Debug, Default)]
pub struct Replaced {
    onboarding_gone: Arc<AtomicBool>,
    reports_gone: Arc<AtomicBool>,
}

impl Replaced {
    /// Whether `action`'s own route is known to be gone.
    pub fn gone(&self, action: Action) -> bool {
        match action {
            Action::CreateAccountOnboardingLink => self.onboarding_gone.load(Ordering::Relaxed),
            Action::ListReports => self.reports_gone.load(Ordering::Relaxed),
            _ => false,
        }
    }

    /// Whether `sent` says `action`'s route is gone (and remembers it).
    pub fn says_gone(&self, action: Action, sent: &Sent<Answer>) -> bool {
        let gone = match (action, sent) {
            (Action::CreateAccountOnboardingLink, Sent::Refused { status: 404, .. }) => {
                &self.onboarding_gone
            }
            (
                Action::ListReports,
                Sent::Refused {
                    status: 404 | 410, ..
                },
            ) => &self.reports_gone,
            _ => return false,
        };
        gone.store(true, Ordering::Relaxed);
        tracing::info!(
            action = action.name(),
            "Spoki says this route is gone; using its documented replacement from now on"
        );
        true
    }

    /// Sends `action`'s replacement of `request` with `slot`; `original` is the old route's
    /// refusal, if it was just tried.
    pub async fn send(
        &self,
        sender: &Sender,
        slot: Slot,
        action: Action,
        request: &Rendered,
        original: Option<Sent<Answer>>,
    ) -> Sent<Answer> {
        let client = sender.client();
        let sent = match action {
            Action::CreateAccountOnboardingLink => {
                // A WhatsApp channel (platform 1).
                let body = json!({"platform": 1});
                let call = client.send(action, Method::POST, "channel/", &[], Some(&body));
                sender.send(slot, call).await
            }
            _ => {
                let call = client.send(
                    action,
                    Method::GET,
                    "reports/detailed/",
                    &request.query,
                    None,
                );
                sender.send(slot, call).await
            }
        };
        match (sent, original) {
            (
                Sent::Refused { status, body } | Sent::Unauthorized { status, body },
                Some(Sent::Refused {
                    status: old_status,
                    body: old_body,
                }),
            ) => Sent::Refused {
                status,
                body: json!({
                    "error": format!(
                        "{} answered HTTP {old_status} (removed by Spoki), and its replacement {} \
                         answered HTTP {status}",
                        request.path,
                        replacement_path(action)
                    ),
                    "original": old_body,
                    "replacement": body,
                }),
            },
            (sent, _) => sent,
        }
    }
}

fn replacement_path(action: Action) -> &'static str {
    match action {
        Action::CreateAccountOnboardingLink => "channel/",
        _ => "reports/detailed/",
    }
}
