//! The CLI's side of the admin API: `spoki-sync cmd` and `spoki-sync status` talk to the
//! running daemon with the token from the same configuration.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::config::Settings;

pub struct AdminClient {
    http: reqwest::Client,
    base: String,
    token: String,
}

/// How a CLI call ended, for the exit code.
#[derive(Debug, PartialEq, Eq)]
pub enum CliOutcome {
    Ok,
    /// The command ran and failed, or the daemon refused the request.
    Failed,
}

/// The address to reach a listener bound to `listen`: a wildcard bind is reached on loopback.
fn reachable(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, listen.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, listen.port()).into(),
        _ => listen,
    }
}

impl AdminClient {
    /// # Errors
    /// When `admin.token` is not configured.
    pub fn from_settings(settings: &Settings) -> anyhow::Result<AdminClient> {
        let token =
            settings.admin.token.as_ref().context(
                "admin.token is not set in the configuration (or SPOKI_SYNC__ADMIN__TOKEN)",
            )?;
        AdminClient::new(reachable(settings.admin.listen), token.expose())
    }

    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(addr: SocketAddr, token: &str) -> anyhow::Result<AdminClient> {
        crate::spoki::install_tls_provider();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(AdminClient {
            http,
            base: format!("http://{addr}"),
            token: token.to_owned(),
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(reqwest::StatusCode, Value)> {
        self.call_keyed(method, path, body, None).await
    }

    async fn call_keyed(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        idempotency_key: Option<&str>,
    ) -> anyhow::Result<(reqwest::StatusCode, Value)> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(key) = idempotency_key {
            req = req.header("Idempotency-Key", key);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.with_context(|| {
            format!(
                "cannot reach the daemon's admin API at {} (is `spoki-sync run` running with \
                 this configuration?)",
                self.base
            )
        })?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .context("the admin API's answer broke off")?;
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status == reqwest::StatusCode::UNAUTHORIZED {
            bail!("the admin API refused the token: admin.token differs from the daemon's");
        }
        Ok((status, value))
    }

    /// Queues `action`; with `wait`, polls until it ends. Prints for people or, with `json`,
    /// the command record.
    ///
    /// # Errors
    /// When the daemon cannot be reached.
    pub async fn cmd(
        &self,
        action: &str,
        params: Value,
        wait: bool,
        json_out: bool,
    ) -> anyhow::Result<CliOutcome> {
        let body = json!({"action": action, "params": params});
        // One key for every try: if an answer is lost and the POST is sent again, the daemon
        // returns the command it queued the first time instead of queueing a second.
        let key = uuid::Uuid::new_v4().to_string();
        let mut tries = 0;
        let (status, answer) = loop {
            tries += 1;
            match self
                .call_keyed(
                    reqwest::Method::POST,
                    "/v1/commands",
                    Some(&body),
                    Some(&key),
                )
                .await
            {
                Err(e) if tries < 3 => {
                    tracing::debug!(error = %e, "POST /v1/commands failed; trying again");
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
                other => break other?,
            }
        };
        if !status.is_success() {
            let message = answer
                .get("error")
                .and_then(Value::as_str)
                .map_or_else(|| answer.to_string(), str::to_owned);
            eprintln!("spoki-sync: {message}");
            return Ok(CliOutcome::Failed);
        }
        let id = answer
            .get("id")
            .and_then(Value::as_str)
            .context("the admin API answered without a command id")?
            .to_owned();
        if !wait {
            if json_out {
                println!("{answer}");
            } else {
                println!("queued {action} as command {id}");
            }
            return Ok(CliOutcome::Ok);
        }
        let mut delay = Duration::from_millis(100);
        loop {
            let (_, record) = self
                .call(reqwest::Method::GET, &format!("/v1/commands/{id}"), None)
                .await?;
            match record.get("status").and_then(Value::as_str) {
                Some("succeeded") => {
                    print_record(&record, json_out);
                    return Ok(CliOutcome::Ok);
                }
                Some("failed") => {
                    print_record(&record, json_out);
                    return Ok(CliOutcome::Failed);
                }
                _ => {}
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }

    /// Prints the status every `every` until Ctrl-C, clearing the screen like `top`.
    ///
    /// # Errors
    /// When the daemon cannot be reached or answers an error.
    pub async fn watch(&self, every: Duration) -> anyhow::Result<()> {
        loop {
            let (status, answer) = self.call(reqwest::Method::GET, "/v1/status", None).await?;
            if !status.is_success() {
                bail!("the admin API answered {status}: {answer}");
            }
            print!(
                "\x1b[2J\x1b[Hspoki-sync status (every {} s, Ctrl-C to stop)\n\n{}",
                every.as_secs(),
                human_status(&answer)
            );
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return Ok(()),
                () = tokio::time::sleep(every) => {}
            }
        }
    }

    /// Prints the daemon's status.
    ///
    /// # Errors
    /// When the daemon cannot be reached or answers an error.
    pub async fn status(&self, json_out: bool) -> anyhow::Result<()> {
        let (status, answer) = self.call(reqwest::Method::GET, "/v1/status", None).await?;
        if !status.is_success() {
            bail!("the admin API answered {status}: {answer}");
        }
        if json_out {
            println!("{answer}");
        } else {
            print!("{}", human_status(&answer));
        }
        Ok(())
    }
}

/// `spoki-sync rejects`: one page of `GET /v1/rejects`.
#[derive(Clone, Debug, Default)]
pub struct RejectsQuery {
    pub limit: u32,
    pub before: Option<i64>,
    pub source: Option<String>,
    pub file: Option<String>,
}

impl RejectsQuery {
    /// The admin API path with the query string.
    pub fn path(&self) -> String {
        let mut pairs = vec![("limit", self.limit.to_string())];
        pairs.extend(self.before.map(|b| ("before", b.to_string())));
        pairs.extend(self.source.clone().map(|s| ("source", s)));
        pairs.extend(self.file.clone().map(|f| ("file", f)));
        match reqwest::Url::parse_with_params("http://admin/v1/rejects", &pairs) {
            Ok(url) => format!("/v1/rejects?{}", url.query().unwrap_or_default()),
            Err(_) => "/v1/rejects".to_owned(),
        }
    }
}

impl AdminClient {
    /// Prints one page of rejects, newest first, and how to get the next.
    ///
    /// # Errors
    /// When the daemon cannot be reached or answers an error.
    pub async fn rejects(&self, query: &RejectsQuery, json_out: bool) -> anyhow::Result<()> {
        let (status, answer) = self.call(reqwest::Method::GET, &query.path(), None).await?;
        if !status.is_success() {
            bail!("the admin API answered {status}: {answer}");
        }
        if json_out {
            println!("{answer}");
            return Ok(());
        }
        let items = answer
            .get("rejects")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if items.is_empty() {
            println!("no rejects");
        }
        let text = |r: &Value, k: &str| r.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        for r in &items {
            println!(
                "{:>8}  {:<8} {:<28} {:<16} {}",
                r.get("id").and_then(Value::as_i64).unwrap_or_default(),
                text(r, "source"),
                text(r, "key"),
                text(r, "phone"),
                text(r, "reason")
            );
        }
        if let Some(before) = answer.get("next_before").and_then(Value::as_i64) {
            println!("more: spoki-sync rejects --before {before}");
        }
        Ok(())
    }
}

fn print_record(record: &Value, json_out: bool) {
    if json_out {
        println!("{record}");
        return;
    }
    let get = |k: &str| record.get(k).cloned().unwrap_or(Value::Null);
    let status = get("status");
    println!(
        "command {} ({}) {} after {} attempt(s)",
        get("id").as_str().unwrap_or("?"),
        get("action").as_str().unwrap_or("?"),
        status.as_str().unwrap_or("?"),
        get("attempts")
    );
    let shown = if status == "failed" {
        get("error")
    } else {
        get("result")
    };
    match serde_json::to_string_pretty(&shown) {
        Ok(text) if !shown.is_null() => println!("{text}"),
        _ => {}
    }
}

fn human_duration(secs: f64) -> String {
    let s = secs.ceil() as u64;
    match s {
        0 => "0 s".to_owned(),
        1..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s.div_ceil(60)),
        _ => format!("{:.1} h", s as f64 / 3600.0),
    }
}

/// The status answer as lines for people.
pub fn human_status(s: &Value) -> String {
    let n = |k: &str| s.get(k).and_then(Value::as_i64).unwrap_or(0);
    let t = |k: &str| {
        s.get(k)
            .and_then(Value::as_str)
            .unwrap_or("never")
            .to_owned()
    };
    let c = |k: &str| {
        s.get("commands")
            .and_then(|c| c.get(k))
            .and_then(Value::as_i64)
            .unwrap_or(0)
    };
    let mut out = String::new();
    let eta = s.get("eta_seconds").and_then(Value::as_f64).unwrap_or(0.0);
    let _ = writeln!(
        out,
        "outbox:    {} pending, {} in flight; drained in about {} under the current limits",
        n("outbox_pending"),
        n("outbox_inflight"),
        human_duration(eta)
    );
    let _ = writeln!(
        out,
        "commands:  {} queued, {} running, {} succeeded, {} failed",
        c("queued"),
        c("running"),
        c("succeeded"),
        c("failed")
    );
    let _ = writeln!(
        out,
        "files:     {} processed, {} failed",
        n("files_processed"),
        n("files_failed")
    );
    let _ = writeln!(out, "rejected:  {}", n("rejected"));
    if let Some(fields) = s.get("custom_fields_refused").and_then(Value::as_array) {
        for f in fields {
            let text = |k: &str| f.get(k).and_then(Value::as_str).unwrap_or("?");
            let _ = writeln!(
                out,
                "REFUSED:   custom field {} (its values are not sent): {}",
                text("code"),
                text("reason")
            );
        }
    }
    let _ = writeln!(out, "last push: {}", t("last_push_at"));
    let _ = writeln!(out, "last pull: {}", t("last_pull_at"));
    let backlog = n("mirror_backlog");
    if backlog > 0 {
        let _ = writeln!(out, "mirror:    {backlog} edits waiting to be picked up");
    }
    held_deletions(&mut out, s);
    recent_files(&mut out, s);
    recent_failed_commands(&mut out, s);
    out
}

/// Deletions held by the delete guard, one line per direction.
fn held_deletions(out: &mut String, s: &Value) {
    if let Some(held) = s.get("deletes_held").and_then(Value::as_object) {
        for (direction, count) in held {
            let _ = writeln!(
                out,
                "HELD:      {count} deletions {} (more than mirror.max_delete_share); \
                 POST /v1/sync/deletes/confirm or /cancel",
                direction.replace('_', " ")
            );
        }
    }
}

/// The last files with their counts (or their error).
fn recent_files(out: &mut String, s: &Value) {
    let Some(files) = s.get("recent_files").and_then(Value::as_array) else {
        return;
    };
    if files.is_empty() {
        return;
    }
    let _ = writeln!(out, "recent files:");
    for f in files {
        let get = |k: &str| f.get(k).map(Value::to_string).unwrap_or_default();
        let name = f.get("file").and_then(Value::as_str).unwrap_or("?");
        if f.get("outcome").and_then(Value::as_str) == Some("failed") {
            let _ = writeln!(out, "  {name}: FAILED {}", get("error"));
        } else {
            let _ = writeln!(
                out,
                "  {name}: {} rows, {} accepted ({} unchanged), {} duplicates, {} rejected",
                get("rows"),
                get("accepted"),
                get("unchanged"),
                get("duplicates"),
                get("rejected")
            );
        }
    }
}

/// The last failed commands with their errors.
fn recent_failed_commands(out: &mut String, s: &Value) {
    let Some(failed) = s.get("recent_failed_commands").and_then(Value::as_array) else {
        return;
    };
    if failed.is_empty() {
        return;
    }
    let _ = writeln!(out, "recent failed commands:");
    for f in failed {
        let _ = writeln!(
            out,
            "  {} {}: {}",
            f.get("id").and_then(Value::as_str).unwrap_or("?"),
            f.get("action").and_then(Value::as_str).unwrap_or("?"),
            f.get("error").map(Value::to_string).unwrap_or_default()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn status_names_the_custom_fields_spoki_refused() {
        let text = human_status(&json!({
            "custom_fields_refused": [{"code": "REPARTO", "reason": "Spoki refused to create it (HTTP 400)"}]
        }));
        assert!(
            text.contains("REFUSED:   custom field REPARTO") && text.contains("HTTP 400"),
            "{text}"
        );
        assert!(!human_status(&json!({})).contains("REFUSED"));
    }
}
