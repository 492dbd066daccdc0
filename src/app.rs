//! Builds the daemon from settings, runs every task on one TaskTracker, and shuts down in
//! order: sources stop first, then the batcher finishes (or leaves for the next start) the
//! requests in flight.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::{self, AdminState};
use crate::commands::{CommandWorker, Commands};
use crate::config::Settings;
use crate::live::Live;
use crate::normalise;
use crate::outbound::batcher::{Batcher, BatcherSettings};
use crate::outbound::limits::Budgets;
use crate::reverse::{Mirror, MirrorSettings};
use crate::runtime::reload::{self, Reloader};
use crate::runtime::service;
use crate::sources::inbox::Inbox;
use crate::sources::webhooks::WebhookKeys;
use crate::sources::webhooks::{self, WebhookState};
use crate::spoki::SpokiClient;
use crate::store::maintenance::{self, Maintenance};
use crate::store::{Store, StoreError};

/// How long requests in flight get to finish at shutdown (within systemd's 10 s promise).
pub const DRAIN: Duration = Duration::from_secs(7);

pub struct App {
    pub settings: Settings,
    pub store: Store,
    pub batcher: Batcher,
    pub budgets: Budgets,
    pub commands: Commands,
    worker: CommandWorker,
    pub mirror: Mirror,
    admin_listener: tokio::net::TcpListener,
    webhooks_listener: tokio::net::TcpListener,
    webhooks: WebhookState,
    reloader: Arc<Reloader>,
    wake: Arc<Notify>,
    maintenance: Maintenance,
}

/// Opens the database after checking its file (a wrong path gets one clear message before
/// SQLite sees it), then checks its health at start (`Maintenance::check_at_start`).
async fn open_database(settings: &Settings) -> anyhow::Result<(Store, Maintenance)> {
    let db = &settings.storage.database;
    if let Some(problem) = maintenance::sqlite_file_problem(db) {
        return Err(StoreError::Refused(format!("storage.database: {problem}")).into());
    }
    let store = match Store::open_checked(db, settings.storage.allow_new_database).await {
        Ok(store) => store,
        Err(e @ StoreError::Refused(_)) => return Err(e.into()),
        Err(e) => {
            return Err(
                anyhow::Error::new(e).context(format!("cannot open the database {}", db.display()))
            );
        }
    };
    let mut maintenance = Maintenance::new(
        store.clone(),
        db,
        settings.storage.retention,
        settings.storage.wal_max_size,
        settings.storage.check_interval,
    )?;
    maintenance.check_at_start().await?;
    Ok((store, maintenance))
}

/// Reloads the configuration on each SIGHUP until `stop`.
fn reload_on_sighup(tracker: &TaskTracker, reloader: Arc<Reloader>, stop: CancellationToken) {
    #[cfg(unix)]
    tracker.spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; reload through POST /v1/reload");
            return;
        };
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                got = hup.recv() => {
                    if got.is_none() {
                        return;
                    }
                    reloader.reload_and_log().await;
                }
            }
        }
    });
    #[cfg(not(unix))]
    let _ = (tracker, reloader, stop);
}

/// An address for a log line: `127.0.0.1:8780`, not Rust's `Some(…)`.
fn shown(addr: Option<std::net::SocketAddr>) -> String {
    addr.map_or_else(|| "unknown".to_owned(), |a| a.to_string())
}

async fn bind(
    addr: std::net::SocketAddr,
    key: &str,
    what: &str,
) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {key} {addr} for {what}"))
}

/// The Spoki client the configuration describes.
fn spoki_client(settings: &Settings) -> anyhow::Result<SpokiClient> {
    let key = settings
        .spoki
        .api_key
        .clone()
        .context("spoki.api_key is required")?;
    Ok(SpokiClient::new(
        settings.spoki.base_url.clone(),
        key,
        settings.spoki.timeout,
    )?)
}

