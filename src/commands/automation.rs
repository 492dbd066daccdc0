//! `start_automation`: the automation's active API trigger, looked up with
//! `GET automations/{id}/` under `retrieve_automation`'s own budget and kept per automation,
//! then one `POST` of the contact with the trigger's secret to the trigger's `link`.
//!
//! - The secret goes only to Spoki's host: a `link` elsewhere fails the command, saying so.
//! - The lookup and the start take slots of their own budgets, one after the other, never one
//!   while waiting for the other: a 429 on the lookup holds only `retrieve_automation`.
//! - A 200 answering `{"accepted": false}` is a failure with Spoki's answer; an empty body or
//!   anything else is a start.
//! - A 404 or 401 from the start URL drops the kept trigger (it may have been replaced); a
//!   start made with a kept trigger is then tried again once with a fresh lookup.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use reqwest::{Method, Url};
use serde_json::{Value, json};

use crate::outbound::sender::{Sender, Sent, Slot};
use crate::spoki::actions::Action;
use crate::spoki::{Answer, SpokiClient};

/// Hosts Spoki serves the trigger URLs from: today's and the legacy one.
const SPOKI_HOSTS: [&str; 2] = ["api.spoki.com", "app.spoki.it"];

/// An automation's start URL and the secret it takes.
#[derive(Clone, Debug)]
pub struct Trigger {
    pub url: Url,
    secret: Value,
}

/// Triggers found so far, per automation id.
#[derive(Clone, Debug, Default)]
pub struct Triggers(Arc<Mutex<HashMap<u64, Trigger>>>);

impl Triggers {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Trigger>> {
        // A poisoned lock only means another thread panicked mid-update of plain data.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, automation: u64) -> Option<Trigger> {
        self.map().get(&automation).cloned()
    }

    fn keep(&self, automation: u64, trigger: Trigger) {
        self.map().insert(automation, trigger);
    }

    fn forget(&self, automation: u64) {
        self.map().remove(&automation);
    }
}

/// The automation id of a `start_automation` command's params.
pub fn automation_of(params: &Value) -> u64 {
    params
        .get("automation")
        .and_then(Value::as_u64)
        .unwrap_or_default()
}

/// What one attempt at a start came to.
pub enum Started {
    /// The start was sent (or refused before sending): Spoki's answer, classified.
    Sent(Sent<Answer>),
    /// Nothing was started; try again after the budget named waits (a slot of the start's
    /// budget was not free after the lookup, or a kept trigger turned out stale).
    Again(std::time::Duration),
}

/// Runs one attempt. `slot` is of `retrieve_automation` when no trigger is kept for the
/// automation, else of `start_automation` (`Triggers::get` decides, in the worker).
pub async fn start(sender: &Sender, triggers: &Triggers, slot: Slot, params: &Value) -> Started {
    let automation = automation_of(params);
    let (trigger, slot, fresh) = match (slot.action(), triggers.get(automation)) {
        (Action::StartAutomation, Some(kept)) => (kept, slot, false),
        _ => {
            let trigger = match look_up(sender, slot, automation).await {
                Ok(trigger) => trigger,
                Err(sent) => return Started::Sent(sent),
            };
            triggers.keep(automation, trigger.clone());
            match sender.try_slot(Action::StartAutomation) {
                Ok(start) => (trigger, start, true),
                Err(wait) => return Started::Again(wait),
            }
        }
    };
    let mut body = params.clone();
    if let Some(map) = body.as_object_mut() {
        map.remove("automation");
        map.insert("secret".to_owned(), trigger.secret.clone());
    }
    let call = sender
        .client()
        .post_url(Action::StartAutomation, trigger.url.clone(), &body);
    match sender.send(slot, call).await {
        Sent::Done(answer)
            if answer.body.as_ref().and_then(|b| b.get("accepted"))
                == Some(&Value::Bool(false)) =>
        {
            Started::Sent(Sent::Refused {
                status: answer.status.as_u16(),
                body: json!({
                    "error": format!("Spoki did not accept the start of automation {automation}"),
                    "answer": answer.body,
                }),
            })
        }
        sent @ (Sent::Refused { status: 404, .. } | Sent::Unauthorized { status: 401, .. }) => {
            triggers.forget(automation);
            if fresh {
                Started::Sent(sent)
            } else {
                tracing::info!(
                    automation,
                    "the kept automation trigger was refused; looking it up again"
                );
                Started::Again(std::time::Duration::ZERO)
            }
        }
        other => Started::Sent(other),
    }
}

/// `GET automations/{id}/` and its active API trigger.
async fn look_up(sender: &Sender, slot: Slot, automation: u64) -> Result<Trigger, Sent<Answer>> {
    let path = format!("automations/{automation}/");
    let call = sender
        .client()
        .send(Action::RetrieveAutomation, Method::GET, &path, &[], None);
    let found = match sender.send(slot, call).await {
        Sent::Done(found) => found,
        // A lookup that got no answer started nothing: retried like any read.
        Sent::Transient { error, .. } => {
            return Err(Sent::Transient {
                error,
                may_have_applied: false,
            });
        }
        other => return Err(other),
    };
    trigger_of(sender.client(), automation, found.body.as_ref())
}

