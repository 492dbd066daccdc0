//! Typed settings: defaults → TOML file → `SPOKI_SYNC__SECTION__KEY` environment. Everything is
//! checked at start and every bad key is named. Secrets are wrapped so they never print.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::normalise::DefaultRegion;
use crate::spoki::actions::Action;

pub const DEFAULT_CONFIG_PATH: &str = "/etc/spoki-sync/config.toml";

pub use spoki_api::{RateLimit, Secret, parse_duration};

/// The first bytes of every SQLite database file.
const SQLITE_HEADER: &[u8] = b"SQLite format 3\0";

/// Why `path` cannot be the database, if it cannot: a folder, or a non-empty file that does
/// not start with SQLite's header. A missing or empty file is fine (it is created).
pub fn sqlite_file_problem(path: &Path) -> Option<String> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => return Some(format!("cannot read {}: {e}", path.display())),
    };
    if meta.is_dir() {
        return Some(format!("{} is a folder, not a file", path.display()));
    }
    if meta.len() == 0 {
        return None;
    }
    use std::io::Read as _;
    let mut head = Vec::with_capacity(SQLITE_HEADER.len());
    let read = std::fs::File::open(path)
        .and_then(|f| f.take(SQLITE_HEADER.len() as u64).read_to_end(&mut head));
    match read {
        Err(e) => Some(format!("cannot read {}: {e}", path.display())),
        Ok(_) if head == SQLITE_HEADER => None,
        Ok(_) => Some(format!(
            "{} is not a SQLite database (it does not start with the SQLite header)",
            path.display()
        )),
    }
}

/// Which side wins a field changed on both sides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConflictWinner {
    Mirror,
    Spoki,
}

#[derive(Clone, Debug)]
pub struct Settings {
    pub spoki: SpokiSettings,
    pub storage: StorageSettings,
    pub csv: CsvSettings,
    pub mirror: MirrorSettings,
    pub admin: AdminSettings,
    pub webhooks: WebhookSettings,
    pub batch: BatchSettings,
    pub commands: CommandSettings,
    pub log: LogSettings,
}

#[derive(Clone, Debug)]
pub struct SpokiSettings {
    pub base_url: reqwest::Url,
    pub api_key: Option<Secret>,
    pub timeout: Duration,
    /// Every action's limit: the documented default unless overridden.
    pub rate_limits: BTreeMap<String, RateLimit>,
}

#[derive(Clone, Debug)]
pub struct StorageSettings {
    pub database: PathBuf,
    /// How often the database file and its schema are checked (and a big WAL truncated).
    pub check_interval: Duration,
    /// A WAL above this many bytes is checkpointed and truncated at the next check.
    pub wal_max_size: u64,
    pub retention: RetentionSettings,
    /// `run --allow-new-database`: start even when the sidecar `<db>.id` says another
    /// database was there (not a configuration key).
    pub allow_new_database: bool,
}

/// How long finished rows are kept; zero keeps them for ever.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetentionSettings {
    pub rejects: Duration,
    /// Finished (succeeded or failed) commands.
    pub commands: Duration,
    /// Inbox files' checkpoints, once the file has moved out.
    pub files: Duration,
    /// Webhook delivery ids kept to apply each delivery once.
    pub webhook_ids: Duration,
}

#[derive(Clone, Debug)]
pub struct CsvSettings {
    pub inbox: PathBuf,
    pub default_region: DefaultRegion,
    pub settle: Duration,
    pub create_custom_fields: bool,
    pub rescan_interval: Duration,
    /// A file, a webhook delivery or a mirror row bringing more custom-field codes new to the
    /// daemon than this is refused with the reason, instead of queueing that many creations
    /// (Spoki allows about 5 a minute).
    pub max_new_custom_fields: usize,
}

#[derive(Clone, Debug)]
pub struct MirrorSettings {
    pub poll_interval: Duration,
    pub pull_interval: Duration,
    pub propagate_deletes: bool,
    pub max_delete_share: f64,
    pub conflict_winner: ConflictWinner,
}

#[derive(Clone, Debug)]
pub struct AdminSettings {
    pub listen: SocketAddr,
    pub token: Option<Secret>,
    pub limits: ListenerSettings,
}

#[derive(Clone, Debug)]
pub struct WebhookSettings {
    pub listen: SocketAddr,
    pub secret: Option<Secret>,
    pub spoki_secret: Option<Secret>,
    pub limits: ListenerSettings,
}

/// What one HTTP listener allows (`<section>.max_connections`, `.header_timeout`,
/// `.body_timeout`); read at start only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenerSettings {
    /// Connections held at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// A request head (or the next one on a kept-alive connection) must arrive within this.
    pub header_timeout: Duration,
    /// A request body must arrive within this.
    pub body_timeout: Duration,
}