/// What the last run left: rows in flight go back to pending, the send times stored per
/// action are restored, and after a crash (or rows left in flight past the drain deadline)
/// every action waits one whole interval, since a request may have left after its send time
/// was last stored.
async fn recover_last_run(
    store: &Store,
    batcher: &Batcher,
    budgets: &Budgets,
) -> anyhow::Result<()> {
    let recovered = store.recover_inflight().await?;
    if !recovered.is_empty() {
        tracing::info!(
            rows = recovered.len(),
            "requeued contacts left in flight by the last run"
        );
    }
    batcher.restore_budget_marks().await?;
    let crashed = store.begin_run().await?;
    if crashed || !recovered.is_empty() {
        tracing::warn!(
            crashed,
            "the last run did not stop cleanly; every action waits one interval"
        );
        budgets.hold_all_one_interval();
    }
    Ok(())
}

impl App {
    /// Opens the database (migrating it), puts back rows a crash left in flight, and wires the
    /// parts together. Nothing runs until `run_until`.
    pub async fn build(settings: Settings) -> anyhow::Result<App> {
        settings.check_runnable()?;
        normalise::warm_up();
        Inbox::prepare(&settings.csv.inbox)
            .with_context(|| format!("cannot create the inbox {}", settings.csv.inbox.display()))?;
        let (store, maintenance) = open_database(&settings).await?;
        let client = spoki_client(&settings)?;
        let budgets = Budgets::from_settings(&settings);
        let wake = Arc::new(Notify::new());
        let batcher = Batcher::new(
            store.clone(),
            client.clone(),
            budgets.clone(),
            BatcherSettings::from_settings(&settings),
            wake.clone(),
        );
        recover_last_run(&store, &batcher, &budgets).await?;
        let current = Live::new(settings.clone());
        let mirror_live = Live::new(MirrorSettings::from_settings(&settings));
        let mirror = Mirror::new(
            store.clone(),
            client.clone(),
            budgets.clone(),
            mirror_live.clone(),
            wake.clone(),
        );
        let command_wake = Arc::new(Notify::new());
        let commands = Commands::new(store.clone(), command_wake.clone());
        let worker_live = Live::new(reload::worker_settings(&settings));
        let worker = CommandWorker::new(
            store.clone(),
            client.clone(),
            budgets.clone(),
            worker_live.clone(),
            command_wake,
        );
        worker.recover().await?;
        let admin_listener = bind(settings.admin.listen, "admin.listen", "the admin API").await?;
        let webhooks_listener =
            bind(settings.webhooks.listen, "webhooks.listen", "webhooks").await?;
        let webhook_keys =
            Live::new(WebhookKeys::from_settings(&settings).map_err(anyhow::Error::msg)?);
        let webhooks = WebhookState {
            store: store.clone(),
            keys: webhook_keys.clone(),
            settings: current.clone(),
            batcher_wake: wake.clone(),
        };
        let token = settings
            .admin
            .token
            .as_ref()
            .context("admin.token is required")?;
        let reloader = Arc::new(Reloader {
            source: None,
            current,
            budgets: budgets.clone(),
            batcher: batcher.clone(),
            client,
            inbox: Live::new(reload::inbox_settings(&settings)),
            mirror: mirror_live,
            worker: worker_live,
            admin_token: Live::new(reload::token_digest(token)),
            webhook_keys,
            log_filter: None,
            lock: tokio::sync::Mutex::new(()),
        });
        admin::metrics::handle();
        Ok(App {
            settings,
            store,
            batcher,
            budgets,
            commands,
            worker,
            mirror,
            admin_listener,
            webhooks_listener,
            webhooks,
            reloader,
            wake,
            maintenance,
        })
    }

    /// Where a reload reads the configuration from (without one, reloads are refused).
    pub fn set_config_source(&mut self, path: std::path::PathBuf, required: bool) {
        if let Some(r) = Arc::get_mut(&mut self.reloader) {
            r.source = Some((path, required));
        }
    }

    /// How a reload changes the log filter.
    pub fn set_log_filter_hook(&mut self, hook: reload::LogFilterHook) {
        if let Some(r) = Arc::get_mut(&mut self.reloader) {
            r.log_filter = Some(hook);
        }
    }