/// The first active trigger of `webhook_set` with a secret, and where to post: its `link`
/// when it points at Spoki's host, else its `uuid` on Spoki's host.
pub fn trigger_of(
    client: &SpokiClient,
    automation: u64,
    found: Option<&Value>,
) -> Result<Trigger, Sent<Answer>> {
    let refuse = |error: String| Sent::Refused {
        status: 400,
        body: json!({ "error": error }),
    };
    let trigger = found
        .and_then(|a| a.get("webhook_set"))
        .and_then(Value::as_array)
        .and_then(|set| {
            set.iter().find(|t| {
                t.get("is_active").and_then(Value::as_bool).unwrap_or(true)
                    && t.get("secret").and_then(Value::as_str).is_some()
                    && (t.get("link").and_then(Value::as_str).is_some()
                        || t.get("uuid").and_then(Value::as_str).is_some())
            })
        })
        .ok_or_else(|| {
            refuse(format!(
                "automation {automation} has no active API trigger (webhook_set); add an \
                 \"API Url\" start trigger to it in Spoki"
            ))
        })?;
    let base = client.base();
    let url = match trigger.get("link").and_then(Value::as_str) {
        Some(link) => base.join(link).map_err(|e| {
            refuse(format!(
                "automation {automation}: its trigger link is not a URL: {e}"
            ))
        })?,
        None => {
            let uuid = trigger
                .get("uuid")
                .and_then(Value::as_str)
                .unwrap_or_default();
            base.join(&format!("/wh/ap/{uuid}/"))
                .map_err(|e| refuse(format!("automation {automation}: bad trigger uuid: {e}")))?
        }
    };
    if !on_spokis_host(base, &url) {
        return Err(refuse(format!(
            "automation {automation}: its trigger link points at {}, not at Spoki's host {}; \
             the trigger's secret is not sent there",
            url.host_str().unwrap_or("?"),
            base.host_str().unwrap_or("?")
        )));
    }
    Ok(Trigger {
        url,
        secret: trigger.get("secret").cloned().unwrap_or(Value::Null),
    })
}

/// Whether `url` is on the host the API key goes to (same scheme, host and port), or both
/// are Spoki's own hosts over HTTPS.
fn on_spokis_host(base: &Url, url: &Url) -> bool {
    let same = url.scheme() == base.scheme()
        && url.host_str() == base.host_str()
        && url.port_or_known_default() == base.port_or_known_default();
    let spoki =
        |u: &Url| u.scheme() == "https" && u.host_str().is_some_and(|h| SPOKI_HOSTS.contains(&h));
    same || (spoki(base) && spoki(url))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(base: &str) -> SpokiClient {
        SpokiClient::new(
            Url::parse(base).expect("url"),
            crate::spoki::Secret::new("k".to_owned()),
            std::time::Duration::from_secs(1),
        )
        .expect("client")
    }

    fn automation(link: Value) -> Value {
        json!({"id": 7, "webhook_set": [
            {"uuid": "u-1", "secret": "s", "is_active": false, "link": "https://api.spoki.com/wh/ap/u-1/"},
            {"uuid": "u-2", "secret": "s2", "is_active": true, "link": link},
        ]})
    }

    #[test]
    fn the_active_triggers_link_is_used_only_on_spokis_host() {
        let c = client("https://api.spoki.com/api/1/");
        let t = trigger_of(
            &c,
            7,
            Some(&automation(json!("https://api.spoki.com/wh/ap/u-2/"))),
        )
        .expect("trigger");
        assert_eq!(t.url.as_str(), "https://api.spoki.com/wh/ap/u-2/");
        assert_eq!(t.secret, json!("s2"));
        let legacy = trigger_of(
            &c,
            7,
            Some(&automation(json!("https://app.spoki.it/wh/ap/u-2/"))),
        );
        assert!(legacy.is_ok(), "the legacy host is Spoki's too");
        let relative =
            trigger_of(&c, 7, Some(&automation(json!("/wh/ap/u-2/")))).expect("relative");
        assert_eq!(relative.url.as_str(), "https://api.spoki.com/wh/ap/u-2/");
        let missing = trigger_of(&c, 7, Some(&automation(Value::Null))).expect("uuid");
        assert_eq!(missing.url.as_str(), "https://api.spoki.com/wh/ap/u-2/");
        for foreign in [
            "https://evil.example/wh/ap/u-2/",
            "http://api.spoki.com/wh/ap/u-2/",
        ] {
            match trigger_of(&c, 7, Some(&automation(json!(foreign)))) {
                Err(Sent::Refused { body, .. }) => {
                    assert!(body.to_string().contains("not sent there"), "{body}");
                }
                _ => panic!("{foreign} must be refused"),
            }
        }
        let local = client("http://127.0.0.1:9000/api/1/");
        assert!(
            trigger_of(
                &local,
                7,
                Some(&automation(json!("http://127.0.0.1:9001/wh/ap/u-2/")))
            )
            .is_err()
        );
    }
}