#[derive(Clone, Debug)]
pub struct BatchSettings {
    /// While at most this many contacts wait, they go one by one through Create or Update
    /// Contact instead of spending the (1/min) bulk slot.
    pub single_max_pending: usize,
    /// Upper bound of the retry backoff after a 5xx or a timeout.
    pub max_backoff: Duration,
}

#[derive(Clone, Debug)]
pub struct CommandSettings {
    /// Failed attempts (5xx, timeouts, broken connections; 429s do not count) before a queued
    /// command is given up and marked failed.
    pub max_attempts: u32,
}

#[derive(Clone, Debug)]
pub struct LogSettings {
    pub filter: String,
    pub format: LogFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Auto,
    Human,
    Json,
}

/// The file as written: every value optional, strings where a unit needs parsing.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawSettings {
    spoki: RawSpoki,
    storage: RawStorage,
    csv: RawCsv,
    mirror: RawMirror,
    admin: RawAdmin,
    webhooks: RawWebhooks,
    batch: RawBatch,
    commands: RawCommands,
    log: RawLog,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawCommands {
    max_attempts: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawSpoki {
    base_url: Option<String>,
    api_key: Option<String>,
    timeout: Option<String>,
    rate_limits: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawStorage {
    database: Option<String>,
    check_interval: Option<String>,
    wal_max_size: Option<String>,
    retention: RawRetention,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawRetention {
    rejects: Option<String>,
    commands: Option<String>,
    files: Option<String>,
    webhook_ids: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawCsv {
    inbox: Option<String>,
    default_region: Option<String>,
    settle: Option<String>,
    create_custom_fields: Option<Flag>,
    rescan_interval: Option<String>,
    max_new_custom_fields: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawMirror {
    poll_interval: Option<String>,
    pull_interval: Option<String>,
    propagate_deletes: Option<Flag>,
    max_delete_share: Option<String>,
    conflict_winner: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawAdmin {
    listen: Option<String>,
    token: Option<String>,
    max_connections: Option<String>,
    header_timeout: Option<String>,
    body_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawWebhooks {
    listen: Option<String>,
    secret: Option<String>,
    spoki_secret: Option<String>,
    max_connections: Option<String>,
    header_timeout: Option<String>,
    body_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawBatch {
    single_max_pending: Option<String>,
    max_backoff: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawLog {
    filter: Option<String>,
    format: Option<String>,
}

/// A boolean that may arrive as a TOML bool or as text from the environment.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Flag {
    Bool(bool),
    Text(String),
}

/// Every problem found in a configuration, each naming its key.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration: {}", self.problems.join("; "))
    }
}

/// Where the configuration file is: `--config`, else `SPOKI_SYNC_CONFIG`, else the default.
/// An explicitly named file must exist; the default one may be absent.
pub fn resolve_path(cli: Option<&Path>) -> (PathBuf, bool) {
    if let Some(p) = cli {
        return (p.to_path_buf(), true);
    }
    match std::env::var_os("SPOKI_SYNC_CONFIG") {
        Some(p) if !p.is_empty() => (PathBuf::from(p), true),
        _ => (PathBuf::from(DEFAULT_CONFIG_PATH), false),
    }
}

impl Settings {
    /// Loads the file (if any) and the environment, then checks every key.
    pub fn load(path: &Path, required: bool) -> Result<Settings, ConfigError> {
        let fail = |msg: String| ConfigError {
            problems: vec![msg],
        };
        if required && !path.exists() {
            return Err(fail(format!(
                "config file {} does not exist",
                path.display()
            )));
        }
        let built = config::Config::builder()
            .add_source(
                config::File::from(path)
                    .format(config::FileFormat::Toml)
                    .required(required),
            )
            .add_source(
                config::Environment::with_prefix("SPOKI_SYNC")
                    .prefix_separator("__")
                    .separator("__"),
            )
            .build()
            .map_err(|e| fail(redact(&e.to_string())))?;
        let (mut raw, problems) = raw_settings(built)?;
        if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") {
            raw.fill_from_credentials(Path::new(&dir));
        }
        let mut settings = finish(raw, problems)?;
        if path.is_file() {
            settings.resolve_relative_to(path);
        }
        Ok(settings)
    }

    /// Makes relative `storage.database` and `csv.inbox` relative to `file`'s folder.
    fn resolve_relative_to(&mut self, file: &Path) {
        let Some(base) = file.parent().and_then(|p| {
            std::path::absolute(if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            })
            .ok()
        }) else {
            return;
        };
        for path in [&mut self.storage.database, &mut self.csv.inbox] {
            if path.is_relative() {
                let joined = base.join(path.strip_prefix(".").unwrap_or(path));
                *path = joined;
            }
        }
    }

    /// Settings for tests and the demo: defaults with the given overrides applied as TOML.
    pub fn from_toml(text: &str) -> Result<Settings, ConfigError> {
        let (raw, problems) = toml_from_str(text)?;
        finish(raw, problems)
    }

    pub fn limit(&self, action: Action) -> RateLimit {
        self.spoki
            .rate_limits
            .get(action.name())
            .copied()
            .unwrap_or_else(|| action.default_limit())
    }

    /// Problems with the paths `run` writes: the database's folder and the inbox must be
    /// writable (or creatable). Each problem names its key.
    pub fn check_paths(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let db_dir = match self.storage.database.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if let Err(e) = writable_dir(&db_dir) {
            problems.push(format!(
                "storage.database: its folder {} is not writable ({e})",
                db_dir.display()
            ));
        }
        if let Some(problem) = sqlite_file_problem(&self.storage.database) {
            problems.push(format!("storage.database: {problem}"));
        }
        if let Err(e) = writable_dir(&self.csv.inbox) {
            problems.push(format!(
                "csv.inbox: {} is not a writable folder ({e})",
                self.csv.inbox.display()
            ));
        }
        problems
    }

    /// What `run` needs beyond a valid file.
    pub fn check_runnable(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if self.spoki.api_key.is_none() {
            problems
                .push("spoki.api_key: required by `run` (or SPOKI_SYNC__SPOKI__API_KEY)".into());
        }
        if self.admin.token.is_none() {
            problems.push("admin.token: required by `run` (or SPOKI_SYNC__ADMIN__TOKEN)".into());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems })
        }
    }
}

/// Every key the configuration takes, read from the types that parse it; a table of free
/// keys is written `section.table.<action>`.
pub fn known_keys() -> Vec<String> {
    crate::introspect::keys::<RawSettings>()
        .into_iter()
        .map(|k| {
            if k.free_map {
                format!("{}.<action>", k.path)
            } else {
                k.path
            }
        })
        .collect()
}

/// Removes the keys of `tree` (at `prefix`) that are not in `known`, naming each in
/// `problems` with the closest known key.
fn strip_unknown(
    tree: &mut config::Map<String, config::Value>,
    prefix: &str,
    known: &[String],
    problems: &mut Vec<String>,
) {
    let names: Vec<String> = tree.keys().cloned().collect();
    for name in names {
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        let leaf = known.contains(&path);
        let free = known.iter().any(|k| *k == format!("{path}.<action>"));
        let section = known.iter().any(|k| k.starts_with(&format!("{path}.")));
        if leaf || free {
            continue;
        }
        if section {
            if let Some(config::Value {
                kind: config::ValueKind::Table(sub),
                ..
            }) = tree.get_mut(&name)
            {
                strip_unknown(sub, &path, known, problems);
            }
            continue;
        }
        tree.remove(&name);
        let near = known
            .iter()
            .filter(|k| !k.ends_with(">"))
            .map(|k| (crate::spoki::actions::edit_distance(&path, k), k))
            .min();
        match near {
            Some((d, k)) if d <= path.len() / 3 + 1 => {
                problems.push(format!("{path}: unknown key; did you mean {k}?"));
            }
            _ => problems.push(format!(
                "{path}: unknown key (docs/configuration.md lists them all)"
            )),
        }
    }
}

fn toml_from_str(text: &str) -> Result<(RawSettings, Vec<String>), ConfigError> {
    let built = config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Toml))
        .build()
        .map_err(|e| ConfigError {
            problems: vec![redact(&e.to_string())],
        })?;
    raw_settings(built)
}

