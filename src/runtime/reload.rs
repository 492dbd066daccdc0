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
        let mut applied = Vec::new();
        let mut need_restart = Vec::new();
        let note = |changed: bool, key: &str, list: &mut Vec<String>| {
            if changed {
                list.push(key.to_owned());
            }
        };
        note(
            old.spoki.rate_limits != new.spoki.rate_limits,
            "spoki.rate_limits",
            &mut applied,
        );
        self.budgets.apply(&new);
        if old.spoki.api_key != new.spoki.api_key {
            if let Some(key) = &new.spoki.api_key {
                self.client.set_key(key.clone());
            }
            applied.push("spoki.api_key".to_owned());
        }
        if old.admin.token != new.admin.token {
            if let Some(token) = &new.admin.token {
                self.admin_token.set(token_digest(token));
            }
            applied.push("admin.token".to_owned());
        }
        note(
            old.webhooks.secret != new.webhooks.secret,
            "webhooks.secret",
            &mut applied,
        );
        note(
            old.webhooks.spoki_secret != new.webhooks.spoki_secret,
            "webhooks.spoki_secret",
            &mut applied,
        );
        self.webhook_keys.set(keys);
        if old.log.filter != new.log.filter {
            if let Some(hook) = &self.log_filter {
                hook(&new.log.filter).map_err(|e| ConfigError {
                    problems: vec![format!("log.filter: {e}")],
                })?;
            }
            applied.push("log.filter".to_owned());
        }
        self.batcher
            .update_settings(BatcherSettings::from_settings(&new));
        self.inbox.set(inbox_settings(&new));
        self.mirror.set(MirrorSettings::from_settings(&new));
        self.worker.set(worker_settings(&new));
        for (changed, key) in [
            (old.csv.settle != new.csv.settle, "csv.settle"),
            (
                old.csv.rescan_interval != new.csv.rescan_interval,
                "csv.rescan_interval",
            ),
            (
                old.csv.default_region != new.csv.default_region,
                "csv.default_region",
            ),
            (
                old.mirror.poll_interval != new.mirror.poll_interval,
                "mirror.poll_interval",
            ),
            (
                old.mirror.pull_interval != new.mirror.pull_interval,
                "mirror.pull_interval",
            ),
            (
                old.batch.max_backoff != new.batch.max_backoff,
                "batch.max_backoff",
            ),
            (
                old.commands.max_attempts != new.commands.max_attempts,
                "commands.max_attempts",
            ),
        ] {
            note(changed, key, &mut applied);
        }
        for (changed, key) in [
            (old.spoki.base_url != new.spoki.base_url, "spoki.base_url"),
            (old.spoki.timeout != new.spoki.timeout, "spoki.timeout"),
            (
                old.storage.database != new.storage.database,
                "storage.database",
            ),
            (old.csv.inbox != new.csv.inbox, "csv.inbox"),
            (old.admin.listen != new.admin.listen, "admin.listen"),
            (
                old.webhooks.listen != new.webhooks.listen,
                "webhooks.listen",
            ),
        ] {
            note(changed, key, &mut need_restart);
        }
        self.current.set(new);
        Ok(Reloaded {
            applied,
            need_restart,
        })
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
