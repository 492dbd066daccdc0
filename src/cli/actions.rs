//! `spoki-sync actions [ACTION] [--json | --markdown]`: the action catalogue (every Spoki
//! action plus `start_automation`) with method, path, default rate limit and the params each
//! takes, built from the catalogue and the typed params, so it is always what the daemon
//! accepts. `docs/actions.md` is its `--markdown` output (a test keeps them equal).

use std::fmt::Write as _;

use serde::Serialize;

use crate::commands::{ParamDoc, describe};
use crate::spoki::RateLimit;
use crate::spoki::actions::Action;

/// One action as the catalogue shows it.
#[derive(Clone, Debug, Serialize)]
pub struct ActionDoc {
    pub name: &'static str,
    pub method: &'static str,
    /// Relative to `spoki.base_url` (`start_automation`: to Spoki's host).
    pub path: &'static str,
    /// The default, `COUNT/DURATION`; `spoki.rate_limits.<name>` overrides it.
    pub rate_limit: String,
    /// Whether the daemon may send it again after a lost answer.
    pub repeat_safe: bool,
    pub params: Vec<ParamDoc>,
}

/// The output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
    Markdown,
}

pub fn doc(action: Action) -> ActionDoc {
    ActionDoc {
        name: action.name(),
        method: action.method().as_str(),
        path: action.path(),
        rate_limit: limit_text(action.default_limit()),
        repeat_safe: action.repeat_safe(),
        params: describe(action),
    }
}

/// Every action, sorted by name.
pub fn catalogue() -> Vec<ActionDoc> {
    let mut all: Vec<ActionDoc> = Action::ALL.iter().map(|&a| doc(a)).collect();
    all.sort_by_key(|d| d.name);
    all
}

/// `1/60s`, as the configuration writes limits.
fn limit_text(limit: RateLimit) -> String {
    let per = limit.per;
    if per.subsec_millis() == 0 {
        format!("{}/{}s", limit.count, per.as_secs())
    } else {
        format!("{}/{}ms", limit.count, per.as_millis())
    }
}

/// What `spoki-sync actions` prints; an unknown name is an error naming the closest ones.
///
/// # Errors
/// `name` is not an action.
pub fn render(name: Option<&str>, format: Format) -> Result<String, String> {
    let docs = match name {
        None => catalogue(),
        Some(n) => match Action::from_name(n) {
            Some(a) => vec![doc(a)],
            None => return Err(unknown(n)),
        },
    };
    Ok(match format {
        Format::Json if name.is_some() => json(&docs[0]),
        Format::Json => json(&docs),
        Format::Markdown => markdown(&docs),
        Format::Text if name.is_some() => detail(&docs[0]),
        Format::Text => table(&docs),
    })
}

/// The message for an action name that is not one.
pub fn unknown(name: &str) -> String {
    let near = Action::closest(name);
    if near.is_empty() {
        format!("unknown action {name:?}; `spoki-sync actions` lists them")
    } else {
        format!(
            "unknown action {name:?}; did you mean {}? (`spoki-sync actions` lists them all)",
            near.join(", ")
        )
    }
}

fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

fn param_summary(params: &[ParamDoc]) -> String {
    let names: Vec<String> = params
        .iter()
        .map(|p| {
            if p.required {
                p.name.to_owned()
            } else {
                format!("[{}]", p.name)
            }
        })
        .collect();
    if names.is_empty() {
        "-".to_owned()
    } else {
        names.join(" ")
    }
}

fn table(docs: &[ActionDoc]) -> String {
    let width = docs.iter().map(|d| d.name.len()).max().unwrap_or(0);
    let path_width = docs.iter().map(|d| d.path.len()).max().unwrap_or(0);
    let mut out = String::new();
    for d in docs {
        let _ = writeln!(
            out,
            "{:width$}  {:6} {:path_width$}  {:>8}  {}",
            d.name,
            d.method,
            d.path,
            d.rate_limit,
            param_summary(&d.params),
        );
    }
    let _ = write!(
        out,
        "{} actions; [name] is optional. `spoki-sync actions NAME` shows one in full.",
        docs.len()
    );
    out
}

