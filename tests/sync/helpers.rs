//! Shared pieces of the integration tests: `spawn_app()`, waits that poll, the real binary.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use spoki_sync::app::App;
use spoki_sync::cli::demo::scaled_settings;
use spoki_sync::config::Settings;
use spoki_sync::sim::{self, RecordedRequest, SimConfig, SimHandle};
use spoki_sync::store::Store;
use tempfile::TempDir;

pub struct TestApp {
    /// Kept so the temporary folder lives as long as the daemon using it.
    dir: TempDir,
    pub sim: SimHandle,
    pub inbox: PathBuf,
    pub store: Store,
    pub settings: Settings,
    /// The admin API's address.
    pub admin: SocketAddr,
    /// The webhook receiver's address.
    pub webhooks: SocketAddr,
    pub http: reqwest::Client,
    /// The daemon's batcher (`update_settings` is what a configuration reload calls).
    pub batcher: spoki_sync::outbound::batcher::Batcher,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// The admin token `scaled_settings` configures.
pub const ADMIN_TOKEN: &str = "demo-admin-token";

pub async fn start_sim(config: SimConfig) -> SimHandle {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind simulator");
    sim::start(listener, config).await.expect("start simulator")
}

/// Settings whose Spoki minute lasts `window`, pointing at `sim`, in `dir`.
pub fn settings_for(sim: &SimHandle, dir: &Path, window: Duration) -> Settings {
    let mut s = scaled_settings(&sim.base_url(), "sim-api-key", dir, window).expect("settings");
    s.csv.settle = Duration::from_millis(100);
    s
}

/// Starts the real daemon in-process against a simulator whose minute lasts `window`.
pub async fn spawn_app(window: Duration) -> TestApp {
    spawn_app_with(
        SimConfig {
            window,
            ..SimConfig::default()
        },
        window,
        |_| {},
    )
    .await
}

/// The daemon against a simulator whose Spoki minute lasts 500 ms, with `tweak`ed settings.
pub async fn spawn_app_tweaked(tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let window = Duration::from_millis(500);
    spawn_app_with(
        SimConfig {
            window,
            ..SimConfig::default()
        },
        window,
        tweak,
    )
    .await
}

/// `webhooks.secret` for a Standard Webhooks key: `whsec_<base64 of key>`.
pub fn whsec(key: &[u8]) -> spoki_sync::config::Secret {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(key);
    spoki_sync::config::Secret::new(format!("whsec_{b64}"))
}

pub async fn spawn_app_with(
    sim_config: SimConfig,
    window: Duration,
    tweak: impl FnOnce(&mut Settings),
) -> TestApp {
    let sim = start_sim(sim_config).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut settings = settings_for(&sim, dir.path(), window);
    tweak(&mut settings);
    launch(dir, sim, settings).await
}

/// With `SPOKI_TEST_LOG=FILE`, the in-process daemons of every test log there (debugging).
fn trace_to_file() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if let Some(path) = std::env::var_os("SPOKI_TEST_LOG") {
            if let Ok(file) = std::fs::File::create(path) {
                let _ = tracing_subscriber::fmt()
                    .with_env_filter("debug,sqlx=warn,hyper=info,reqwest=info,h2=info")
                    .with_writer(std::sync::Mutex::new(file))
                    .with_ansi(false)
                    .try_init();
            }
        }
    });
}

async fn launch(dir: TempDir, sim: SimHandle, settings: Settings) -> TestApp {
    trace_to_file();
    let inbox = settings.csv.inbox.clone();
    let app = App::build(settings.clone()).await.expect("daemon builds");
    let store = app.store.clone();
    let batcher = app.batcher.clone();
    let admin = app.admin_addr().expect("admin address");
    let webhooks = app.webhooks_addr().expect("webhooks address");
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(app.run_until(async {
        let _ = rx.await;
    }));
    TestApp {
        dir,
        sim,
        inbox,
        store,
        settings,
        admin,
        webhooks,
        http: reqwest::Client::new(),
        batcher,
        stop: Some(stop),
        handle: Some(handle),
    }
}

impl TestApp {
    /// Drops a file the way careful writers do: a temporary name, then a rename.
    pub fn drop_file(&self, rel: &str, bytes: &[u8]) {
        let target = self.inbox.join(rel);
        std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
        let part = PathBuf::from(format!("{}.part", target.display()));
        std::fs::write(&part, bytes).expect("write");
        std::fs::rename(&part, &target).expect("rename");
    }

    pub async fn stop(mut self) {
        self.halt().await;
    }