    /// Where the webhook receiver listens.
    pub fn webhooks_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.webhooks_listener.local_addr()
    }

    /// Where the admin API listens (useful when `admin.listen` asked for port 0).
    pub fn admin_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.admin_listener.local_addr()
    }

    /// Runs until `shutdown` completes, then drains.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let cancel = CancellationToken::new();
        let sources = cancel.child_token();
        let outbound = CancellationToken::new();
        let tracker = TaskTracker::new();

        let inbox = Inbox::new(
            reload::inbox_settings(&self.settings),
            self.store.clone(),
            self.wake.clone(),
        )
        .follow(self.reloader.inbox.clone());
        reload_on_sighup(&tracker, self.reloader.clone(), sources.clone());
        let inbox_task = tracker.spawn(inbox.run(sources.clone()));
        tracker.spawn(self.batcher.clone().run(outbound.clone(), DRAIN));
        tracker.spawn(self.worker.clone().run(outbound.clone(), DRAIN));
        tracker.spawn(self.mirror.clone().run_poller(sources.clone()));
        tracker.spawn(self.mirror.clone().run_puller(sources.clone()));
        tracker.spawn(self.mirror.clone().run_deleter(outbound.clone()));
        tracker.spawn(self.maintenance.run(sources.clone()));
        let admin_state = AdminState::new(
            self.store.clone(),
            self.commands.clone(),
            admin::Triggers::of(&self.mirror),
            self.reloader.clone(),
        );
        let admin_addr = self.admin_listener.local_addr().ok();
        let admin_limits =
            crate::listener::Limits::new(&self.settings.admin.limits, admin::BODY_LIMIT);
        tracker.spawn(crate::listener::serve(
            self.admin_listener,
            admin::router(admin_state, admin_limits),
            admin_limits,
            "admin",
            sources.clone(),
        ));
        let hooks_addr = self.webhooks_listener.local_addr().ok();
        let hooks_limits =
            crate::listener::Limits::new(&self.settings.webhooks.limits, webhooks::BODY_LIMIT);
        tracker.spawn(crate::listener::serve(
            self.webhooks_listener,
            webhooks::router(self.webhooks, hooks_limits),
            hooks_limits,
            "webhooks",
            sources.clone(),
        ));
        // The database is migrated and both listeners are bound (in `build`): ready. Before
        // the watchdog starts, so that its first ping never comes ahead of READY.
        service::notify("READY=1\nSTATUS=running");
        if let Some(interval) = service::watchdog_interval() {
            tracker.spawn(service::run_watchdog(
                interval,
                self.batcher.heartbeat.clone(),
                outbound.clone(),
            ));
        }
        tracing::info!(
            inbox = %self.settings.csv.inbox.display(),
            database = %self.settings.storage.database.display(),
            spoki = %self.settings.spoki.base_url,
            admin = %shown(admin_addr),
            webhooks = %shown(hooks_addr),
            "spoki-sync is running"
        );

        shutdown.await;
        service::notify("STOPPING=1");
        stop_in_order(cancel, inbox_task, outbound, tracker, &self.store).await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// The stop: no new input first (the inbox gets 2 s to finish its file), then the requests in
/// flight get the drain, then the clean stop is recorded.
async fn stop_in_order(
    cancel: CancellationToken,
    inbox_task: tokio::task::JoinHandle<()>,
    outbound: CancellationToken,
    tracker: TaskTracker,
    store: &Store,
) {
    tracing::info!("shutting down: no new input; finishing requests in flight");
    cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(2), inbox_task).await;
    outbound.cancel();
    tracker.close();
    if tokio::time::timeout(DRAIN + Duration::from_secs(1), tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("tasks did not stop in time; exiting anyway (nothing is lost)");
    }
    if let Err(error) = store.end_run().await {
        tracing::warn!(%error, "cannot record the clean stop");
    }
    store.close().await;
}