/// The file as written, and the unknown keys it held (set aside, so that they are reported
/// together with the invalid values instead of hiding them).
fn raw_settings(built: config::Config) -> Result<(RawSettings, Vec<String>), ConfigError> {
    let fail = |msg: String| ConfigError {
        problems: vec![msg],
    };
    let mut tree: config::Map<String, config::Value> = built
        .try_deserialize()
        .map_err(|e| fail(redact(&e.to_string())))?;
    let mut problems = Vec::new();
    strip_unknown(&mut tree, "", &known_keys(), &mut problems);
    match config::Value::new(None, config::ValueKind::Table(tree)).try_deserialize() {
        Ok(raw) => Ok((raw, problems)),
        Err(e) => {
            problems.push(redact(&e.to_string()));
            Err(ConfigError { problems })
        }
    }
}

/// Checks every value; every problem, unknown keys included, is reported at once.
fn finish(raw: RawSettings, mut problems: Vec<String>) -> Result<Settings, ConfigError> {
    match raw.validate() {
        Ok(settings) if problems.is_empty() => Ok(settings),
        Ok(_) => Err(ConfigError { problems }),
        Err(e) => {
            problems.extend(e.problems);
            Err(ConfigError { problems })
        }
    }
}

/// The `config` crate quotes offending values in its messages; a secret must not leak that way.
fn redact(message: &str) -> String {
    let lower = message.to_ascii_lowercase();
    if ["api_key", "token", "secret"]
        .iter()
        .any(|k| lower.contains(k))
    {
        match message.find(" for key ") {
            Some(i) => format!("invalid value{}", &message[i..]),
            None => "invalid value for a secret key (value not shown)".to_string(),
        }
    } else {
        message.to_string()
    }
}