    /// Stops the daemon cleanly; the folder and the simulator stay.
    pub async fn halt(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.expect("join").expect("clean stop");
        }
    }

    /// Stops the daemon cleanly and starts it again on the same folder and simulator.
    pub async fn restart(mut self) -> TestApp {
        self.halt().await;
        self.relaunch().await
    }

    /// Starts the daemon again (after `halt`) on the same folder and simulator.
    pub async fn relaunch(self) -> TestApp {
        let TestApp {
            dir, sim, settings, ..
        } = self;
        launch(dir, sim, settings).await
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A connection of "another program" to the daemon's SQLite file.
    pub async fn other_program(&self) -> sqlx::SqlitePool {
        let opts = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&self.settings.storage.database)
            .busy_timeout(Duration::from_secs(30));
        sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts)
            .await
            .expect("open the mirror like another program")
    }

    /// A request to the admin API with the right token.
    pub fn admin_req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("http://{}{path}", self.admin))
            .bearer_auth(ADMIN_TOKEN)
    }

    /// The Prometheus text of `GET /metrics`.
    pub async fn metrics_text(&self) -> String {
        self.admin_req(reqwest::Method::GET, "/metrics")
            .send()
            .await
            .expect("admin API answers")
            .text()
            .await
            .expect("metrics text")
    }

    /// Makes the simulator send its signed contact events to this daemon.
    pub fn point_spoki_webhooks_here(&self, secret: &str) {
        let url = format!("http://{}/webhooks/spoki", self.webhooks);
        self.sim.set_event_webhook(Some(url), secret);
    }

    /// `POST /v1/commands`; returns the status and the JSON answer.
    pub async fn submit(&self, action: &str, params: Value) -> (u16, Value) {
        let resp = self
            .admin_req(reqwest::Method::POST, "/v1/commands")
            .json(&serde_json::json!({"action": action, "params": params}))
            .send()
            .await
            .expect("admin API answers");
        let status = resp.status().as_u16();
        (status, resp.json().await.expect("JSON answer"))
    }

    /// `GET /v1/commands/{id}`.
    pub async fn command(&self, id: &str) -> Value {
        self.admin_req(reqwest::Method::GET, &format!("/v1/commands/{id}"))
            .send()
            .await
            .expect("admin API answers")
            .json()
            .await
            .expect("JSON answer")
    }

    /// Queues a command that must be accepted and waits until it ends; returns its record.
    pub async fn run_command(&self, action: &str, params: Value) -> Value {
        let (status, answer) = self.submit(action, params).await;
        assert_eq!(status, 202, "{action} refused: {answer}");
        let id = answer["id"].as_str().expect("id").to_owned();
        self.wait_command(&id, Duration::from_secs(30)).await
    }

    /// Waits until the command has ended; returns its record.
    pub async fn wait_command(&self, id: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout * SLACK;
        loop {
            let record = self.command(id).await;
            if matches!(record["status"].as_str(), Some("succeeded" | "failed")) {
                return record;
            }
            assert!(
                Instant::now() < deadline,
                "command {id} did not end: {record}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn wait_drained(&self, timeout: Duration) {
        wait_until(timeout, "the outbox to drain", || async {
            self.store.outbox_depth().await.expect("depth") == 0
        })
        .await;
    }
}

/// Every wait's upper bound is this many times the figure a test names: a wait returns as
/// soon as its condition holds, so a long bound costs nothing on a fast machine and keeps a
/// loaded CI box (2 cores, several test binaries) from failing for lack of time.
pub const SLACK: u32 = 3;

pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout * SLACK;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The report of a file once it left the inbox (`processed` or `failed`).
pub async fn wait_report(dir: &Path, outcome: &str, name: &str) -> Value {
    let folder = dir.join(outcome);
    let suffix = format!("-{name}.report.json");
    let mut found = None;
    wait_until(
        Duration::from_secs(20),
        &format!("{name} in {outcome}/"),
        || {
            found = std::fs::read_dir(&folder).ok().and_then(|entries| {
                entries
                    .flatten()
                    .map(|e| e.path())
                    .find(|p| p.to_string_lossy().ends_with(&suffix))
            });
            let done = found.is_some();
            async move { done }
        },
    )
    .await;
    let path = found.expect("report path");
    // The report may still be being written when its name appears: wait for whole JSON.
    let mut report = None;
    wait_until(Duration::from_secs(10), "a whole report", || {
        report = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok());
        let done = report.is_some();
        async move { done }
    })
    .await;
    report.expect("report JSON")
}

/// Contact-writing requests that Spoki accepted, with the number of contacts each carried.
pub fn contact_writes(requests: &[RecordedRequest]) -> Vec<(String, usize)> {
    requests
        .iter()
        .filter(|r| r.status == 200 && r.method == "POST")
        .filter_map(|r| {
            let n = if r.path.ends_with("/contacts/sync_all/") {
                r.body.as_array().map(Vec::len)?
            } else if r.path.ends_with("/contacts/sync/") {
                1
            } else if r.path.ends_with("/sync_contacts/") {
                r.body.get("contacts")?.as_array().map(Vec::len)?
            } else {
                return None;
            };
            Some((r.path.clone(), n))
        })
        .collect()
}