fn detail(d: &ActionDoc) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}: {} {}", d.name, d.method, d.path);
    let _ = writeln!(
        out,
        "rate limit: {} (spoki.rate_limits.{})",
        d.rate_limit, d.name
    );
    let _ = writeln!(
        out,
        "repeat-safe: {}",
        if d.repeat_safe {
            "yes (retried after a 5xx or a lost answer)"
        } else {
            "no (never sent twice blindly)"
        }
    );
    if d.params.is_empty() {
        let _ = write!(out, "params: none");
        return out;
    }
    let _ = writeln!(out, "params:");
    let width = d.params.iter().map(|p| p.name.len()).max().unwrap_or(0);
    for (i, p) in d.params.iter().enumerate() {
        let need = if p.required { "required" } else { "optional" };
        let _ = write!(out, "  {:width$}  {need}  {}", p.name, p.kind);
        if i + 1 < d.params.len() {
            out.push('\n');
        }
    }
    out
}

fn markdown(docs: &[ActionDoc]) -> String {
    let mut out = String::from(
        "# Actions\n\n\
         Every action `spoki-sync cmd` and `POST /v1/commands` take: Spoki's 57 and\n\
         `start_automation`. Generated by `spoki-sync actions --markdown` (a test keeps this\n\
         file equal to it). Paths are relative to `spoki.base_url` (`start_automation` posts to\n\
         Spoki's host). `id` fills the path's `{id}`; the other params are the query string\n\
         (GET, DELETE) or the JSON body (POST, PATCH); `bulk_sync_contacts` sends its\n\
         `contacts` array itself. The rate limit is the default; `spoki.rate_limits.<action>`\n\
         overrides it. A repeat-safe action is retried after a 5xx or a lost answer; the others\n\
         are never sent twice blindly.\n\n\
         | action | method | path | rate limit | repeat-safe |\n\
         |---|---|---|---|---|\n",
    );
    for d in docs {
        let _ = writeln!(
            out,
            "| [`{0}`](#{0}) | {1} | `{2}` | {3} | {4} |",
            d.name,
            d.method,
            d.path,
            d.rate_limit,
            if d.repeat_safe { "yes" } else { "no" }
        );
    }
    for d in docs {
        let _ = write!(
            out,
            "\n## {}\n\n`{} {}`, {}",
            d.name, d.method, d.path, d.rate_limit
        );
        if d.params.is_empty() {
            out.push_str(". No params.\n");
            continue;
        }
        out.push_str(".\n\n| param | required | type |\n|---|---|---|\n");
        for p in &d.params {
            let _ = writeln!(
                out,
                "| `{}` | {} | {} |",
                p.name,
                if p.required { "yes" } else { "no" },
                p.kind.replace('|', "\\|")
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_the_catalogue() {
        let listed: Vec<&str> = catalogue().iter().map(|d| d.name).collect();
        let mut known: Vec<&str> = Action::ALL.iter().map(|a| a.name()).collect();
        known.sort_unstable();
        assert_eq!(listed, known);
        assert_eq!(listed.len(), 58);
        assert!(listed.contains(&"start_automation"));
        let json: serde_json::Value =
            serde_json::from_str(&render(None, Format::Json).expect("renders")).expect("JSON");
        let names: Vec<&str> = json
            .as_array()
            .expect("array")
            .iter()
            .filter_map(|d| d["name"].as_str())
            .collect();
        assert_eq!(names, known);
    }

    #[test]
    fn one_action_in_full() {
        let text = render(Some("create_ticket"), Format::Text).expect("known");
        assert!(text.starts_with("create_ticket: POST tickets/"), "{text}");
        assert!(text.contains("120/60s"), "{text}");
        assert!(
            text.contains("contact_phone  required  phone in E.164"),
            "{text}"
        );
        let json: serde_json::Value =
            serde_json::from_str(&render(Some("retrieve_contact"), Format::Json).expect("known"))
                .expect("JSON");
        assert_eq!(json["params"][0]["name"], "id");
        assert_eq!(json["params"][0]["required"], true);
        assert_eq!(json["method"], "GET");
    }

    #[test]
    fn an_unknown_action_names_the_closest() {
        let e = render(Some("list_tagz"), Format::Text).expect_err("unknown");
        assert!(e.contains("did you mean list_tags"), "{e}");
        assert!(e.contains("spoki-sync actions"), "{e}");
    }

    #[test]
    fn docs_actions_md_is_the_generated_catalogue() {
        let generated = render(None, Format::Markdown).expect("renders");
        let file = include_str!("../../docs/actions.md");
        assert!(
            file.trim_end() == generated.trim_end(),
            "docs/actions.md is stale: run `cargo run -- actions --markdown > docs/actions.md`"
        );
    }
}