struct Checker {
    problems: Vec<String>,
}

impl Checker {
    fn take<T>(&mut self, key: &str, result: Result<T, String>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.problems.push(format!("{key}: {e}"));
                None
            }
        }
    }

    fn duration(&mut self, key: &str, value: &Option<String>, default: &str) -> Duration {
        let text = value.as_deref().unwrap_or(default);
        self.take(key, parse_duration(text)).unwrap_or_default()
    }

    fn count(&mut self, key: &str, value: &Option<String>, default: usize) -> usize {
        match value.as_deref() {
            None => default,
            Some(text) => self
                .take(
                    key,
                    text.trim()
                        .parse::<usize>()
                        .map_err(|_| format!("{text:?} is not a whole number")),
                )
                .unwrap_or(default),
        }
    }

    /// `<section>.max_connections`, `.header_timeout`, `.body_timeout`.
    fn listener(
        &mut self,
        section: &str,
        raw: [&Option<String>; 3],
        default_connections: usize,
    ) -> ListenerSettings {
        let key = format!("{section}.max_connections");
        let text = raw[0]
            .clone()
            .unwrap_or_else(|| default_connections.to_string());
        let max_connections = self
            .take(
                &key,
                text.trim()
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=100_000).contains(n))
                    .ok_or_else(|| format!("{text:?} is not a whole number from 1 to 100000")),
            )
            .unwrap_or(default_connections);
        let mut timeout = |name: &str, value: &Option<String>, default: &str| {
            let key = format!("{section}.{name}");
            let d = self.duration(&key, value, default);
            if d.is_zero() {
                self.problems.push(format!("{key}: must be above zero"));
            }
            d
        };
        let header_timeout = timeout("header_timeout", raw[1], "10s");
        let body_timeout = timeout("body_timeout", raw[2], "30s");
        ListenerSettings {
            max_connections,
            header_timeout,
            body_timeout,
        }
    }

    fn flag(&mut self, key: &str, value: &Option<Flag>, default: bool) -> bool {
        match value {
            None => default,
            Some(Flag::Bool(b)) => *b,
            Some(Flag::Text(t)) => match t.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => true,
                "false" | "0" | "no" | "off" => false,
                _ => {
                    self.problems
                        .push(format!("{key}: {t:?} is not true or false"));
                    default
                }
            },
        }
    }

    fn addr(&mut self, key: &str, value: &Option<String>, default: &str) -> SocketAddr {
        let text = value.as_deref().unwrap_or(default);
        self.take(
            key,
            text.trim()
                .parse()
                .map_err(|_| format!("{text:?} is not an address like 127.0.0.1:8780")),
        )
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    fn secret(&mut self, key: &str, value: &Option<String>) -> Option<Secret> {
        match value.as_deref().map(str::trim) {
            None => None,
            Some("") => {
                self.problems.push(format!("{key}: must not be empty"));
                None
            }
            Some(v) => Some(Secret::new(v)),
        }
    }
}

/// systemd credentials (`LoadCredential=`) that fill a secret the file and the environment
/// leave unset: file name → key.
pub const CREDENTIALS: [(&str, &str); 4] = [
    ("spoki_api_key", "spoki.api_key"),
    ("admin_token", "admin.token"),
    ("webhooks_secret", "webhooks.secret"),
    ("webhooks_spoki_secret", "webhooks.spoki_secret"),
];

impl RawSettings {
    /// Reads secrets from `$CREDENTIALS_DIRECTORY` for the keys still unset.
    fn fill_from_credentials(&mut self, dir: &Path) {
        let read = |name: &str| {
            std::fs::read_to_string(dir.join(name))
                .ok()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
        };
        for (name, _) in CREDENTIALS {
            let slot = match name {
                "spoki_api_key" => &mut self.spoki.api_key,
                "admin_token" => &mut self.admin.token,
                "webhooks_secret" => &mut self.webhooks.secret,
                _ => &mut self.webhooks.spoki_secret,
            };
            if slot.is_none() {
                *slot = read(name);
            }
        }
    }

    fn validate(self) -> Result<Settings, ConfigError> {
        let mut c = Checker {
            problems: Vec::new(),
        };
        // Every section is checked, so every problem is named at once.
        let spoki = self.spoki.check(&mut c);
        let storage = self.storage.check(&mut c);
        let csv = self.csv.check(&mut c);
        let mirror = self.mirror.check(&mut c);
        let admin = self.admin.check(&mut c);
        let webhooks = self.webhooks.check(&mut c);
        let batch = self.batch.check(&mut c);
        let commands = self.commands.check(&mut c);
        let log = self.log.check(&mut c);
        if !c.problems.is_empty() {
            return Err(ConfigError {
                problems: c.problems,
            });
        }
        let (Some(spoki), Some(csv)) = (spoki, csv) else {
            return Err(ConfigError {
                problems: vec!["internal: a checked value went missing".into()],
            });
        };
        Ok(Settings {
            spoki,
            storage,
            csv,
            mirror,
            admin,
            webhooks,
            batch,
            commands,
            log,
        })
    }
}

