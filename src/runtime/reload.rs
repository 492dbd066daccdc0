//! Configuration reload (SIGHUP, `POST /v1/reload`): the file and the environment are read
//! and checked again; a bad configuration is refused, naming every bad key, and the running
//! one stays. A good one takes effect at once for rate limits, intervals, retry settings, the
//! log filter and the secrets. Addresses, paths and the Spoki URL need a restart: the log says
//! so when they changed.

use std::path::PathBuf;
use std::sync::Arc;

use crate::commands::WorkerSettings;
use crate::config::{ConfigError, Secret, Settings};
use crate::live::Live;
use crate::outbound::batcher::{Batcher, BatcherSettings};
use crate::outbound::limits::Budgets;
use crate::reverse::MirrorSettings;
use crate::sources::inbox::InboxSettings;
use crate::sources::webhooks::WebhookKeys;
use crate::spoki::SpokiClient;

/// Applies a new log filter (`log.filter`); returns why it cannot.
pub type LogFilterHook = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// What the admin API compares offered tokens with (SHA-256, in constant time): the token
/// itself is kept nowhere after start or reload.
pub fn token_digest(token: &Secret) -> [u8; 32] {
    digest(token.expose())
}

pub fn digest(text: &str) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(text.as_bytes()).into()
}

/// The names of the keys whose values differ between `$old` and `$new`.
macro_rules! changed_keys {
    ($old:ident, $new:ident; $($($field:ident).+),+ $(,)?) => {{
        let mut keys: Vec<String> = Vec::new();
        $(
            if $old.$($field).+ != $new.$($field).+ {
                keys.push(stringify!($($field).+).replace(' ', ""));
            }
        )+
        keys
    }};
}

/// The keys a reload changed: those now in force, and those that need a restart.
fn differences(old: &Settings, new: &Settings) -> Reloaded {
    let applied = changed_keys!(old, new;
        spoki.rate_limits, spoki.api_key, admin.token, webhooks.secret, webhooks.spoki_secret,
        log.filter, csv.settle, csv.rescan_interval, csv.default_region,
        csv.create_custom_fields, csv.max_new_custom_fields, mirror.poll_interval,
        mirror.pull_interval, batch.max_backoff, commands.max_attempts,
    );
    let mut need_restart = changed_keys!(old, new;
        spoki.base_url, spoki.timeout, storage.database, storage.check_interval,
        storage.wal_max_size, storage.retention, csv.inbox, admin.listen, webhooks.listen,
    );
    for (section, limits_changed) in [
        ("admin", old.admin.limits != new.admin.limits),
        ("webhooks", old.webhooks.limits != new.webhooks.limits),
    ] {
        if limits_changed {
            need_restart.push(format!(
                "{section}.max_connections/header_timeout/body_timeout"
            ));
        }
    }
    Reloaded {
        applied,
        need_restart,
    }
}

pub fn inbox_settings(s: &Settings) -> InboxSettings {
    InboxSettings {
        root: s.csv.inbox.clone(),
        region: s.csv.default_region,
        settle: s.csv.settle,
        create_custom_fields: s.csv.create_custom_fields,
        rescan_interval: s.csv.rescan_interval,
        max_new_custom_fields: s.csv.max_new_custom_fields,
    }
}

pub fn worker_settings(s: &Settings) -> WorkerSettings {
    WorkerSettings {
        max_attempts: s.commands.max_attempts,
        max_backoff: s.batch.max_backoff,
    }
}

/// Everything a reload reaches.
pub struct Reloader {
    pub source: Option<(PathBuf, bool)>,
    pub current: Live<Settings>,
    pub budgets: Budgets,
    pub batcher: Batcher,
    pub client: SpokiClient,
    pub inbox: Live<InboxSettings>,
    pub mirror: Live<MirrorSettings>,
    pub worker: Live<WorkerSettings>,
    pub admin_token: Live<[u8; 32]>,
    pub webhook_keys: Live<WebhookKeys>,
    pub log_filter: Option<LogFilterHook>,
    /// One reload at a time.
    pub lock: tokio::sync::Mutex<()>,
}

/// What a reload did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Reloaded {
    /// Keys (never values) whose change took effect.
    pub applied: Vec<String>,
    /// Keys that changed but need a restart.
    pub need_restart: Vec<String>,
}

impl Reloader {
    /// Reads the configuration again and applies it.
    ///
    /// # Errors
    /// Every bad key, or no configuration file to read; the running settings stay.
    pub async fn reload(&self) -> Result<Reloaded, ConfigError> {
        let _one = self.lock.lock().await;
        let Some((path, required)) = &self.source else {
            return Err(ConfigError {
                problems: vec!["no configuration file to reload from".to_owned()],
            });
        };
        let new = Settings::load(path, *required)?;
        new.check_runnable()?;
        let keys =
            WebhookKeys::from_settings(&new).map_err(|p| ConfigError { problems: vec![p] })?;
        let old = self.current.get();
        // The one step that can still fail goes first, so a refused file changes nothing.
        if old.log.filter != new.log.filter
            && let Some(hook) = &self.log_filter
        {
            hook(&new.log.filter).map_err(|e| ConfigError {
                problems: vec![format!("log.filter: {e}")],
            })?;
        }
        if old.spoki.api_key != new.spoki.api_key
            && let Some(key) = &new.spoki.api_key
        {
            self.client.set_key(key.clone());
        }
        if old.admin.token != new.admin.token
            && let Some(token) = &new.admin.token
        {
            self.admin_token.set(token_digest(token));
        }
        self.webhook_keys.set(keys);
        self.budgets.apply(&new);
        self.batcher
            .update_settings(BatcherSettings::from_settings(&new));
        self.inbox.set(inbox_settings(&new));
        self.mirror.set(MirrorSettings::from_settings(&new));
        self.worker.set(worker_settings(&new));
        let reloaded = differences(&old, &new);
        self.current.set(new);
        Ok(reloaded)
    }

    /// Reloads and logs the outcome (SIGHUP).
    pub async fn reload_and_log(&self) {
        crate::runtime::service::notify("RELOADING=1");
        match self.reload().await {
            Ok(r) => tracing::info!(
                applied = ?r.applied,
                need_restart = ?r.need_restart,
                "configuration reloaded"
            ),
            Err(e) => tracing::error!(
                problems = %e,
                "configuration NOT reloaded; the running one stays"
            ),
        }
        crate::runtime::service::notify("READY=1");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reload_says_what_took_effect_and_what_needs_a_restart() {
        let old = Settings::from_toml("").expect("defaults");
        let new = Settings::from_toml(
            "[csv]\nsettle = \"2s\"\n[webhooks]\nheader_timeout = \"3s\"\n\
             [storage.retention]\nrejects = \"10d\"\n",
        )
        .expect("parses");
        let r = differences(&old, &new);
        assert_eq!(r.applied, vec!["csv.settle"]);
        assert_eq!(
            r.need_restart,
            vec![
                "storage.retention",
                "webhooks.max_connections/header_timeout/body_timeout"
            ]
        );
        let same = differences(&old, &old);
        assert!(same.applied.is_empty() && same.need_restart.is_empty());
    }
}