/// A Standard Webhooks signature: `v1,<base64 HMAC-SHA256(key, "<id>.<ts>.<body>")>`.
pub fn standard_signature(key: &[u8], id: &str, ts: i64, body: &[u8]) -> String {
    use base64::Engine as _;
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).expect("key");
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(body);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

/// Posts a contacts delivery signed with `key` now; returns the status and the JSON answer.
pub async fn deliver_contacts(app: &TestApp, key: &[u8], id: &str, body: &Value) -> (u16, Value) {
    let ts = chrono::Utc::now().timestamp();
    let bytes = serde_json::to_vec(body).expect("json");
    let resp = app
        .http
        .post(format!("http://{}/webhooks/contacts", app.webhooks))
        .header("webhook-id", id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", standard_signature(key, id, ts, &bytes))
        .header("content-type", "application/json")
        .body(bytes)
        .send()
        .await
        .expect("answer");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// A sample input bundled in `tests/data/` (copied from the project's shared samples, so a
/// fresh clone anywhere has them).
pub fn shared_data(name: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
}

/// A CSV of `n` distinct valid Italian mobiles, numbered from `start`.
pub fn contacts_csv(start: u64, n: u64, name_suffix: &str) -> Vec<u8> {
    let mut s = String::from("phone;nome;cognome\n");
    for i in start..start + n {
        s.push_str(&format!(
            "+39 333 {:07};Nome{i}{name_suffix};Cognome{i}\n",
            i
        ));
    }
    s.into_bytes()
}

/// The real binary, killed when dropped.
pub struct Daemon {
    pub child: std::process::Child,
    pub log: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    pub fn signal(&self, sig: &str) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Blocks until this daemon answers `GET /healthz` on `admin` with 200 (true), or it
    /// exits or `limit` passes (false). A bare TCP connect is not proof: another process
    /// may hold the port, or a connect to an ephemeral port may meet itself.
    pub fn wait_healthy(&mut self, admin: u16, limit: Duration) -> bool {
        use std::io::{Read as _, Write as _};
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return false;
            }
            let answer = std::net::TcpStream::connect(("127.0.0.1", admin)).and_then(|mut s| {
                s.set_read_timeout(Some(Duration::from_secs(2)))?;
                s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
                let mut text = String::new();
                s.read_to_string(&mut text)?;
                Ok(text)
            });
            if answer.is_ok_and(|t| t.starts_with("HTTP/1.1 200")) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Starts `spoki-sync run --config CONFIG`, logging to CONFIG.log.
pub fn start_daemon(config: &Path, envs: &[(&str, String)]) -> Daemon {
    let log = config.with_extension("log");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_spoki-sync"));
    cmd.args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"));
    for (k, v) in envs {
        cmd.env(k, v);
    }
    Daemon {
        child: cmd.spawn().expect("start the daemon"),
        log,
    }
}

/// A configuration for the real binary against the simulator at `base`: Spoki's minute lasts
/// `window_ms`, bulk requests only, the database and inbox in `dir`.
pub struct ScaledConfig<'a> {
    pub base: &'a str,
    pub admin: u16,
    pub hooks: u16,
    pub window_ms: u128,
    pub token: &'a str,
    /// The Standard Webhooks key of `/webhooks/contacts`.
    pub webhook_key: &'a [u8],
    /// More lines of the `[webhooks]` section (e.g. `spoki_secret = "..."`).
    pub webhooks_extra: &'a str,
}

impl ScaledConfig<'_> {
    pub fn write(&self, dir: &Path) -> PathBuf {
        use base64::Engine as _;
        let window_ms = self.window_ms;
        let limits: Vec<String> = spoki_sync::spoki::actions::Action::ALL
            .iter()
            .map(|a| format!("{a} = \"{}/{window_ms}ms\"", a.default_limit().count))
            .collect();
        let whsec = base64::engine::general_purpose::STANDARD.encode(self.webhook_key);
        let text = format!(
            r#"
[spoki]
base_url = "{base}"
api_key = "sim-api-key"
timeout = "3s"
[spoki.rate_limits]
{limits}
[storage]
database = "{db}"
[csv]
inbox = "{inbox}"
settle = "100ms"
rescan_interval = "500ms"
[mirror]
poll_interval = "200ms"
pull_interval = "0s"
[admin]
token = "{token}"
listen = "127.0.0.1:{admin}"
[webhooks]
listen = "127.0.0.1:{hooks}"
secret = "whsec_{whsec}"
{extra}
[batch]
single_max_pending = 0
max_backoff = "1s"
"#,
            base = self.base,
            limits = limits.join("\n"),
            db = dir.join("state.db").display(),
            inbox = dir.join("inbox").display(),
            token = self.token,
            admin = self.admin,
            hooks = self.hooks,
            extra = self.webhooks_extra,
        );
        let path = dir.join("config.toml");
        std::fs::write(&path, text).expect("config");
        path
    }
}