impl RawSpoki {
    fn check(self, c: &mut Checker) -> Option<SpokiSettings> {
        let base_text = self
            .base_url
            .as_deref()
            .unwrap_or("https://api.spoki.com/api/1/");
        let base_url = c
            .take(
                "spoki.base_url",
                reqwest::Url::parse(base_text)
                    .map_err(|e| format!("{base_text:?} is not a URL ({e})"))
                    .and_then(|u| {
                        if u.scheme() == "http" || u.scheme() == "https" {
                            Ok(u)
                        } else {
                            Err(format!("{base_text:?} must be http or https"))
                        }
                    }),
            )
            .map(|mut u| {
                if !u.path().ends_with('/') {
                    let p = format!("{}/", u.path());
                    u.set_path(&p);
                }
                u
            });
        let api_key = c.secret("spoki.api_key", &self.api_key);
        let timeout = c.duration("spoki.timeout", &self.timeout, "30s");
        let mut rate_limits: BTreeMap<String, RateLimit> = Action::ALL
            .iter()
            .map(|a| (a.name().to_string(), a.default_limit()))
            .collect();
        for (action, text) in &self.rate_limits {
            let key = format!("spoki.rate_limits.{action}");
            if !rate_limits.contains_key(action.as_str()) {
                let near = Action::closest(action);
                let hint = if near.is_empty() {
                    "`spoki-sync actions` lists them".to_owned()
                } else {
                    format!("did you mean {}?", near.join(", "))
                };
                c.problems.push(format!("{key}: unknown action; {hint}"));
                continue;
            }
            if let Some(limit) = c.take(&key, RateLimit::parse(text)) {
                rate_limits.insert(action.clone(), limit);
            }
        }

        Some(SpokiSettings {
            base_url: base_url?,
            api_key,
            timeout,
            rate_limits,
        })
    }
}

impl RawStorage {
    fn check(self, c: &mut Checker) -> StorageSettings {
        let database = PathBuf::from(self.database.as_deref().unwrap_or("./spoki-sync.db"));
        let check_interval = c.duration("storage.check_interval", &self.check_interval, "10s");
        if check_interval.is_zero() {
            c.problems
                .push("storage.check_interval: must be above zero".into());
        }
        let wal_text = self.wal_max_size.as_deref().unwrap_or("64MiB");
        let wal_max_size = c
            .take("storage.wal_max_size", parse_size(wal_text))
            .unwrap_or(64 << 20);
        let r = &self.retention;
        let retention = RetentionSettings {
            rejects: c.duration("storage.retention.rejects", &r.rejects, "90d"),
            commands: c.duration("storage.retention.commands", &r.commands, "30d"),
            files: c.duration("storage.retention.files", &r.files, "90d"),
            webhook_ids: c.duration("storage.retention.webhook_ids", &r.webhook_ids, "7d"),
        };
        // Senders retry within the signature tolerance (5 minutes): an id must outlive it.
        if !retention.webhook_ids.is_zero() && retention.webhook_ids < Duration::from_secs(3600) {
            c.problems.push(
                "storage.retention.webhook_ids: must be at least 1h (or 0s: kept for ever), \
                 longer than any sender retries"
                    .into(),
            );
        }
        StorageSettings {
            database,
            check_interval,
            wal_max_size,
            retention,
            allow_new_database: false,
        }
    }
}

impl RawCsv {
    fn check(self, c: &mut Checker) -> Option<CsvSettings> {
        let inbox = PathBuf::from(self.inbox.as_deref().unwrap_or("./inbox"));
        let region_text = self.default_region.as_deref().unwrap_or("IT");
        let default_region = c.take(
            "csv.default_region",
            DefaultRegion::parse(region_text)
                .ok_or_else(|| format!("{region_text:?} is not an ISO 3166 region like IT")),
        );
        let settle = c.duration("csv.settle", &self.settle, "500ms");
        let create_custom_fields =
            c.flag("csv.create_custom_fields", &self.create_custom_fields, true);
        let rescan_interval = c.duration("csv.rescan_interval", &self.rescan_interval, "30s");
        let max_new_custom_fields =
            c.count("csv.max_new_custom_fields", &self.max_new_custom_fields, 50);
        if rescan_interval.is_zero() {
            c.problems
                .push("csv.rescan_interval: must be above zero".into());
        }

        Some(CsvSettings {
            inbox,
            default_region: default_region?,
            settle,
            create_custom_fields,
            rescan_interval,
            max_new_custom_fields,
        })
    }
}

impl RawMirror {
    fn check(self, c: &mut Checker) -> MirrorSettings {
        let poll_interval = c.duration("mirror.poll_interval", &self.poll_interval, "1s");
        let pull_interval = c.duration("mirror.pull_interval", &self.pull_interval, "15m");
        let propagate_deletes = c.flag("mirror.propagate_deletes", &self.propagate_deletes, false);
        let share_text = self.max_delete_share.as_deref().unwrap_or("10%");
        let max_delete_share = c
            .take("mirror.max_delete_share", parse_share(share_text))
            .unwrap_or(0.1);
        let winner_text = self.conflict_winner.as_deref().unwrap_or("mirror");
        let conflict_winner = c
            .take(
                "mirror.conflict_winner",
                match winner_text.trim() {
                    "mirror" => Ok(ConflictWinner::Mirror),
                    "spoki" => Ok(ConflictWinner::Spoki),
                    other => Err(format!("{other:?} is neither mirror nor spoki")),
                },
            )
            .unwrap_or(ConflictWinner::Mirror);

        MirrorSettings {
            poll_interval,
            pull_interval,
            propagate_deletes,
            max_delete_share,
            conflict_winner,
        }
    }
}

impl RawAdmin {
    fn check(self, c: &mut Checker) -> AdminSettings {
        let admin_listen = c.addr("admin.listen", &self.listen, "127.0.0.1:8780");
        let token = c.secret("admin.token", &self.token);
        let admin_limits = c.listener(
            "admin",
            [
                &self.max_connections,
                &self.header_timeout,
                &self.body_timeout,
            ],
            64,
        );
        AdminSettings {
            listen: admin_listen,
            token,
            limits: admin_limits,
        }
    }
}

impl RawWebhooks {
    fn check(self, c: &mut Checker) -> WebhookSettings {
        let webhooks_limits = c.listener(
            "webhooks",
            [
                &self.max_connections,
                &self.header_timeout,
                &self.body_timeout,
            ],
            512,
        );
        let webhooks_listen = c.addr("webhooks.listen", &self.listen, "127.0.0.1:8781");
        let secret = c.secret("webhooks.secret", &self.secret);
        if let Some(s) = &secret {
            use base64::Engine as _;
            let decodes = s.expose().strip_prefix("whsec_").is_some_and(|b64| {
                base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .is_ok_and(|key| !key.is_empty())
            });
            if !decodes {
                c.problems
                    .push("webhooks.secret: must look like whsec_<base64>".into());
            }
        }
        let spoki_secret = c.secret("webhooks.spoki_secret", &self.spoki_secret);

        WebhookSettings {
            listen: webhooks_listen,
            secret,
            spoki_secret,
            limits: webhooks_limits,
        }
    }
}

impl RawBatch {
    fn check(self, c: &mut Checker) -> BatchSettings {
        let single_max_pending = c.count("batch.single_max_pending", &self.single_max_pending, 20);
        let max_backoff = c.duration("batch.max_backoff", &self.max_backoff, "5m");

        BatchSettings {
            single_max_pending,
            max_backoff,
        }
    }
}

impl RawCommands {
    fn check(self, c: &mut Checker) -> CommandSettings {
        let attempts_text = self.max_attempts.as_deref().unwrap_or("10");
        let max_attempts = c
            .take(
                "commands.max_attempts",
                attempts_text
                    .trim()
                    .parse::<u32>()
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| {
                        format!("{attempts_text:?} is not a whole number of at least 1")
                    }),
            )
            .unwrap_or(10);

        CommandSettings { max_attempts }
    }
}

impl RawLog {
    fn check(self, c: &mut Checker) -> LogSettings {
        let filter = self.filter.unwrap_or_else(|| "info".to_string());
        let format = match self.format.as_deref().unwrap_or("auto") {
            "auto" => LogFormat::Auto,
            "human" => LogFormat::Human,
            "json" => LogFormat::Json,
            other => {
                c.problems
                    .push(format!("log.format: {other:?} is not auto, human or json"));
                LogFormat::Auto
            }
        };

        LogSettings { filter, format }
    }
}

fn parse_share(text: &str) -> Result<f64, String> {
    let t = text.trim();
    let value = match t.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|v| v / 100.0),
        None => t.parse::<f64>(),
    }
    .map_err(|_| format!("{text:?} is not a share like 10% or 0.1"))?;
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!("{text:?} must be between 0% and 100%"))
    }
}

/// A size in bytes: `1048576`, `512KiB`, `64MiB`, `1GiB` (KB, MB, GB are read the same).
fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|ch: char| !ch.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return Err(format!("{text:?} is not a size like 64MiB")),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| format!("{text:?} is not a size like 64MiB"))
}

/// Whether files can be created in `dir`: an existing folder is probed with a temporary file;
/// a missing one must have a writable existing ancestor (it is created at start).
fn writable_dir(dir: &Path) -> Result<(), String> {
    if dir.exists() {
        if !dir.is_dir() {
            return Err("not a folder".to_owned());
        }
        return tempfile::NamedTempFile::new_in(dir)
            .map(drop)
            .map_err(|e| e.to_string());
    }
    match dir.ancestors().skip(1).find(|a| a.exists()) {
        Some(parent) if !parent.as_os_str().is_empty() => writable_dir(parent),
        _ => writable_dir(Path::new(".")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_contract() {
        let s = Settings::from_toml("").expect("empty config is valid");
        assert_eq!(s.spoki.base_url.as_str(), "https://api.spoki.com/api/1/");
        assert_eq!(s.spoki.timeout, Duration::from_secs(30));
        assert_eq!(s.csv.settle, Duration::from_millis(500));
        assert_eq!(s.limit(Action::BulkSyncContacts), RateLimit::per_minute(1));
        assert_eq!(
            s.limit(Action::CreateOrUpdateContact),
            RateLimit::per_minute(120)
        );
        assert_eq!(s.mirror.max_delete_share, 0.1);
        assert_eq!(s.admin.listen.to_string(), "127.0.0.1:8780");
        assert!(s.csv.create_custom_fields);
    }

    #[test]
    fn every_bad_key_is_named() {
        let err = Settings::from_toml(
            r#"
            [spoki]
            timeout = "soon"
            rate_limits = { bulk_sync_contacts = "fast", no_such_action = "1/1s" }
            [csv]
            default_region = "ZZ"
            [admin]
            listen = "localhost"
            "#,
        )
        .expect_err("broken config");
        let all = err.problems.join("\n");
        for key in [
            "spoki.timeout",
            "spoki.rate_limits.bulk_sync_contacts",
            "spoki.rate_limits.no_such_action",
            "csv.default_region",
            "admin.listen",
        ] {
            assert!(all.contains(key), "{key} not named in:\n{all}");
        }
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Settings::from_toml("[spoki]\napi_key = \"abcdef0123\"\n").expect("valid");
        assert!(!format!("{s:?}").contains("abcdef0123"));
    }

    #[test]
    fn an_accepted_webhooks_secret_decodes() {
        // Found while writing the config fuzz target (fuzz/seeds/config/whsec-blank.toml): the
        // check trimmed the base64 after `whsec_`, `webhooks::decode_whsec` did not, so a
        // config that passed the check then failed when the webhook keys were built.
        let s = Settings::from_toml("[webhooks]\nsecret = \"whsec_ a2V5\"\n").expect("valid");
        let secret = s.webhooks.secret.expect("set");
        assert_eq!(
            crate::sources::webhooks::decode_whsec(&secret).expect("decodes"),
            b"key"
        );
    }

    #[test]
    fn storage_defaults_and_sizes() {
        let s = Settings::from_toml("").expect("defaults");
        assert_eq!(s.storage.retention.rejects, Duration::from_secs(90 * 86400));
        assert_eq!(
            s.storage.retention.commands,
            Duration::from_secs(30 * 86400)
        );
        assert_eq!(s.storage.retention.files, Duration::from_secs(90 * 86400));
        assert_eq!(
            s.storage.retention.webhook_ids,
            Duration::from_secs(7 * 86400)
        );
        assert_eq!(s.storage.wal_max_size, 64 << 20);
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert!(parse_size("big").is_err());
        let err = Settings::from_toml(
            "[storage]\nwal_max_size = \"lots\"\n[storage.retention]\nwebhook_ids = \"1m\"\n",
        )
        .expect_err("bad");
        let all = err.problems.join("\n");
        assert!(all.contains("storage.wal_max_size"), "{all}");
        assert!(all.contains("storage.retention.webhook_ids"), "{all}");
    }

    #[test]
    fn rate_limits_parse() {
        assert_eq!(RateLimit::parse("1/60s"), Ok(RateLimit::per_minute(1)));
        assert_eq!(
            RateLimit::parse("120/1m").map(|l| l.interval()),
            Ok(Duration::from_millis(500))
        );
        assert!(RateLimit::parse("0/1s").is_err());
        assert!(RateLimit::parse("5").is_err());
    }
}

#[cfg(test)]
mod example_tests {
    use super::*;

    /// examples/config.toml parses, names every action's limit, and its values are the
    /// defaults.
    #[test]
    fn the_example_config_holds_every_key_at_its_default() {
        let text = include_str!("../examples/config.toml");
        let example = Settings::from_toml(text).expect("the example parses");
        let defaults = Settings::from_toml("").expect("defaults");
        for &a in Action::ALL {
            assert!(
                text.contains(&format!("\n{} = ", a.name())),
                "{a} missing from the example"
            );
            assert_eq!(example.limit(a), defaults.limit(a), "{a}");
        }
        assert_eq!(example.spoki.base_url, defaults.spoki.base_url);
        assert_eq!(example.spoki.timeout, defaults.spoki.timeout);
        assert_eq!(example.csv.settle, defaults.csv.settle);
        assert_eq!(example.csv.rescan_interval, defaults.csv.rescan_interval);
        assert_eq!(
            example.csv.max_new_custom_fields,
            defaults.csv.max_new_custom_fields
        );
        assert_eq!(example.mirror.pull_interval, defaults.mirror.pull_interval);
        assert_eq!(
            example.mirror.max_delete_share,
            defaults.mirror.max_delete_share
        );
        assert_eq!(example.admin.listen, defaults.admin.listen);
        assert_eq!(example.webhooks.listen, defaults.webhooks.listen);
        assert_eq!(example.admin.limits, defaults.admin.limits);
        assert_eq!(example.webhooks.limits, defaults.webhooks.limits);
        assert_eq!(
            example.batch.single_max_pending,
            defaults.batch.single_max_pending
        );
        assert_eq!(
            example.commands.max_attempts,
            defaults.commands.max_attempts
        );
        assert_eq!(example.log.filter, defaults.log.filter);
        assert_eq!(
            example.storage.check_interval,
            defaults.storage.check_interval
        );
        assert_eq!(example.storage.wal_max_size, defaults.storage.wal_max_size);
        assert_eq!(example.storage.retention, defaults.storage.retention);
        for key in [
            "check_interval",
            "wal_max_size",
            "rejects",
            "commands",
            "files",
            "webhook_ids",
        ] {
            assert!(text.contains(&format!("\n{key} = ")), "{key} missing");
        }
    }
}

#[cfg(test)]
mod doc_tests {
    use super::*;

    /// The keys of docs/configuration.md's table, with their default column.
    fn documented() -> Vec<(String, String)> {
        include_str!("../docs/configuration.md")
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| {
                let (key, rest) = l.split_once('`')?;
                let default = rest.split('|').nth(1)?.trim().to_owned();
                Some((key.to_owned(), default))
            })
            .collect()
    }

    #[test]
    fn docs_configuration_md_lists_exactly_the_keys_the_parser_knows() {
        let known = known_keys();
        let doc: Vec<String> = documented().into_iter().map(|(k, _)| k).collect();
        for key in &known {
            assert!(
                doc.contains(key),
                "{key} is parsed but not in docs/configuration.md"
            );
        }
        for key in &doc {
            assert!(
                known.contains(key),
                "docs/configuration.md lists {key}, which is not a key"
            );
        }
        assert!(known.len() >= 35, "{known:?}");
    }

    #[test]
    fn docs_configuration_md_gives_the_defaults_of_the_example() {
        // The example holds every key at its default (tested above), so its values are the
        // defaults the doc must show.
        let example = config::Config::builder()
            .add_source(config::File::from_str(
                include_str!("../examples/config.toml"),
                config::FileFormat::Toml,
            ))
            .build()
            .expect("the example parses");
        for (key, default) in documented() {
            if key.contains('<') {
                continue;
            }
            match example.get_string(&key) {
                Ok(value) => {
                    let shown = default.trim_matches('`').trim_matches('"');
                    assert_eq!(
                        shown, value,
                        "{key}: the doc says {default}, the default is {value}"
                    );
                }
                Err(_) => assert_eq!(default, "none", "{key} has no default in the example"),
            }
        }
    }

    #[test]
    fn an_unknown_key_and_an_invalid_value_are_reported_together() {
        let err = Settings::from_toml("[spoki]\ntiemout = \"5s\"\n[csv]\nsettle = \"soon\"\n")
            .expect_err("two problems");
        assert_eq!(err.problems.len(), 2, "{:?}", err.problems);
        assert!(
            err.problems[0].starts_with("spoki.tiemout: unknown key; did you mean spoki.timeout?"),
            "{:?}",
            err.problems
        );
        assert!(
            err.problems[1].starts_with("csv.settle:"),
            "{:?}",
            err.problems
        );
        let err = Settings::from_toml("[nosuch]\nx = 1\n").expect_err("unknown section");
        assert!(
            err.problems[0].starts_with("nosuch: unknown key"),
            "{:?}",
            err.problems
        );
        // Free tables still take any action name, checked as actions.
        let err =
            Settings::from_toml("[spoki.rate_limits]\nlist_tagz = \"1/1s\"\n").expect_err("bad");
        assert!(
            err.problems[0].contains("did you mean list_tags"),
            "{:?}",
            err.problems
        );
    }

    #[test]
    fn relative_paths_resolve_against_the_config_files_folder() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("config.toml");
        std::fs::write(
            &file,
            "[storage]\ndatabase = \"./state/db.sqlite\"\n[csv]\ninbox = \"in\"\n",
        )
        .expect("write");
        let s = Settings::load(&file, true).expect("valid");
        let base = std::path::absolute(dir.path()).expect("absolute");
        assert_eq!(s.storage.database, base.join("state/db.sqlite"));
        assert_eq!(s.csv.inbox, base.join("in"));
        std::fs::write(&file, "[csv]\ninbox = \"/srv/inbox\"\n").expect("write");
        let s = Settings::load(&file, true).expect("valid");
        assert_eq!(
            s.csv.inbox,
            PathBuf::from("/srv/inbox"),
            "absolute paths stay"
        );
    }
}
